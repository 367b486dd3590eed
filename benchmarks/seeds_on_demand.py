"""Benchmark 7: seeds on demand against the fixed design, on mnist1d_grid with fewer epochs.

`--seeds 3 --max-seeds 12` against `--seeds 12`: the seed runs each spends (target: at most
half), and whether every comparison the fixed design decides gets the same verdict (target:
none contradicted; a comparison the on-demand study leaves open is not a contradiction). The
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
    print(out.getvalue().strip().splitlines()[-1], flush=True)
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
    key = ["factor", "level", "reference", "stratum"]
    both = fixed.merge(adaptive, on=key, how="outer", suffixes=("_fixed", "_on_demand"))
    decided = both[both["verdict_fixed"].isin(DECIDED)]
    contradicted = decided[decided["verdict_on_demand"].isin(DECIDED) & (decided["verdict_on_demand"] != decided["verdict_fixed"])]
    agreeing = (decided["verdict_on_demand"] == decided["verdict_fixed"]).sum()
    ratio = spent["on_demand"] / spent["fixed"]
    lines.append(f"seed runs: on demand {spent['on_demand']}, fixed {spent['fixed']} ({ratio:.2f}x)")
    lines.append(f"comparisons decided by the fixed design: {len(decided)} of {len(both)}; on demand: "
                 f"{both['verdict_on_demand'].isin(DECIDED).sum()} decided, {agreeing} agree with the fixed design, "
                 f"{len(contradicted)} contradict it")
    if len(both) != len(fixed) or len(both) != len(adaptive):
        lines.append("note: the two studies split the comparisons differently (an interaction found in one only); "
                     "compared where both have the row")
    for _, row in contradicted.iterrows():
        lines.append(f"contradicted: {row['level']} vs {row['reference']} ({row['stratum']}): "
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
