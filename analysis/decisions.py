"""The one question a running study asks the analysis: which comparisons are decided, open, or futile.

study.seeds_on_demand's searcher calls `open_comparisons` after each round, with the runs so far
in the results contract's columns; it gets back counts and the configurations that still need
seeds. Nothing else of the analysis is the study's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.compare import analyse
from analysis.load import Results
from analysis.power import conditional_power
from analysis.testing import look_alpha

# An open comparison whose chance of a decision at --max-seeds (conditional power, current
# trend) is under this gets no more seeds. Non-binding: stopping never adds a verdict, so the
# error bound is unchanged; it only saves the seeds a near-tie would spend without deciding.
FUTILITY = 0.1


@dataclass(frozen=True)
class Decisions:
    decided: int  # comparisons decided better, worse or equivalent
    still_open: int  # inconclusive ones
    futile: int  # of the open ones, those even the most seeds would hardly decide
    configurations: set  # the configuration keys (tuples of the strata's and factors' levels) of open, not futile ones


def futile(row, most: int, smallest_effect: float, final_scale: float) -> bool:
    """An open comparison that even `most` seeds per configuration would hardly decide: its
    conditional power (current trend, analysis.power.conditional_power) at `most` seeds, at the
    level of the last planned look (this look's level x `final_scale`, the ratio of their shares
    of alpha), is under FUTILITY. One whose seeds are all spent is open, not futile."""
    if row["seeds"] >= most:
        return False
    final_df = max(row["df"] / max(row["seeds"] - 1, 1) * (most - 1), 1.0)  # df grow with the seeds
    power = conditional_power(row["effect"], row["unit_sd"], int(row["seeds"]), most, final_df,
                              (1 - row["confidence"]) * final_scale, smallest_effect)
    return power < FUTILITY


def open_comparisons(runs: pd.DataFrame, spec: dict, run: dict, smallest_effect: float, alpha: float,
                     most: int) -> Decisions:
    """What the runs so far decide; `run` says which look this is and how alpha is spent (the
    keys of the results' `hpstudy.run`: looks, spending, fractions, rounds)."""
    analysis = analyse(Results(Path("."), pd.DataFrame(), runs, spec, run), smallest_effect=smallest_effect,
                       alpha=alpha, detail=False)
    comparisons = analysis.comparisons
    still_open = comparisons[comparisons["verdict"] == "inconclusive"]
    final_share = look_alpha(alpha, run["looks"], run["looks"], run["spending"], run["fractions"])
    stopped = [futile(row, most, smallest_effect, final_share / analysis.family_alpha)
               for _, row in still_open.iterrows()]
    promising = still_open[pd.Series([not s for s in stopped], index=still_open.index, dtype=bool)]
    configurations = {c for group in promising["configurations"] for c in group}
    decided = int(comparisons["verdict"].isin(["better", "worse", "equivalent"]).sum())
    return Decisions(decided, len(still_open), sum(stopped), configurations)
