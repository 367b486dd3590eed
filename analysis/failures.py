"""Failed runs: which runs did not train (`mark_failures`: diverged, or below a share of the
room above the dataset's majority-class rate), their rate with a Wilson interval
(`failure_rate`), Fisher's exact test of two rates (`fisher_test`), and the chance that a run
beats a reference run when a failed run ranks below every trained one
(`probability_of_improvement`). statsmodels and scipy do the work."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

DEFAULT_CHANCE_MARGIN = 0.05


def mark_failures(trials: pd.DataFrame, margin: float = DEFAULT_CHANCE_MARGIN, accuracy: str = "test_acc",
                  near_chance_fails: bool = True, not_reached: pd.Series | None = None) -> pd.DataFrame:
    """Runs with a result (completed or diverged), with `did_not_train` and `failure`: the run
    diverged; or (`near_chance_fails`) its `accuracy` ended below chance + margin x (1 - chance),
    chance being the majority-class rate of the dataset's test set (`chance_acc`, written by the
    export; results without it only count divergence); or it is marked in `not_reached` (a
    convergence outcome's target never reached, analysis.outcomes). The margin is a share of the
    room above chance: on a test set whose majority class is 90%, 95% accuracy is a model that
    trained. An outcome that explains runs stuck near chance (a gradient ratio) does not fail them."""
    out = trials[trials["status"].isin(["completed", "diverged"])].copy()
    if accuracy not in out:
        accuracy = "final_val_acc"
    chance = out["chance_acc"] if "chance_acc" in out else pd.Series(np.nan, index=out.index)
    near_chance = (out[accuracy].isna() | (out[accuracy] < chance + margin * (1 - chance))) & chance.notna()
    near_chance &= near_chance_fails
    missed = pd.Series(False, index=out.index) if not_reached is None else \
        not_reached.reindex(out.index, fill_value=False)
    diverged = out["status"] == "diverged"
    failure = pd.Series([None] * len(out), index=out.index, dtype=object)
    failure[missed] = "target not reached"
    failure[near_chance] = "near chance"
    failure[diverged] = "diverged"
    out["failure"] = failure
    out["did_not_train"] = diverged | near_chance | missed
    return out


def failure_rate(failed: int, n: int) -> tuple[float, float, float]:
    """Rate and its 95% Wilson interval (statsmodels)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = proportion_confint(failed, n, alpha=0.05, method="wilson")
    return failed / n, float(low), float(high)


def fisher_test(failed: int, n: int, failed_ref: int, n_ref: int) -> float:
    """Fisher's exact test of two failure rates; NaN where no run or every run failed."""
    if n == 0 or n_ref == 0 or failed + failed_ref in (0, n + n_ref):
        return float("nan")
    return float(stats.fisher_exact([[failed, n - failed], [failed_ref, n_ref - failed_ref]]).pvalue)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, paired: bool) -> float:
    """P(a run of the level beats a run of the reference), ties counting half: over pairs where
    paired, over all pairs of runs otherwise (Mann-Whitney U / (n x m), scipy). Callers pass
    failed runs as -inf so that they rank below every trained run."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    if paired:
        return float(np.mean((x > y) + 0.5 * (x == y)))
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").statistic / (len(x) * len(y)))
