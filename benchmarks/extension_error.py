"""Benchmark 9: the error rate of extending a study where its answer is open (a count, not a timing).

The workflow `--seeds N --resume` invites: a 3-seed null study (4 activations, no true
difference), and where a comparison is open and asks for at most 40 seeds, the study extended to
the seeds its nearest open comparison asks for, its first 3 seeds kept. The extension is tested
as hpstudy tests it (one more look: alpha / 2) and, for comparison, as if it were a fresh study
at alpha. Counted: studies whose final answer has a false better / worse verdict (target: at most
alpha = 5%), and studies with one at either look.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from analysis import findings
from analysis.load import load_results
from benchmarks.common import verdict

LEVELS = ["relu", "gelu", "elu", "silu"]


def run(studies: int = 300, most: int = 40) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic import make_study, write_synthetic  # the tests' planted studies, through the real export

    rng = np.random.default_rng(1)
    axes = {"activation": LEVELS}
    first = make_study("null", {"trainable": "mnist1d_cnn", "epochs": 1}, axes, seeds=3)
    wrong_first = wrong_final = wrong_naive = wrong_either = extended = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(studies):
            own, shared = rng.normal(0, 0.006, (len(LEVELS), 2 * most)), rng.normal(0, 0.01, 2 * most)
            values = lambda p, s: 0.9 + shared[s] + own[LEVELS.index(p["activation"]), s]  # noqa: E731
            table = findings(load_results(write_synthetic(Path(tmp) / f"a{i}", first, None, values=values)))
            wrong = bool(table["verdict"].isin(["better", "worse"]).any())
            wrong_first += wrong
            still_open = table[table["verdict"] == "inconclusive"]
            if still_open.empty or still_open["seeds_needed"].min() > most:
                wrong_final, wrong_naive, wrong_either = wrong_final + wrong, wrong_naive + wrong, wrong_either + wrong
                continue
            extended += 1
            more = make_study("null", first.fixed, axes, seeds=int(still_open["seeds_needed"].min()))
            results = load_results(write_synthetic(Path(tmp) / f"b{i}", more, None, values=values))
            final = bool(findings(results, looks=2)["verdict"].isin(["better", "worse"]).any())
            naive = bool(findings(results)["verdict"].isin(["better", "worse"]).any())
            wrong_final, wrong_naive, wrong_either = wrong_final + final, wrong_naive + naive, wrong_either + (wrong or final)
    return [f"## extending open comparisons: {studies} null studies (4 activations, 3 seeds), {extended} extended",
            f"false better / worse verdict: at the first look {wrong_first}; in the final answer {wrong_final} "
            f"(extension tested as one more look, alpha / 2) against {wrong_naive} (tested at alpha, as a fresh "
            f"study); at either look {wrong_either}",
            verdict("studies with a false final verdict", 100 * wrong_final / studies, 5, higher_is_better=False,
                    unit="%")]
