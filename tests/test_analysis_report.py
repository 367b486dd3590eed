"""The report and the notebooks on Parquet written by real --smoke studies; bad result files."""

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import ray
from nbclient import NotebookClient

from analysis import report
from analysis.compare import FINDINGS_COLUMNS, VERDICTS
from analysis.load import ResultsError, load_results
from study.run import main

from conftest import REPO

NOTEBOOKS = REPO / "analysis" / "notebooks"


@pytest.fixture(scope="module")
def local_ray():
    # one Ray for the module's studies (each `python -m study.X` would start its own)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def run_study(preset: str, storage: Path, data_root: Path, *extra) -> Path:
    """`python -m study.<preset> --smoke ...`, in this process on the module's Ray."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(preset, ["--smoke", "--storage", str(storage), "--data-root", str(data_root), *extra])
    assert code == 0, output.getvalue()[-3000:]
    return storage / preset


@pytest.fixture(scope="module")
def activation_results(tmp_path_factory, data_root, local_ray):
    # two seeds so every activation x batchnorm cell is testable
    return run_study("mnist1d_grid", tmp_path_factory.mktemp("studies"), data_root, "--seeds", "2")


@pytest.fixture(scope="module")
def optimizer_results(tmp_path_factory, data_root, local_ray):
    return run_study("optimizer_benchmark", tmp_path_factory.mktemp("studies"), data_root, "--seeds", "2")


def test_report_on_a_real_smoke_study(activation_results, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(activation_results), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "comparisons decided" in proc.stdout
    text = (out / "report.md").read_text()
    # the findings come first, before any figure or detail table
    assert text.index("## Findings") < text.index("## Figures") < text.index("## What the findings rest on")
    for heading in ("# Study mnist1d_grid", "| factor ", "| verdict ", "How the findings are made",
                    "Error control over the whole study", "Interactions (Wald tests", "Seed-to-seed spread",
                    "Share of the variance", "Comparisons in detail"):
        assert heading in text, heading
    for figure in ("forest", "box_test_acc", "box_train_us_per_sample", "curves_activation", "heatmap"):
        assert (out / f"{figure}.png").stat().st_size > 10_000, figure
        assert f"]({figure}.png)" in text
    assert "<img src='forest.png'" in (out / "report.html").read_text()
    table = pd.read_csv(out / "findings.csv")
    assert list(table.columns) == FINDINGS_COLUMNS
    # relu and gelu x batchnorm on and off, 2 seeds: gelu vs relu and batchnorm on vs off
    assert set(table["factor"]) == {"activation", "batchnorm"}
    assert set(table["verdict"]) <= set(VERDICTS) and (table["metric"] == "test_acc").all()
    trials = pd.read_parquet(activation_results / "trials.parquet")
    assert trials["chance_acc"].between(0.05, 0.5).all()  # the majority-class rate of the (cut) test set


def test_optimizer_benchmark_compares_optimizers_within_each_dataset(optimizer_results, tmp_path):
    results = load_results(optimizer_results)
    report.build_report(results, tmp_path)
    table = pd.read_csv(tmp_path / "findings.csv")
    assert table["factor"].iloc[0] == "optimizer"  # the headline factor, not the dataset
    assert set(table["factor"]) <= {"optimizer", "regularization"}
    optimizer = table[table["factor"] == "optimizer"]
    assert set(optimizer["stratum"]) == {"trainable=fashion_mnist_mlp", "trainable=mnist_mlp"}
    assert set(optimizer["reference"]) == {"sgd"} and set(optimizer["level"]) == {"cubic_adam"}
    text = (tmp_path / "report.md").read_text()
    assert "### Optimizer benchmark" in text
    assert "generalization_gap" in text and "loss_variance_across_seeds" in text


def test_report_on_an_optuna_study(tmp_path, data_root, local_ray):
    run_study("optuna", tmp_path, data_root, "mnist1d_cnn", "--num-samples", "4", "--name", "my_search")
    out = tmp_path / "report"
    report.build_report(load_results(tmp_path / "my_search"), out)  # recognised from the spec, not the name
    text = (out / "report.md").read_text()
    assert "No significance tests: an Optuna search" in text and "Parameter importance" in text
    assert (out / "optuna_progress.png").exists() and (out / "optuna_params.png").exists()
    assert pd.read_csv(out / "findings.csv").empty


def test_report_on_depth_study_shows_gradient_norms(tmp_path, data_root, local_ray):
    run_study("mnist_depth", tmp_path, data_root)
    out = tmp_path / "report"
    report.build_report(load_results(tmp_path / "mnist_depth"), out)
    assert (out / "gradient_norms.png").stat().st_size > 10_000
    # one seed per configuration: no tests, and the report says so
    assert "each configuration has one seed" in (out / "report.md").read_text()
    assert (pd.read_csv(out / "findings.csv")["verdict"] == "not testable").all()


@pytest.mark.parametrize("notebook, results", [("activation_study.ipynb", "activation_results"),
                                                ("optimizer_benchmark.ipynb", "optimizer_results")])
def test_notebooks_execute_end_to_end(notebook, results, request, monkeypatch):
    folder = request.getfixturevalue(results)
    source = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("HPSTUDY_RESULTS", str(folder))
    client = NotebookClient(source, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError if any cell fails
    images = sum("image/png" in out.get("data", {}) for c in source.cells if c.cell_type == "code" for out in c.outputs)
    assert images >= 3


# --- bad result files: one line naming the file, exit 2 ----------------------------------------

def report_cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis.report", *args], capture_output=True, text=True, timeout=120)


def test_missing_results_folder(tmp_path):
    proc = report_cli(str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is not a folder" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_corrupt_parquet_is_named(activation_results, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "epochs.parquet").write_bytes((activation_results / "epochs.parquet").read_bytes())
    (folder / "trials.parquet").write_bytes((activation_results / "trials.parquet").read_bytes()[:300])
    proc = report_cli(str(folder), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"{folder / 'trials.parquet'} is not a readable Parquet file" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_missing_columns_are_listed(activation_results, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "trials.parquet").write_bytes((activation_results / "trials.parquet").read_bytes())
    epochs = pd.read_parquet(activation_results / "epochs.parquet")
    epochs.drop(columns=["val_acc", "epoch"]).to_parquet(folder / "epochs.parquet")
    with pytest.raises(ResultsError, match=r"epochs.parquet lacks required column\(s\) epoch, val_acc"):
        load_results(folder)
    proc = report_cli(str(folder), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "lacks required column(s) epoch, val_acc" in proc.stderr


def test_results_are_read_through_a_filesystem_uri(activation_results, tmp_path):
    """The report reads results by URI (s3://, gs:// on a cluster) through pyarrow's filesystems;
    file:// takes the same path here, where no object store can be reached."""
    by_path, by_uri = load_results(activation_results), load_results(f"file://{activation_results}")
    pd.testing.assert_frame_equal(by_path.trials, by_uri.trials)
    assert by_uri.spec == by_path.spec and by_uri.name == by_path.name
    proc = report_cli("nosuchscheme://bucket/study", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "nosuchscheme://bucket/study cannot be opened" in proc.stderr and not (tmp_path / "out").exists()
