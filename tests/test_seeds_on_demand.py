"""Seeds on demand: the searcher's rounds on simulated studies with planted answers (error rate of
its verdicts), and a real study killed (SIGKILL) mid-round and resumed."""

import json
import signal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ray.tune.search import Searcher
from test_study_runner import StudyProcess, wait_for

from study.definition import make_study as _study
from study.seeds_on_demand import SeedsOnDemand, planned_looks

from conftest import study_summary

SMALLEST_EFFECT = 0.01
# planted test-accuracy differences from relu; the verdicts that would be wrong for each
PLANTED = {"relu": 0.0, "elu": 0.0, "gelu": 0.02, "silu": 0.005}
WRONG = {"elu": {"better", "worse"}, "gelu": {"worse", "equivalent"}, "silu": {"worse"}}


def simulate(rng, first=3, most=12, planted=PLANTED, noise=0.006, spending="obrien-fleming"
             ) -> tuple[SeedsOnDemand, dict]:
    """Drive the real searcher as Tune would, answering each trial with a simulated run."""
    study = _study("sim", "simulated", fixed={"trainable": "mnist1d_cnn", "epochs": 1},
                   axes={"activation": list(planted)}, seeds=first, smoke_axes={})
    points = [{"activation": a} for a in planted]
    searcher = SeedsOnDemand(study.spec(), points, dict(study.fixed), first=first, most=most,
                             smallest_effect=SMALLEST_EFFECT, alpha=0.05, name="sim", spending=spending)
    seed_part = rng.normal(0, 0.01, most)  # what a seed does to every configuration
    trained, count = {}, 0
    while True:
        pending = []
        while isinstance(suggestion := searcher.suggest(f"t{count}"), dict):
            pending.append((f"t{count}", suggestion))
            count += 1
        for trial_id, config in pending:  # a round's trials finish, then the next suggest opens a round
            key = (config["activation"], config["seed"])
            assert key not in trained, f"{key} trained twice"
            value = 0.9 + planted[config["activation"]] + seed_part[config["seed"]] + rng.normal(0, noise)
            trained[key] = value
            searcher.on_trial_complete(trial_id, {"test_acc": value, "val_acc": value, "chance_acc": 0.1,
                                                  "diverged": False})
        if suggestion == Searcher.FINISHED:
            return searcher, trained


def test_rounds_add_seeds_only_where_comparisons_are_open(capsys):
    searcher, trained = simulate(np.random.default_rng(0))
    seeds = pd.Series([s for (_, s) in trained]).groupby([a for (a, _) in trained]).apply(sorted)
    for got in seeds.values:
        assert got == list(range(len(got))) and 3 <= len(got) <= 12  # contiguous, never past M
    status = searcher.status()
    assert status["looks"] == planned_looks(3, 12, 3) == 4 and status["finished"]
    assert status["seed_runs"] == len(trained) < 4 * 12
    assert [r["round"] for r in status["rounds"]] == list(range(1, len(status["rounds"]) + 1))
    assert len(status["rounds"]) <= status["looks"]  # never more looks than alpha was spent over
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sim: round")]
    assert len(lines) == len(status["rounds"]) and "seed runs scheduled" in lines[0]
    # gelu's 2-point advantage is decided on the first look: only what is open gets seeds
    assert len(seeds["gelu"]) < len(seeds["relu"])


def test_a_near_tie_stops_for_futility_before_max_seeds(capsys):
    """gelu 3 points better, silu 0.3 points off relu with a spread (2 points a run; 1.5 was
    resolvable at 24 seeds at the levels the testing procedure of issue 29 gives) that 24 seeds cannot resolve
    (neither different nor inside +/- 1 point): silu's conditional power at 24 seeds is tiny, so
    it stops early, and the round lines say so, while relu goes on only as long as gelu needs it."""
    searcher, trained = simulate(np.random.default_rng(5), first=3, most=24,
                                 planted={"relu": 0.0, "gelu": 0.03, "silu": 0.003}, noise=0.02)
    seeds = pd.Series([s for (_, s) in trained]).groupby([a for (a, _) in trained]).count()
    status = searcher.status()
    assert status["finished"] and status["futile"] >= 1 and seeds["silu"] < 24, (seeds, status)
    assert len(status["rounds"]) <= status["looks"] == 8
    assert status["seed_runs"] < 3 * 24 / 2  # under half the fixed design's runs
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sim: round")]
    assert any("stopped for futility" in line for line in lines), lines


def test_sequential_verdicts_keep_the_error_rate(tmp_path):
    """Planted effects with known answers: the number of simulated studies with a wrong better /
    worse / equivalent verdict at the end of their rounds (futility stops included) stays within
    the one-sided binomial 95% bound at alpha = 0.05, so a true rate above alpha would show."""
    from scipy.stats import binom

    from analysis.compare import analyse
    from analysis.load import Results

    rng = np.random.default_rng(2026)
    wrong, studies = 0, 150
    for _ in range(studies):
        searcher, trained = simulate(rng)
        runs = pd.DataFrame([{"trainable": "mnist1d_cnn", "activation": a, "seed": s, "status": "completed",
                              "test_acc": v, "chance_acc": 0.1} for (a, s), v in trained.items()])
        results = Results(tmp_path, pd.DataFrame(), runs, searcher.spec, searcher.run_record())
        verdicts = analyse(results, smallest_effect=SMALLEST_EFFECT, detail=False).findings().set_index("level")["verdict"]
        wrong += any(verdicts[level] in bad for level, bad in WRONG.items())
        assert len(searcher.rounds) <= searcher.looks  # the shares spent add up to at most alpha
    bound = binom.ppf(0.95, studies, 0.05)  # 12 of 150; a true 10% exceeds it 75% of the time
    print(f"seeds on demand: {wrong} of {studies} studies with a wrong verdict (bound {bound:.0f})")
    assert wrong <= bound


# SIGKILL: what a SLURM job at its time limit gets, with no chance to save anything; SIGINT's own
# path (exit 130, "continue with ... --resume") is tested with batched seeds in test_study_runner,
# and here too where the suite's time allows: add signal.SIGINT to the list
@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["sigkill"])
def test_an_interrupted_driver_mid_round_resumes_the_rounds(sig, tmp_path, data_root):
    storage = tmp_path / "results"
    folder = storage / "mnist1d_grid"
    args = ["--smoke", "--epochs", "4", "--seeds", "2", "--max-seeds", "6", "--storage", str(storage),
            "--data-root", str(data_root)]
    proc = StudyProcess(*args, log=tmp_path / "first.log")
    wait_for(lambda: "mnist1d_grid: round 2:" in (tmp_path / "first.log").read_text(), timeout=240,
             what="the second round")
    proc.send_signal(sig)
    code, out = proc.finish(timeout=120)
    if sig == signal.SIGINT:
        assert code == 130 and "continue with the same command and --resume" in out, out[-3000:]
    else:
        assert code == -signal.SIGKILL

    code, out = StudyProcess(*args, "--resume", log=tmp_path / "resumed.log").finish()
    assert code == 0, out[-3000:]
    _, after = study_summary(out, "mnist1d_grid")
    assert after[0].startswith("mnist1d_grid: seeds on demand: ") and "against 4 configs x 6 = 24" in after[0], after
    assert after[-1].startswith("mnist1d_grid: the whole report: python -m analysis.report ")
    trials = pd.read_parquet(folder / "trials.parquet")
    assert not trials.duplicated(["activation", "batchnorm", "seed"]).any()  # no seed trained twice
    for _, seeds in trials.groupby(["activation", "batchnorm"])["seed"]:
        assert sorted(seeds) == list(range(len(seeds))) and 2 <= len(seeds) <= 6
    assert (trials["status"] == "completed").all()
    run = json.loads(pq.read_schema(folder / "trials.parquet").metadata[b"hpstudy.run"])
    assert run["looks"] == 3 and run["max_seeds"] == 6 and len(run["rounds"]) >= 2
    assert run["spending"] == "obrien-fleming" and run["fractions"] == [2 / 6, 4 / 6, 1.0]
    assert sum(r["scheduled"] for r in run["rounds"]) == len(trials)


def test_max_seeds_with_an_optuna_search_is_refused(tmp_path, capsys):
    from test_study_runner import run_main

    code, err = run_main(capsys, "mnist1d_cnn", "--max-seeds", "6", "--storage", str(tmp_path), preset="optuna")
    assert code == 2 and len(err) == 1 and "an Optuna search has none" in err[0]
    assert list(tmp_path.iterdir()) == []
