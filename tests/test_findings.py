"""The findings on synthetic studies with planted answers, written through the real export."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import findings
from analysis.compare import FINDINGS_COLUMNS, analyse
from analysis.failures import fisher_test
from analysis.load import load_results
from analysis.model import BlockModel
from study.presets import OPTIMIZER_LEVELS

from conftest import call_main
from synthetic import make_study, write_synthetic

REGULARIZATION = {"none": {"weight_decay": 0.0, "dropout": 0.0}, "l2": {"weight_decay": 5e-4, "dropout": 0.0}}


def row(table: pd.DataFrame, **where) -> pd.Series:
    chosen = table
    for key, value in where.items():
        chosen = chosen[chosen[key] == value]
    assert len(chosen) == 1, (where, table)
    return chosen.iloc[0]


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """Adam is 0.6 points better than SGD on Fashion-MNIST only; 0.2 points of seed noise."""
    study = make_study("two_datasets", {"hidden": [16], "epochs": 1},
                       {"trainable": ["fashion_mnist_mlp", "mnist_mlp"], "optimizer": ["sgd", "adam", "rmsprop"],
                        "regularization": ["none", "l2"]}, seeds=10,
                       bundles={"optimizer": {k: OPTIMIZER_LEVELS[k] for k in ("sgd", "adam", "rmsprop")},
                                "regularization": REGULARIZATION})

    def mean(point):
        return 0.85 + (0.006 if point["optimizer"] == "adam" and point["trainable"] == "fashion_mnist_mlp" else 0.0)

    return write_synthetic(tmp_path_factory.mktemp("s") / "two_datasets", study, mean, sd=0.002, seed_sd=0.003)


def test_an_effect_in_one_dataset_is_found_there_and_only_there(two_datasets):
    table = findings(two_datasets)
    assert list(table.columns) == FINDINGS_COLUMNS
    assert set(table["stratum"]) == {"trainable=fashion_mnist_mlp", "trainable=mnist_mlp"}  # never pooled
    fashion = row(table, factor="optimizer", level="adam", stratum="trainable=fashion_mnist_mlp")
    mnist = row(table, factor="optimizer", level="adam", stratum="trainable=mnist_mlp")
    assert fashion["verdict"] == "better" and fashion["effect"] == pytest.approx(0.006, abs=0.002)
    assert fashion["ci_low"] > 0 and fashion["p_adjusted"] < 0.05 and fashion["reference"] == "sgd"
    assert mnist["verdict"] == "equivalent" and mnist["ci_low"] > -0.01 and mnist["ci_high"] < 0.01
    # paired over seed x regularization: 10 seeds x 2 levels
    assert fashion["n"] == fashion["n_ref"] == 20


def test_bundle_aliases_and_the_dataset_are_not_factors(two_datasets):
    results = load_results(two_datasets)
    assert {"lr", "momentum", "weight_decay", "dropout"} <= set(results.trials.columns)  # the aliases are stored
    analysis = analyse(results)
    assert analysis.design.names == ["optimizer", "regularization"]
    assert analysis.design.strata == ("trainable",)
    assert set(analysis.findings()["factor"]) == {"optimizer", "regularization"}
    assert row(analysis.findings(), factor="regularization", level="l2", stratum="trainable=mnist_mlp")["verdict"] \
        == "equivalent"


def test_interaction_gives_simple_effects_with_opposite_verdicts(tmp_path):
    study = make_study("interaction", {"trainable": "mnist1d_cnn", "epochs": 1},
                       {"activation": ["relu", "gelu", "sigmoid"], "batchnorm": [False, True]}, seeds=5)

    def mean(point):
        bonus = {"relu": 0.03, "gelu": 0.03, "sigmoid": -0.03}[point["activation"]]
        return 0.8 + (bonus if point["batchnorm"] else 0.0)

    analysis = analyse(load_results(write_synthetic(tmp_path / "s", study, mean, sd=0.004, seed_sd=0.01)))
    table = analysis.findings()
    assert row(analysis.interactions, factor="activation", other="batchnorm")["simple_effects"]  # one test per pair
    assert row(table, factor="batchnorm", stratum="activation=relu")["verdict"] == "better"
    assert row(table, factor="batchnorm", stratum="activation=sigmoid")["verdict"] == "worse"
    assert "batchnorm=True" in set(table.loc[table["factor"] == "activation", "stratum"])
    shares = analysis.shares.set_index("source")
    assert shares.loc["activation x batchnorm", "share"] > shares.loc["seeds (residual)", "share"]
    assert (shares["ci_low"] <= shares["share"]).all() and (shares["share"] <= shares["ci_high"]).all()


def test_a_null_factor_with_many_seeds_reads_equivalent(tmp_path):
    study = make_study("null", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "elu"]}, seeds=20)
    table = findings(write_synthetic(tmp_path / "s", study, lambda p: 0.9, sd=0.003, seed_sd=0.01))
    assert row(table, level="elu")["verdict"] == "equivalent"


def test_a_small_effect_with_three_seeds_is_inconclusive_and_says_how_many_seeds(tmp_path):
    study = make_study("small", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "gelu"]}, seeds=3)
    # 0.8 points against a smallest effect of 1: neither a difference nor inside the band at 3 seeds
    mean = {"relu": 0.9, "gelu": 0.908}
    table = findings(write_synthetic(tmp_path / "s", study, lambda p: mean[p["activation"]], sd=0.006, rng_seed=3))
    gelu = row(table, level="gelu")
    assert gelu["verdict"] == "inconclusive" and gelu["n"] == 3 and gelu["seeds_needed"] > 3


def test_baseline_option_changes_the_reference(tmp_path):
    study = make_study("base", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "gelu", "elu"]},
                       seeds=4)
    table = findings(write_synthetic(tmp_path / "s", study, lambda p: 0.9), baseline={"activation": "gelu"})
    assert set(table["reference"]) == {"gelu"} and set(table["level"]) == {"relu", "elu"}


def test_failures_counted_honestly(tmp_path):
    """GELU without batchnorm fails 6 of 10 seeds; when it trains it is as good as ReLU."""
    study = make_study("failures", {"trainable": "mnist1d_cnn", "epochs": 1},
                       {"activation": ["relu", "gelu"], "batchnorm": [False, True]}, seeds=10)

    def status(point, seed):
        if point["activation"] == "gelu" and not point["batchnorm"] and seed < 6:
            return "diverged"
        if point["activation"] == "relu" and point["batchnorm"] and seed == 9:
            return "error"
        if point["activation"] == "relu" and not point["batchnorm"] and seed == 8:
            return "unfinished"
        return "completed"

    analysis = analyse(load_results(write_synthetic(tmp_path / "s", study, lambda p: 0.9, status=status)))
    assert analysis.excluded == {"error": 1, "unfinished": 1}
    assert len(analysis.runs) == 38
    failures = analysis.failures
    batchnorm = failures[failures["factor"] == "batchnorm"]
    assert batchnorm["p_fisher"].notna().sum() == 1  # one Fisher test for a two-level factor
    on = row(batchnorm, level=True)
    assert on["failed"] == 0 and on["p_fisher"] == pytest.approx(fisher_test(0, 19, 6, 19))
    gelu = row(failures, factor="activation", level="gelu")
    assert (gelu["failed"], gelu["n"]) == (6, 20)
    rate, low, high = gelu["rate"], gelu["rate_low"], gelu["rate_high"]
    assert rate == 0.3 and 0.1 < low < rate < high < 0.55
    assert gelu["trained_mean"] == pytest.approx(row(failures, factor="activation", level="relu")["trained_mean"],
                                                 abs=0.005)
    assert gelu["p_improvement"] <= 14 / 20  # its 6 failed runs rank below every trained run
    # the effect is on the runs that trained; 6 of 20 against 0 of 18 is no significant difference
    # at the comparison's level (Fisher at half of it), and the finding says so; a level that fails
    # more often in the sample is not equivalent however good its trained runs (issue 29: this
    # comparison read `equivalent` before)
    compared = row(analysis.comparisons, factor="activation", level="gelu", stratum="all")
    assert compared["n"] == 14 and compared["p_failures"] > compared["failures_level"]
    assert compared["verdict"] == "inconclusive" and compared["why"].startswith("it fails more often")
    assert "not equivalent: it fails more often (6 of 20 runs vs 0 of 18)" in compared["finding"]
    assert "the rates do not differ significantly): 6 of 20 runs vs 0 of 18" in compared["finding"]


def test_a_level_that_fails_more_often_is_worse_and_says_failures_decided(tmp_path):
    """GELU fails in 9 of 10 seeds; the one run that trains is as good as ReLU's."""
    study = make_study("fails_often", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "gelu"]},
                       seeds=10)
    folder = write_synthetic(tmp_path / "s", study, lambda p: 0.9,
                             status=lambda point, seed: "diverged" if point["activation"] == "gelu" and seed < 9
                             else "completed")
    analysis = analyse(load_results(folder))
    gelu = row(analysis.comparisons, level="gelu")
    assert gelu["verdict"] == "worse" and gelu["decided_by"] == "failures"
    assert gelu["p_failures"] <= gelu["failures_level"] and pd.isna(gelu["seeds_needed"])
    assert gelu["finding"].startswith("gelu vs relu: worse: it fails more often (9 of 10 runs vs 0 of 10 failed")


def test_a_level_whose_every_run_fails_is_worse(tmp_path):
    """Sigmoid sits at chance in every seed: its accuracy is the result, not a reason to skip it."""
    study = make_study("all_fail", {"trainable": "mnist1d_cnn", "epochs": 1},
                       {"activation": ["relu", "gelu", "sigmoid"]}, seeds=3)
    mean = {"relu": 0.9, "gelu": 0.9, "sigmoid": 0.11}
    analysis = analyse(load_results(write_synthetic(tmp_path / "s", study, lambda p: mean[p["activation"]], sd=0.004,
                                                    chance=0.1)))
    sigmoid = row(analysis.comparisons, level="sigmoid")
    assert analysis.runs.loc[analysis.runs["activation"] == "sigmoid", "did_not_train"].all()
    assert sigmoid["verdict"] == "worse" and sigmoid["n"] == 3 and sigmoid["effect"] == pytest.approx(-0.79, abs=0.02)
    assert "every run of it failed (3 of 3 runs vs 0 of 3)" in sigmoid["finding"]


def test_chance_is_the_majority_rate_the_export_wrote(tmp_path):
    study = make_study("chance", {"trainable": "twitter_pos_mlp", "epochs": 1}, {"activation": ["relu", "elu"]},
                       seeds=3)
    folder = write_synthetic(tmp_path / "s", study, lambda p: 0.25 if p["activation"] == "elu" else 0.8, chance=0.22)
    runs = analyse(load_results(folder)).runs
    assert runs.loc[runs["activation"] == "elu", "did_not_train"].all()  # 0.25 is near the 0.22 majority rate
    assert not runs.loc[runs["activation"] == "relu", "did_not_train"].any()


def test_one_seed_and_optuna_studies_get_no_tests(tmp_path):
    study = make_study("one_seed", {"trainable": "mnist1d_cnn", "epochs": 1},
                       {"activation": ["relu", "gelu", "elu"], "lr": [1e-3, 1e-2]}, seeds=1)
    analysis = analyse(load_results(write_synthetic(tmp_path / "s", study, lambda p: 0.9 + p["lr"])))
    assert (analysis.findings()["verdict"] == "not testable").all()
    assert analysis.findings()["p_adjusted"].isna().all() and "one seed" in analysis.untestable_because
    assert set(analysis.importances["parameter"]) == {"activation", "lr"}
    assert analysis.importances.iloc[0]["parameter"] == "lr"


def test_results_without_a_spec_fall_back_to_the_config_columns(two_datasets, tmp_path):
    for name in ("epochs.parquet", "trials.parquet"):
        table = pq.read_table(two_datasets / name)
        pq.write_table(table.replace_schema_metadata(None), tmp_path / name)
    analysis = analyse(load_results(tmp_path))
    assert not analysis.design.from_spec and analysis.design.strata == ("trainable",)
    assert "optimizer" in analysis.design.names and "trainable" not in analysis.design.names


@pytest.mark.parametrize("blocked", [True, False])
def test_interval_coverage_at_five_seeds(blocked):
    """The intervals the findings use hold their 95% coverage at 5 seeds, in 1000 simulated
    comparisons of two configurations: seed-blocked where configurations share seeds (as in a
    grid study), unblocked where each run has a seed of its own."""
    rng = np.random.default_rng(2026)
    true_effect, covered, trials = 0.004, 0, 1000
    seeds = np.arange(5)
    for _ in range(trials):
        seed_part = rng.normal(0, 0.01, 5)  # what a seed does to every configuration
        seed_part_ref = seed_part if blocked else rng.normal(0, 0.01, 5)
        frame = pd.DataFrame({"activation": ["relu"] * 5 + ["gelu"] * 5,
                              "seed": np.concatenate([seeds, seeds if blocked else seeds + 5]),
                              "test_acc": np.concatenate([0.9 + seed_part_ref + rng.normal(0, 0.003, 5),
                                                          0.9 + true_effect + seed_part + rng.normal(0, 0.003, 5)])})
        model = BlockModel(frame, ["activation"], "test_acc", "seed" if blocked else None)
        low, high = model.contrast([(("gelu",), ("relu",))]).interval(0.95)
        covered += low <= true_effect <= high
    assert covered / trials >= 0.93


@pytest.mark.parametrize("flags, message", [
    (["--baseline", "colour=red"], "colour is not a factor of study two_datasets; factors: optimizer, regularization"),
    (["--baseline", "optimizer=lion"], "lion is not a level of optimizer; levels: sgd, adam, rmsprop"),
    (["--baseline", "optimizer"], "--baseline takes factor=level"),
    (["--smallest-effect", "-0.01"], "--smallest-effect must be a non-negative number"),
])
def test_bad_analysis_options_are_one_line(two_datasets, tmp_path, capsys, flags, message):
    # in this process (the same main as `python -m analysis.report`; test_analysis_report runs it in a shell)
    from analysis.report import main

    code = call_main(main, [str(two_datasets), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_analysis_needs_no_torch():
    code = ("import sys, analysis.report, analysis.compare; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_results_written_before_0_2_still_load_and_analyse(tmp_path):
    """Results of batched seeds before 0.2: trial ids `<id>-seed<seed>` and a `replicates` column
    (a config key then). Without a stored spec (inference of the design), `replicates` is not
    taken for a factor, and the findings are those of the same runs written today."""
    study = make_study("old", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "tanh"]}, seeds=6)
    today = write_synthetic(tmp_path / "today", study, lambda p: 0.9 - 0.03 * (p["activation"] == "tanh"))
    old = tmp_path / "old"
    old.mkdir()
    for name in ("epochs.parquet", "trials.parquet"):
        frame = pq.read_table(today / name).to_pandas()
        frame["trial_id"] = frame["trial_id"] + "-seed" + frame["seed"].astype(str)
        frame["replicates"] = np.where(frame["seed"] < 3, 3, 1)  # two values: a factor, were it not known
        frame.to_parquet(old / name)  # pandas' own metadata only: no hpstudy.study spec
    assert load_results(old).format == 1  # no hpstudy.format: the format before it was recorded
    old_findings = findings(old)
    assert list(old_findings["factor"]) == ["activation"]
    today_findings = findings(today)
    pd.testing.assert_series_equal(old_findings["effect"], today_findings["effect"])
    assert list(old_findings["verdict"]) == list(today_findings["verdict"]) == ["worse"]


def test_results_carry_their_format_and_a_newer_one_is_refused_in_one_line(tmp_path):
    study = make_study("fmt", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "tanh"]}, seeds=3)
    folder = write_synthetic(tmp_path / "now", study, lambda p: 0.9)
    for name in ("epochs.parquet", "trials.parquet"):
        assert pq.read_schema(folder / name).metadata[b"hpstudy.format"] == b"3"
    assert load_results(folder).format == 3
    newer = tmp_path / "newer"
    newer.mkdir()
    for name in ("epochs.parquet", "trials.parquet"):
        table = pq.read_table(folder / name)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"hpstudy.format": b"4"}), newer / name)
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "analysis.report", str(newer), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is in results format 4, newer than this hpstudy reads (formats 1 to 3); upgrade hpstudy" in result.stderr
    assert not out.exists()
