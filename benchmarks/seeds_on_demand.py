"""Benchmark 7: seeds on demand against the fixed design, on mnist1d_grid with fewer epochs.

`--seeds 3 --max-seeds 12` against `--seeds 12`: the seed runs each spends (target: at most
half), and whether every comparison the fixed design decides gets the same verdict (target:
none contradicted; a comparison the on-demand study leaves open is not a contradiction, and
where only one study found an interaction, a simple effect and the averaged one contradict
only as better against worse). The
fixed study is analysed with one look, as its report would; the on-demand one with its looks.
Not a timing: the count of seed runs does not depend on the machine.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pandas as pd

from analysis import findings
from benchmarks.common import machine, verdict
from study.options import parse_args
from study.run import run as run_study

DECIDED = {"better", "worse", "equivalent"}


def one_study(storage: str, data_root: str, epochs: int, name: str, *flags: str) -> pd.DataFrame:
    options = parse_args("mnist1d_grid", [*flags, "--epochs", str(epochs), "--storage", storage,
                                          "--data-root", data_root, "--name", name])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert run_study(options) == 0
    for line in out.getvalue().strip().splitlines():  # rounds, summary lines and answer, not the progress bar
        if line.startswith(f"{name}: ") and "trial [" not in line and "%|" not in line:
            print(line, flush=True)
    return findings(Path(storage) / name)


def run(epochs: int = 10) -> list[str]:
    lines = [f"## seeds on demand  ({machine()}; mnist1d_grid, {epochs} epochs)"]
    with tempfile.TemporaryDirectory() as storage:
        data_root = str(Path(storage) / "data")
        fixed = one_study(storage, data_root, epochs, "fixed", "--seeds", "12")
        adaptive = one_study(storage, data_root, epochs, "on_demand", "--seeds", "3", "--max-seeds", "12")
        spent = {name: len(pd.read_parquet(Path(storage) / name / "trials.parquet")) for name in ("fixed", "on_demand")}
        # where the seeds went: each configuration's seed count, and the comparisons left open
        on_demand_trials = pd.read_parquet(Path(storage) / "on_demand" / "trials.parquet")
        seeds_by_configuration = on_demand_trials.groupby(["activation", "batchnorm"])["seed"].nunique()
    # Matched by comparison, across strata: where one study found an interaction and the other did
    # not, a simple effect (within one level of the other factor) meets the averaged one. Decided
    # verdicts of a matched pair that differ contradict each other, except an averaged effect
    # beside a simple one of the same sign or an equivalence (what an interaction can do).
    key = ["factor", "level", "reference"]
    both = fixed.merge(adaptive, on=key, how="inner", suffixes=("_fixed", "_on_demand"))
    same_stratum = both["stratum_fixed"] == both["stratum_on_demand"]
    either_all = (both["stratum_fixed"] == "all") | (both["stratum_on_demand"] == "all")
    both = both[same_stratum | either_all]
    decided = both[both["verdict_fixed"].isin(DECIDED)]
    differ = decided["verdict_on_demand"].isin(DECIDED) & (decided["verdict_on_demand"] != decided["verdict_fixed"])
    opposite = pd.Series([{a, b} == {"better", "worse"} for a, b in zip(decided["verdict_fixed"],
                                                                        decided["verdict_on_demand"])], index=decided.index)
    contradicted = decided[differ & ((decided["stratum_fixed"] == decided["stratum_on_demand"]) | opposite)]
    agreeing = (decided["verdict_on_demand"] == decided["verdict_fixed"]).sum()
    ratio = spent["on_demand"] / spent["fixed"]
    lines.append(f"seed runs: on demand {spent['on_demand']}, fixed {spent['fixed']} ({ratio:.2f}x)")
    lines.append(f"comparisons decided: fixed {fixed['verdict'].isin(DECIDED).sum()} of {len(fixed)}, on demand "
                 f"{adaptive['verdict'].isin(DECIDED).sum()} of {len(adaptive)}; of {len(both)} matched pairs the fixed "
                 f"design decides {len(decided)}: on demand {agreeing} agree, "
                 f"{decided['verdict_on_demand'].isin(DECIDED).sum() - agreeing - len(contradicted)} differ as an "
                 f"interaction can, {len(contradicted)} contradict")
    if set(fixed["stratum"]) != set(adaptive["stratum"]):
        lines.append("note: one study found an interaction the other did not, so their comparisons are split "
                     "differently; simple effects are matched with the averaged ones")
    for _, row in contradicted.iterrows():
        lines.append(f"contradicted: {row['level']} vs {row['reference']} ({row['stratum_fixed']} / "
                     f"{row['stratum_on_demand']}): "
                     f"{row['verdict_fixed']} fixed, {row['verdict_on_demand']} on demand")
    counts = seeds_by_configuration.value_counts().sort_index()
    lines.append("on demand, seeds per configuration: " + ", ".join(f"{n} configurations at {seeds}"
                                                                    for seeds, n in counts.items()))
    for _, row in adaptive[adaptive["verdict"] == "inconclusive"].iterrows():
        lines.append(f"open on demand: {row['level']} vs {row['reference']} ({row['stratum']}): "
                     f"{row['effect'] * 100:+.1f} points at {row['n']} vs {row['n_ref']} runs, "
                     f"seeds needed {row['seeds_needed']}")
    lines.append(verdict("seed runs on demand / fixed", ratio, 0.5, higher_is_better=False))
    lines.append(verdict("verdicts contradicted", len(contradicted), 0, higher_is_better=False, unit=""))
    return lines
