"""Benchmark 8: how long the findings take, as seeds on demand (every round) and the simulations
(thousands of studies) call them.

A 16-configuration x 5-seed study (8 activations x batchnorm, two noisy activations), written
through the real export: `analysis.findings` with the spread-grouped model (target: under
0.3 s; a CPU figure that only counts as a ratio beside the others in the same run), beside the
pooled model it replaced and beside the full analysis with its detail tables (bootstrap
variance shares, failure table), which is what `findings` computed before it computed only
what it returns.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from analysis import findings
from analysis.compare import analyse
from analysis.load import load_results
from benchmarks.common import interleaved, machine, verdict


def run(repeats: int = 7) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic import make_study, write_synthetic  # the tests' planted studies, through the real export

    activations = ["relu", "gelu", "elu", "silu", "mish", "leaky_relu", "tanh", "sigmoid"]
    study = make_study("speed", {"trainable": "mnist1d_cnn", "epochs": 1},
                       {"activation": activations, "batchnorm": [False, True]}, seeds=5)
    with tempfile.TemporaryDirectory() as folder:
        results = load_results(write_synthetic(Path(folder) / "speed", study, lambda p: 0.9, seed_sd=0.01,
                                               sd=lambda p: 0.05 if p["activation"] in ("tanh", "sigmoid") else 0.005))
    times = interleaved({
        "findings (grouped spread)": lambda: findings(results),
        "findings (pooled spread)": lambda: findings(results, spread="pooled"),
        "analyse with detail tables": lambda: analyse(results, detail=True),
    }, repeats=repeats)
    lines = [f"## findings speed  ({machine()}; 16 configurations x 5 seeds)"]
    base = times["findings (grouped spread)"]
    for name, seconds in times.items():
        lines.append(f"{name}: {1000 * seconds:.0f} ms ({seconds / base:.2f}x the grouped findings)")
    lines.append(verdict("findings, 16 configurations x 5 seeds", base, 0.3, higher_is_better=False, unit=" s"))
    return lines
