"""Every preset runs with --smoke on a real local Ray and writes the contract's Parquet files."""

import contextlib
import io
import json
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray

from analysis.report import main as report_main
from study import export
from study.presets import STUDIES
from study.run import main

from conftest import study_summary

EPOCH_COLUMNS = ["study", "trial_id", "trainable", "activation", "batchnorm", "lr", "weight_decay", "dropout",
                 "optimizer", "init", "batch_size", "seed", "epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                 "epoch_time_s"]
TRIAL_COLUMNS = ["study", "trial_id", "trainable", "activation", "batchnorm", "lr", "weight_decay", "dropout",
                 "optimizer", "init", "batch_size", "seed", "status", "epochs_completed", "final_val_acc", "best_val_acc",
                 "best_epoch", "final_val_loss", "test_acc", "train_time_s", "train_us_per_sample",
                 "infer_us_per_sample", "n_params", "device", "hostname"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def smoke_trials(name: str) -> int:
    return math.prod(len(v) for v in STUDIES[name].smoke_axes.values())


def read(folder):
    return pd.read_parquet(folder / export.EPOCHS_FILE), pd.read_parquet(folder / export.TRIALS_FILE)


@pytest.fixture(scope="module")
def smoke_run(local_ray, data_root, tmp_path_factory):
    """Run a preset with --smoke once per module; tests share its results folder and summary line."""
    runs = {}

    def run(preset):
        if preset not in runs:
            storage = tmp_path_factory.mktemp(preset)
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                code = main(preset, ["--smoke", "--storage", str(storage), "--data-root", str(data_root)])
            runs[preset] = (code, storage / preset, output.getvalue())
        return runs[preset]

    return run


@pytest.mark.parametrize("preset", list(STUDIES))
def test_every_preset_runs_in_smoke_mode(preset, smoke_run):
    code, folder, output = smoke_run(preset)
    assert code == 0
    summary, after = study_summary(output, preset)
    assert summary.startswith(f"{preset}: {smoke_trials(preset)} trials") and str(folder) in summary
    # its answer: a smoke study has one seed per configuration, so no verdicts, and says why
    assert after == [f"{preset}: no verdicts: each configuration has one seed: no seed-to-seed spread to test against",
                     f"{preset}: the whole report: python -m analysis.report {folder} --out report/"], after
    epochs, trials = read(folder)
    assert set(EPOCH_COLUMNS) <= set(epochs.columns)
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert len(trials) == smoke_trials(preset) and trials["trial_id"].is_unique
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (trials["status"] != "error").all(), trials.loc[trials["status"] == "error", "error"].tolist()
    completed = trials[trials["status"] == "completed"]
    assert (completed["epochs_completed"] == 2).all()
    assert len(epochs) == trials["epochs_completed"].sum()
    assert set(epochs["study"]) == {preset}
    for axis in STUDIES[preset].smoke_axes:
        assert trials[axis].nunique() == len(STUDIES[preset].smoke_axes[axis]), axis
    meta = pq.read_schema(folder / export.TRIALS_FILE).metadata
    assert json.loads(meta[b"hpstudy.study"])["name"] == preset
    assert json.loads(meta[b"hpstudy.versions"])["torch"]


def test_a_diverging_config_inside_a_grid_is_a_result(local_ray, data_root, tmp_path):
    # lr 10 with weight decay 10 multiplies the weights ~100x per step: NaN within ~20 steps of the fixture data
    code = main("lr_sensitivity", ["--smoke", "--epochs", "25", "--storage", str(tmp_path), "--data-root", str(data_root)])
    assert code == 0
    _, trials = read(tmp_path / "lr_sensitivity")
    assert set(trials.loc[(trials["lr"] == 10.0) & (trials["weight_decay"] == 10.0), "status"]) == {"diverged"}
    assert set(trials.loc[trials["lr"] == 0.01, "status"]) == {"completed"}


def test_bundles_expand_into_real_config_columns(smoke_run):
    _, trials = read(smoke_run("optimizer_benchmark")[1])
    by_optimizer = trials.groupby("optimizer")["lr"].unique().to_dict()
    assert by_optimizer["sgd"].tolist() == [0.1] and by_optimizer["cubic_adam"].tolist() == [1e-3]
    assert set(trials["regularization"]) == {"none"} and set(trials["hidden"]) == {"[128, 128]"}
    assert set(trials["trainable"]) == {"fashion_mnist_mlp", "mnist_mlp"}


def test_mnist_depth_records_diagnostics_and_its_report_shows_them(smoke_run, tmp_path):
    folder = smoke_run("mnist_depth")[1]
    epochs, trials = read(folder)
    diagnosed = ["grad_norm_first", "grad_norm_last", "dead_fraction", "saturated_fraction"]
    assert set(diagnosed) <= set(epochs.columns)
    assert epochs[diagnosed].notna().all().all()
    assert set(zip(trials["depth"], trials["width"])) == {(5, 64), (10, 48)}
    last = epochs.sort_values("epoch").groupby("trial_id").last()
    assert trials.set_index("trial_id")["grad_ratio"].to_dict() == pytest.approx(
        (last["grad_norm_first"] / last["grad_norm_last"]).to_dict())
    assert report_main([str(folder), "--out", str(tmp_path)]) == 0  # its outcomes: test_acc and grad_ratio
    report = (tmp_path / "report.md").read_text()
    assert "## Findings: gradient ratio (first / last layer)" in report
    assert (tmp_path / "unit_fractions.png").exists() and (tmp_path / "gradient_norms.png").exists()


def test_optuna_search_with_asha(tmp_path, data_root, local_ray, capsys):
    code = main("optuna", ["mnist1d_cnn", "--smoke", "--num-samples", "3", "--asha", "--storage", str(tmp_path),
                           "--data-root", str(data_root)])
    assert code == 0
    epochs, trials = read(tmp_path / "optuna_mnist1d_cnn")
    assert len(trials) == 3 and trials["lr"].nunique() == 3
    assert trials["lr"].between(1e-5, 1.0).all() and trials["dropout"].between(0, 0.5).all()
    assert set(trials["status"]) <= {"completed", "diverged"}
    summary, after = study_summary(capsys.readouterr().out, "optuna_mnist1d_cnn")
    assert summary.startswith("optuna_mnist1d_cnn: 3 trials")
    assert after[0].startswith("optuna_mnist1d_cnn: no verdicts: an Optuna search samples configurations adaptively")
    assert after[1].startswith("optuna_mnist1d_cnn: the whole report: python -m analysis.report ")


# --- a configuration's seeds as the members of one trial (--fuse K; --batch-seeds K, its old spelling) ----

def test_batched_seeds_give_the_same_rows_as_single_seed_trials(smoke_run, local_ray, data_root, tmp_path):
    _, single_folder, _ = smoke_run("mnist1d_grid")  # seed 0 of each config, one trial each
    output = io.StringIO()
    errors = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
        code = main("mnist1d_grid", ["--smoke", "--seeds", "2", "--batch-seeds", "2", "--storage", str(tmp_path),
                                     "--data-root", str(data_root)])
    assert code == 0
    assert "--batch-seeds is deprecated: it is --fuse 2" in errors.getvalue()
    assert study_summary(output.getvalue(), "mnist1d_grid")[0].startswith(
        "mnist1d_grid: 8 runs (fused, up to 2 per trial): 8 completed")
    epochs, trials = read(tmp_path / "mnist1d_grid")
    single_epochs, single_trials = read(single_folder)
    # same schema, column for column and type for type; one row per seed x epoch
    assert epochs.dtypes.to_dict() == single_epochs.dtypes.to_dict()
    assert trials.dtypes.drop("error").to_dict() == single_trials.dtypes.drop("error").to_dict()
    assert len(trials) == 8 and trials["trial_id"].is_unique and set(trials["seed"]) == {0, 1}
    assert len(epochs) == 8 * 2 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert all(t.endswith(f"-m{s}") for t, s in zip(trials["trial_id"], trials["seed"]))  # member s is seed s
    # seed 0 of each batched trial is the single-seed trial (Adam amplifies rounding: close, not bitwise)
    key = ["activation", "batchnorm", "epoch"]
    batched0 = epochs[epochs["seed"] == 0].sort_values(key).reset_index(drop=True)
    single = single_epochs.sort_values(key).reset_index(drop=True)
    assert (batched0[key] == single[key]).all().all()
    assert batched0["train_loss"].to_numpy() == pytest.approx(single["train_loss"].to_numpy(), rel=1e-3)
    # 0.03: 3 of 128 validation samples apart on this session's CPU, where the tree before fusion gives the same
    assert batched0["val_acc"].to_numpy() == pytest.approx(single["val_acc"].to_numpy(), abs=0.03)


def test_stl10_grid_with_ten_batched_seeds(local_ray, data_root, tmp_path):
    code = main("stl10_grid", ["--fuse", "10", "--seeds", "10", "--smoke", "--epochs", "1", "--storage", str(tmp_path),
                               "--data-root", str(data_root)])
    assert code == 0
    epochs, trials = read(tmp_path / "stl10_grid")
    assert len(trials) == smoke_trials("stl10_grid") * 10
    assert all(seeds == list(range(10)) for seeds in trials.groupby(["activation", "batchnorm"])["seed"].apply(sorted))
    assert trials.groupby(["activation", "batchnorm"]).ngroups == 4
    assert set(trials["status"]) == {"completed"} and (trials["epochs_completed"] == 1).all()
    assert len(epochs) == len(trials) and (trials["trial_id"].str.rsplit("-m", n=1).str[0].value_counts() == 10).all()
    # ten different runs per configuration, not one run ten times
    assert (trials.groupby(["activation", "batchnorm"])["final_val_loss"].nunique() == 10).all()


def test_optuna_optimises_the_mean_over_batched_seeds(local_ray, data_root, tmp_path, capsys):
    code = main("optuna", ["mnist1d_cnn", "--fuse", "5", "--smoke", "--storage", str(tmp_path),
                           "--data-root", str(data_root)])
    assert code == 0
    folder = tmp_path / "optuna_mnist1d_cnn"
    _, trials = read(folder)
    assert len(trials) == 2 * 5 and sorted(trials["seed"]) == sorted(list(range(5)) * 2)
    trials["tune_trial"] = trials["trial_id"].str.rsplit("-m", n=1).str[0]
    for tune_trial, seeds in trials.groupby("tune_trial"):
        assert seeds["lr"].nunique() == 1 and len(seeds) == 5  # one sampled config, five seeds
        reported = json.loads((folder / tune_trial / "result.json").read_text().splitlines()[-1])
        assert reported["val_acc"] == pytest.approx(seeds["final_val_acc"].mean())  # what Optuna was told
    assert study_summary(capsys.readouterr().out, "optuna_mnist1d_cnn")[0].startswith(
        "optuna_mnist1d_cnn: 10 runs (fused, up to 5 per trial)")
