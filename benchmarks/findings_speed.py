"""Benchmark 8: how long the findings take, as seeds on demand (every round) and the simulations
(thousands of studies) call them.

A 16-configuration x 5-seed study (8 activations x batchnorm, two noisy activations), written
through the real export: `analysis.findings` with the spread-grouped model (target: under
0.3 s; a CPU figure that only counts as a ratio beside the others in the same run), beside the
pooled model it replaced and beside the full analysis with its detail tables (bootstrap
variance shares, failure table), which is what `findings` computed before it computed only
what it returns. And 10,080 runs in one dataset (240 configurations x 42 seeds: 8 activations x
batchnorm x 3 optimizers x 5 learning rates): the model fits in linear memory (target: under
10 s; the n x n model before issue 29 took 22 s and 2.9 GB at 10,000 runs); its peak memory is
the process's, measured in a child process.
"""

from __future__ import annotations

import subprocess
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
    seconds, peak = large_study()
    lines.append(f"findings of 10,080 runs in one dataset: {seconds:.2f} s, peak memory of the process {peak:.2f} GB")
    lines.append(verdict("findings, 10,080 runs", seconds, 10, higher_is_better=False, unit=" s"))
    lines.append(verdict("peak memory, 10,080 runs", peak, 1.5, higher_is_better=False, unit=" GB"))
    return lines


LARGE = """
import resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "tests")
from synthetic import make_study, write_synthetic
from analysis import findings
from analysis.load import load_results
axes = {"activation": ["relu", "gelu", "elu", "silu", "mish", "leaky_relu", "tanh", "sigmoid"],
        "batchnorm": [False, True], "optimizer": ["adam", "sgd", "rmsprop"], "lr": [0.1, 0.03, 0.01, 0.001, 0.0001]}
study = make_study("large", {"trainable": "mnist1d_cnn", "epochs": 1}, axes, seeds=42)
results = load_results(write_synthetic(Path(tempfile.mkdtemp()) / "large", study, lambda p: 0.9, sd=0.01, seed_sd=0.01))
assert len(results.trials) == 10080
start = time.perf_counter()
findings(results)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
"""


def large_study() -> tuple[float, float]:
    """Seconds and the process's peak memory (GB) of the findings of 10,080 runs, in a child
    process so that this one's memory does not count."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", LARGE], cwd=root, capture_output=True, text=True, check=True)
    seconds, peak = map(float, out.stdout.split()[-2:])
    return seconds, peak
