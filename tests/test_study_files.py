"""Studies and trainables as the user's own data: study files, --set / --axis, --print-study, plugins."""

import contextlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import ray

from analysis.compare import VERDICTS
from study.__main__ import main as study_file_main
from study.effective import effective_study
from study.options import parse_args
from study.presets import STUDIES
from study.run import main as preset_main
from study.spaces import grid_points
from study.study_file import read_study_file, to_toml

from conftest import REPO, call_main, histogram_records, study_summary

# A user's own module (their dataset, Gaussian blobs, and model, an MLP built with make_activation)
# and a study file comparing two activations on it: the docs' examples (docs/studies.md), run here.
EXAMPLES = REPO / "docs" / "examples"
PLUGIN = (EXAMPLES / "my_models.py").read_text()
STUDY = (EXAMPLES / "my_study.toml").read_text()


@pytest.fixture(scope="module")
def module_ray():
    # one Ray for this module's in-process studies
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def user_folder(tmp_path):
    (tmp_path / "my_models.py").write_text(PLUGIN)
    (tmp_path / "my_study.toml").write_text(STUDY)
    return tmp_path


def run_cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_a_users_plugin_and_study_file_run_and_get_findings(user_folder):
    proc = run_cli("study", "my_study.toml", "--storage", "results", "--data-root", "data", cwd=user_folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "blob_study: 6 trials: 6 completed" in proc.stdout
    # the study ends with its answer, in the report's words, the command that adds the seeds an
    # open comparison needs (a study file's own command), and the command for the whole report
    _, after = study_summary(proc.stdout, "blob_study")
    assert after[0].startswith("blob_study: activation (vs relu, points of test accuracy): "), after
    undecided = " undecided: tanh" in after[0]
    assert undecided or any(f" {word}: tanh" in after[0] for word in ("better", "worse", "equivalent")), after
    more = [line for line in after if line.startswith("blob_study: more seeds: ")]
    assert len(after) == 2 + len(more) and (undecided or not more), after
    for line in more:
        assert "python -m study " in line and "my_study.toml --storage " in line and line.endswith(" --resume"), line
    assert after[-1].startswith("blob_study: the whole report: python -m analysis.report ") and "blob_study" in after[-1]
    trials = pd.read_parquet(user_folder / "results" / "blob_study" / "trials.parquet")
    assert sorted(trials["activation"]) == ["relu"] * 3 + ["tanh"] * 3 and set(trials["seed"]) == {0, 1, 2}
    assert (trials["width"] == 32).all() and (trials["epochs_completed"] == 4).all()
    assert (trials["test_acc"] > 0.5).all()  # the blobs are learnable: the model trained

    proc = run_cli("analysis.report", "results/blob_study", "--out", "report", cwd=user_folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    findings = pd.read_csv(user_folder / "report" / "findings.csv")
    row = findings.set_index("factor").loc["activation"]
    assert (row["level"], row["reference"], row["n"], row["n_ref"]) == ("tanh", "relu", 3, 3)
    assert row["verdict"] in VERDICTS


def test_a_registered_trainable_runs_alone_with_batched_seeds(user_folder):
    proc = run_cli("trainables", "blob_mlp", "--plugins", "my_models.py", "--set", "epochs=2", "--set",
                   'members=[{"seed": 0}, {"seed": 1}]',
                   cwd=user_folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["seed"] for r in rows[-1]["member_metrics"]] == [0, 1] and rows[-1]["test_acc"] > 0.3


@pytest.mark.parametrize("plugin, expected", [
    ("no_such_module", "plugin no_such_module cannot be imported (ModuleNotFoundError"),
    ("broken.py", "plugin {folder}/broken.py cannot be imported (NameError"),
    ("taken.py", "plugin {folder}/taken.py: trainable 'mnist_mlp' is already registered; give yours another name"),
])
def test_a_bad_plugin_is_one_line(plugin, expected, user_folder, capsys, monkeypatch):
    (user_folder / "broken.py").write_text("undefined_name\n")
    (user_folder / "taken.py").write_text(PLUGIN.replace('"blob_mlp"', '"mnist_mlp"').replace('"blobs"', '"blobs_taken"'))
    study = STUDY.replace('"my_models.py"', f'"{plugin}"')
    (user_folder / "bad_plugin.toml").write_text(study)
    monkeypatch.chdir(user_folder)
    code, err = study_file_error(capsys, "bad_plugin.toml", "--storage", "results")
    assert code == 2 and expected.format(folder=user_folder) in err, err
    assert not (user_folder / "results").exists()


def study_file_error(capsys, *argv) -> tuple[int, str]:
    code = call_main(study_file_main, list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return code, err


@pytest.mark.parametrize("content, expected", [
    ("name = 'x'\nsedes = 3\n", "bad.toml: unknown key 'sedes'; valid keys: name, description, plugins, seeds"),
    ("name = 'x'\n[fixed]\ntrainable = \n", "bad.toml is not valid TOML: Invalid value (at line 3, column 13)"),
    ("[fixed]\ntrainable = 'mnist1d_cnn'\nlearning_rate = 0.1\n",
     "bad.toml: unknown config key(s) learning_rate for mnist1d_cnn; valid keys: activation"),
    ("[fixed]\ntrainable = 'mnist1d_cnn'\n[axes]\nactivation = ['relu', 'relu6']\n", "unknown activation 'relu6'"),
    ("[fixed]\ntrainable = 'mnist1d_cnn'\n[axes]\nactivation = []\n", "axes.activation must be a non-empty list"),
    ("search = 'optuna'\n[fixed]\ntrainable = 'mnist1d_cnn'\n[space]\nlr = ['loguniform', 0, 1]\n",
     "space.lr: a loguniform range must be above 0"),
    ("seeds = 0\n", "seeds must be a positive integer, got 0"),
])
def test_a_bad_study_file_is_one_line(content, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.toml").write_text(content)
    code, err = study_file_error(capsys, "bad.toml", "--storage", "results")
    assert code == 2 and expected in err, err
    assert not Path("results").exists()


def test_a_missing_study_file_is_one_line(tmp_path, capsys):
    code, err = study_file_error(capsys, str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml does not exist" in err and "--print-study" in err


@pytest.mark.parametrize("preset", list(STUDIES))
def test_print_study_round_trips_every_preset(preset, tmp_path, capsys):
    assert preset_main(preset, ["--print-study"]) == 0
    text = capsys.readouterr().out
    assert text == to_toml(STUDIES[preset])
    path = tmp_path / f"{preset}.toml"
    path.write_text(text)
    assert read_study_file(path) == STUDIES[preset]
    printed = effective_study(parse_args(None, [str(path)]))
    original = effective_study(parse_args(preset, []))
    assert printed.spec() == original.spec()
    assert [printed.expand(c) for c in grid_points(printed.fixed, printed.axes, printed.seeds)] == \
           [original.expand(c) for c in grid_points(original.fixed, original.axes, original.seeds)]


def test_the_presets_ship_as_study_files():
    folder = REPO / "study" / "studies"
    assert {p.stem for p in folder.glob("*.toml")} == {*STUDIES, "optuna"}
    for name, study in STUDIES.items():
        assert read_study_file(folder / f"{name}.toml") == study


@pytest.mark.parametrize("argv, expected", [
    (["--axis", "activation=relu,relu6"], "unknown activation 'relu6'"),
    (["--axis", "activation"], "--axis takes key=level,level,..."),
    (["--set", "activation=gelu"], "activation is an axis of study mnist1d_grid; use --axis activation=gelu"),
    (["--set", "lr=-1"], "lr must be a positive number, got -1"),
    (["--set", "learning_rate=0.1"], "unknown config key(s) learning_rate for mnist1d_cnn"),
    (["--optuna-storage", "sqlite:///x.db"], "--optuna-storage keeps an Optuna search's study; a grid has none"),
    (["--log", "neptune"], "argument --log: invalid choice: 'neptune'"),
])
def test_bad_overrides_and_tracking_flags_are_one_line(argv, expected, tmp_path, capsys):
    code = call_main(preset_main, "mnist1d_grid", [*argv, "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "results").exists()


def test_set_and_axis_change_a_preset_run(tmp_path, data_root, module_ray):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = preset_main("mnist1d_grid", ["--smoke", "--axis", "activation=tanh,relu,silu", "--axis", "batchnorm=true",
                                            "--set", "lr=0.05", "--set", "channels=8", "--storage", str(tmp_path),
                                            "--data-root", str(data_root)])
    assert code == 0, output.getvalue()[-3000:]
    trials = pd.read_parquet(tmp_path / "mnist1d_grid" / "trials.parquet")
    assert sorted(trials["activation"]) == ["relu", "silu", "tanh"] and trials["batchnorm"].all()
    assert (trials["lr"] == 0.05).all() and (trials["channels"] == 8).all()
    spec = json.loads(__import__("pyarrow.parquet", fromlist=["x"]).read_schema(
        tmp_path / "mnist1d_grid" / "trials.parquet").metadata[b"hpstudy.study"])
    assert spec["axes"] == {"activation": ["tanh", "relu", "silu"], "batchnorm": [True]}  # the study as it ran


def test_an_optuna_study_file_with_its_own_storage_tensorboard_and_a_progress_bar(user_folder, monkeypatch, module_ray):
    """An Optuna search over a plugin trainable, described in a file; Optuna's study kept in SQLite
    (what optuna-dashboard reads), Tune's TensorBoard logger on, the compact progress bar."""
    import optuna

    (user_folder / "search.toml").write_text(textwrap.dedent('''
        name = "blob_search"
        plugins = ["my_models.py"]
        search = "optuna"
        [fixed]
        trainable = "blob_mlp"
        epochs = 2
        [space]
        lr = ["loguniform", 1e-3, 1e-1]
        width = ["int", 8, 64]
        activation = ["choice", ["relu", "gelu"]]
    '''))
    monkeypatch.chdir(user_folder)
    url = f"sqlite:///{user_folder / 'optuna.db'}"
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = study_file_main(["search.toml", "--num-samples", "3", "--storage", "results", "--optuna-storage", url,
                                "--log", "tensorboard"])
    assert code == 0, output.getvalue()[-3000:]
    folder = user_folder / "results" / "blob_search"
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 3 and trials["lr"].between(1e-3, 1e-1).all() and trials["width"].between(8, 64).all()
    assert set(trials["activation"]) <= {"relu", "gelu"} and trials["lr"].nunique() == 3
    stored = optuna.load_study(study_name="blob_search", storage=url)
    assert [t.state for t in stored.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(t.value for t in stored.trials) == sorted(trials["final_val_acc"])
    events = list(folder.glob("*/events.out.tfevents.*"))
    assert len([e for e in events if not e.name.endswith(".histograms")]) == 3  # Tune's scalars
    histograms = [e for e in events if e.name.endswith(".histograms")]  # each trial's first and last layer's
    assert len(histograms) == 3
    tags = [(step, tag) for step, tag, _ in histogram_records(histograms[0])]
    assert tags == [(epoch, f"{layer}/{kind}") for epoch in (1, 2) for layer in ("first_layer", "last_layer")
                    for kind in ("weight", "grad")]
    lines = output.getvalue().splitlines()
    assert any("blob_search: 100%" in line and "3/3" in line for line in lines)  # the progress bar
    assert not any("Number of trials" in line for line in lines)  # instead of Tune's boxes
    assert study_summary(output.getvalue(), "blob_search")[0].startswith("blob_search: 3 trials: 3 completed")


def test_an_optuna_storage_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    code = preset_main("optuna", ["mnist1d_cnn", "--optuna-storage", "nosuchdb://x", "--storage", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--optuna-storage nosuchdb://x cannot be opened" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_tracking_extra_not_installed_is_one_line(logger, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec(logger) is not None:
        pytest.skip(f"{logger} is installed here; the message is for machines without it")
    code = preset_main("mnist1d_grid", ["--log", logger, "--storage", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"--log {logger} needs the {logger} package; pip install 'hpstudy[{logger}]'" in err
    assert not (tmp_path / "r").exists()
