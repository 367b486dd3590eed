"""Outcomes beyond accuracy (analysis.outcomes): times compared as ratios, the generalization gap,
epochs to a target where a run that never gets there counts as failed, several outcomes in one
report. Planted studies written through the real export, then given the columns a real study
records (train_time_s, final_train_acc, per-epoch val_acc)."""

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import findings
from analysis.compare import analyse
from analysis.load import load_results
from analysis.report import main as report_main

from conftest import call_main
from synthetic import make_study, write_synthetic

pytestmark = pytest.mark.no_ray


def rewrite(folder, name: str, change) -> None:
    """Change a results file's frame, keeping its hpstudy metadata (what the export wrote)."""
    table = pq.read_table(folder / name)
    frame = change(table.to_pandas())
    new = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(new.replace_schema_metadata({**(new.schema.metadata or {}), **{
        k: v for k, v in table.schema.metadata.items() if k.startswith(b"hpstudy.")}}), folder / name)


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    """Batchnorm costs 20% more training time; the activations cost the same, runs varying by 2%."""
    study = make_study("timed", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "gelu", "tanh"],
                                                               "batchnorm": [False, True]}, seeds=5)
    folder = write_synthetic(tmp_path_factory.mktemp("timed"), study, lambda p: 0.9, sd=0.003)
    rng = np.random.default_rng(7)

    def times(frame):
        planted = 10.0 * np.where(frame["batchnorm"], 1.2, 1.0)
        return frame.assign(train_time_s=planted * np.exp(rng.normal(0, 0.02, len(frame))))
    rewrite(folder, "trials.parquet", times)
    return folder


def test_training_time_reads_batchnorm_slower_by_its_ratio_and_activations_equivalent(timed):
    table = findings(timed, metric="train_time_s")
    bn = table[table["factor"] == "batchnorm"].iloc[0]
    assert bn["verdict"] == "worse" and bn["ci_low"] < 0.20 < bn["ci_high"]  # effects are ratios - 1
    assert 0.15 < bn["effect"] < 0.25
    activations = table[table["factor"] == "activation"]
    assert list(activations["verdict"]) == ["equivalent", "equivalent"]  # within the default 5%
    analysis = analyse(load_results(timed), "train_time_s")
    rows = analysis.comparisons
    assert re.fullmatch(r"True vs False: worse: 1\d% slower \[\+1\d%, \+2\d%\]",
                        rows[rows["factor"] == "batchnorm"]["finding"].iloc[0])
    means = analysis.failures[analysis.failures["factor"] == "batchnorm"].set_index("level")["trained_mean"]
    assert means.to_dict() == pytest.approx({False: 10.0, True: 12.0}, rel=0.02)  # in seconds, not their logs


def test_times_of_two_devices_are_compared_within_each(timed, tmp_path):
    rewrite(timed, "trials.parquet", lambda f: f.assign(device=np.where(f["seed"] % 2 == 0, "cpu", "cuda")))
    try:
        analysis = analyse(load_results(timed), "train_time_s", detail=False)
        assert analysis.devices == ("cpu", "cuda")
        assert set(analysis.comparisons["stratum"]) == {"device=cpu", "device=cuda"}
    finally:
        rewrite(timed, "trials.parquet", lambda f: f.assign(device="cpu"))


def test_dropout_narrowing_the_generalization_gap_by_3_points_is_found(tmp_path):
    study = make_study("gap", {"trainable": "mnist_mlp"}, {"dropout": [0.0, 0.5]}, seeds=4)
    folder = write_synthetic(tmp_path, study, lambda p: 0.9, sd=0.004)
    rng = np.random.default_rng(3)
    rewrite(folder, "trials.parquet", lambda f: f.assign(final_train_acc=f["test_acc"] + np.where(
        f["dropout"] > 0, 0.05, 0.08) + rng.normal(0, 0.003, len(f))))
    row = findings(folder, metric="generalization_gap").iloc[0]
    assert row["verdict"] == "better" and row["effect"] == pytest.approx(-0.03, abs=0.01)  # lower is better


def test_a_run_that_never_reaches_the_target_is_a_failed_run_not_a_dropped_one(tmp_path):
    """sigmoid reaches 0.9 in 2 of 10 seeds; the others never do: they are counted as failed, and
    sigmoid fails significantly more often than relu, which always gets there (epoch 3 to 5)."""
    study = make_study("converge", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "sigmoid"]}, seeds=10)
    folder = write_synthetic(tmp_path, study, lambda p: 0.92, sd=0.002)
    trials = pq.read_table(folder / "trials.parquet").to_pandas()

    def epochs(frame):
        rows = []
        for _, run in trials.iterrows():
            fast = run["activation"] == "relu" or run["seed"] < 2
            for epoch in range(1, 7):
                pace = 0.06 + 0.02 * (run["seed"] % 3)
                val = min(0.95, 0.6 + pace * epoch) if fast else 0.6 + 0.03 * epoch
                rows.append({**frame[frame["trial_id"] == run["trial_id"]].iloc[0].to_dict(), "epoch": epoch,
                             "val_acc": val, "epoch_time_s": 1.0})
        return pd.DataFrame(rows)
    rewrite(folder, "epochs.parquet", epochs)
    analysis = analyse(load_results(folder), "epochs_to_target", target=0.9, detail=False)
    row = analysis.comparisons.iloc[0]
    assert (row["runs"], row["failed"], row["runs_ref"], row["failed_ref"]) == (10, 8, 10, 0)  # none dropped
    assert row["verdict"] == "worse" and row["decided_by"] == "failures"
    assert (analysis.runs["failure"] == "target not reached").sum() == 8


def test_several_outcomes_in_one_report_give_each_its_own_rows(timed, tmp_path, capsys):
    both = tmp_path / "both"
    assert call_main(report_main, [str(timed), "--out", str(both), "--metric", "test_acc",
                                   "--metric", "train_time_s"]) == 0
    table = pd.read_csv(both / "findings.csv")
    assert list(dict.fromkeys(table["metric"])) == ["test_acc", "train_time_s"]
    for metric in ("test_acc", "train_time_s"):
        alone = tmp_path / metric
        assert call_main(report_main, [str(timed), "--out", str(alone), "--metric", metric]) == 0
        pd.testing.assert_frame_equal(table[table["metric"] == metric].reset_index(drop=True),
                                      pd.read_csv(alone / "findings.csv"))
    text = (both / "report.md").read_text()
    assert "## Findings: training time" in text and "Each outcome is a family of its own" in text
    assert (both / "forest_train_time_s.png").is_file()


@pytest.mark.parametrize("argv, expected", [
    (["--metric", "speed"], "argument --metric: invalid choice: 'speed'"),
    (["--metric", "epochs_to_target"], "epochs_to_target needs the validation accuracy to reach: add --target VALUE"),
    (["--metric", "epochs_to_target", "--target", "1.5"], "--target is a validation accuracy in (0, 1), got 1.5"),
])
def test_bad_outcomes_are_one_line(timed, tmp_path, capsys, argv, expected):
    code = call_main(report_main, [str(timed), "--out", str(tmp_path / "report"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "report").exists()


def test_each_outcome_keeps_alpha_and_two_together_keep_twice_alpha():
    """Null studies (no effect on accuracy or on time; 4 activations x batchnorm, 3 seeds): the
    studies with any false verdict, per outcome and for either, against the one-sided binomial
    95% bounds at alpha and at 2 x alpha (each outcome is its own family at alpha)."""
    import tempfile
    from pathlib import Path

    from scipy import stats as sps

    studies, rng = 60, np.random.default_rng(1)
    study = make_study("null2", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "gelu", "silu", "mish"],
                                                               "batchnorm": [False, True]}, seeds=3)
    false = {"test_acc": 0, "train_time_s": 0, "either": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(studies):
            folder = write_synthetic(Path(tmp) / f"s{i}", study, lambda p: 0.9, sd=0.01, rng_seed=rng)
            rewrite(folder, "trials.parquet",
                    lambda f: f.assign(train_time_s=10.0 * np.exp(rng.normal(0, 0.05, len(f)))))
            wrong = {}
            for metric in ("test_acc", "train_time_s"):
                verdicts = findings(folder, metric=metric)["verdict"]
                wrong[metric] = bool(verdicts.isin(["better", "worse"]).any())
                false[metric] += wrong[metric]
            false["either"] += wrong["test_acc"] or wrong["train_time_s"]
    bound, bound_two = sps.binom.ppf(0.95, studies, 0.05), sps.binom.ppf(0.95, studies, 0.10)
    assert false["test_acc"] <= bound and false["train_time_s"] <= bound, false
    assert false["either"] <= bound_two, false
    print(f"false verdicts in {studies} null studies: {false}")


def test_a_study_names_the_outcomes_its_report_compares(tmp_path, capsys):
    from study.definition import make_study as study_with
    from study.presets import STUDIES
    from study.study_file import StudyFileError, read_study_file, to_toml

    assert STUDIES["stl10_grid"].outcomes == ("test_acc", "train_time_s")
    assert STUDIES["mnist_regularization"].outcomes == ("test_acc", "generalization_gap")
    file = tmp_path / "gap.toml"
    file.write_text('outcomes = ["test_acc", "generalization_gap"]\n[fixed]\ntrainable = "mnist_mlp"\n'
                    '[axes]\ndropout = [0.0, 0.5]\n')
    study = read_study_file(file)
    assert study.outcomes == ("test_acc", "generalization_gap") and study.spec()["outcomes"] == list(study.outcomes)
    file.write_text(to_toml(study))
    assert read_study_file(file) == study  # --print-study writes them back
    for outcomes, message in [('["speed"]', "unknown outcome 'speed'"),
                              ('["epochs_to_target"]', "outcome epochs_to_target needs a target")]:
        file.write_text(f"outcomes = {outcomes}\n[fixed]\ntrainable = \"mnist_mlp\"\n")
        with pytest.raises(StudyFileError, match=message):
            read_study_file(file)
    # the report compares the study's outcomes where --metric names none
    spec = study_with("gap", "", {"trainable": "mnist_mlp"}, {"dropout": [0.0, 0.5]}, 3, {},
                      outcomes=["test_acc", "generalization_gap"])
    folder = write_synthetic(tmp_path / "results", spec, lambda p: 0.9)
    rewrite(folder, "trials.parquet", lambda f: f.assign(final_train_acc=f["test_acc"] + 0.05))
    assert call_main(report_main, [str(folder), "--out", str(tmp_path / "report")]) == 0
    assert list(dict.fromkeys(pd.read_csv(tmp_path / "report" / "findings.csv")["metric"])) == \
        ["test_acc", "generalization_gap"]


def test_a_gradient_ratio_ten_times_smaller_reads_worse_as_a_share_lower(tmp_path):
    """grad_ratio (the export's first / last layer gradient norm) is compared on the log scale, every
    run's value counted: half the sigmoid runs stuck at chance are the runs it explains, not failures."""
    study = make_study("depth", {"trainable": "mnist_mlp"}, {"activation": ["relu", "sigmoid"]}, seeds=4)
    folder = write_synthetic(tmp_path, study, lambda p: 0.9, sd=0.004)
    rng = np.random.default_rng(5)
    stuck = lambda f: (f["activation"] == "sigmoid") & (f["seed"] % 2 == 0)  # noqa: E731
    rewrite(folder, "trials.parquet", lambda f: f.assign(grad_ratio=np.where(
        f["activation"] == "sigmoid", 0.05, 0.5) * np.exp(rng.normal(0, 0.2, len(f))),
        test_acc=f["test_acc"].where(~stuck(f), f["chance_acc"])))
    row = findings(folder, metric="grad_ratio").iloc[0]
    assert row["verdict"] == "worse" and row["ci_low"] < -0.9 < row["ci_high"]  # ratio - 1: 90% lower
    analysis = analyse(load_results(folder), "grad_ratio")
    row = analysis.comparisons.iloc[0]
    assert re.fullmatch(r"sigmoid vs relu: worse: x0\.1\d? \[x0\.0\d+, x0\.\d+\]", row["finding"]), row["finding"]
    assert (row["n"], row["n_ref"]) == (4, 4) and analysis.failures["failed"].sum() == 0
    assert analyse(load_results(folder), "test_acc").failures["failed"].sum() == 2  # on accuracy they failed


def test_relative_effects_a_factor_10_apart_read_as_the_ratio():
    from analysis.words import signed

    assert [signed(v, "grad_ratio") for v in (0.2, -0.89, 9.0, -0.9999, 2.3e6)] == \
        ["+20%", "-89%", "x10", "x0.0001", "x2.3e+06"]
    assert signed(-0.89, "grad_ratio", ratio=True) == "x0.11"  # beside an interval bound 10 times apart
    assert signed(0.05, "test_acc") == "+5.0"  # points, as before
