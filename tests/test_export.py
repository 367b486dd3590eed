"""Parquet export: one row per (trial, epoch), self-describing rows, atomic writes, metadata."""

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq

from study import export
from study.presets import STUDIES

from conftest import REPO

STUDY = STUDIES["mnist_regularization"]


def history(epochs, **extra):
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.1 * e, "val_loss": 1.0 / e, "val_acc": 0.1 * e,
             "epoch_time_s": 0.5, "diverged": False, **extra} for e in epochs]


def test_rerun_epochs_keep_the_last_report_and_rows_carry_full_config():
    config = {"trainable": "mnist_mlp", "hidden": [512, 1024, 128], "regularization": "dropout",
              "optimizer": "adam", "init": "normal", "weight_decay": 0.0, "seed": 4, "epochs": 3}
    reports = history([1, 2]) + [{**history([2])[0], "val_acc": 0.99}] + history([3], test_acc=0.5, n_params=7)
    rows = export.epoch_rows(export.identity(STUDY, "t1", config), reports)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1]["val_acc"] == 0.99  # the rerun of epoch 2 after a restore wins
    row = rows[0]
    assert row["regularization"] == "dropout" and row["dropout"] == "[0.2, 0.5, 0.5]"
    assert row["optimizer"] == "adam" and row["lr"] == 1e-3  # the bundle's learning rate
    assert row["batchnorm"] is False and row["activation"] == "relu"  # defaults filled in
    assert row["hidden"] == "[512, 1024, 128]" and row["seed"] == 4


def test_trial_rows_statuses_and_best_epoch():
    config = {"trainable": "mnist_mlp", "regularization": "none", "optimizer": "sgd", "init": "he_normal",
              "weight_decay": 0.0, "seed": 0}
    trials = {
        "done": {"config": config, "history": history([1, 2, 3], test_acc=0.8), "error": None, "finished": True},
        "nan": {"config": config, "history": history([1]) + [{**history([2])[0], "diverged": True, "train_loss": float("nan"),
                                                              "test_acc": 0.1}], "error": None, "finished": True},
        "broken": {"config": config, "history": history([1]), "error": "RuntimeError: boom", "finished": True},
        "running": {"config": config, "history": history([1, 2]), "error": None, "finished": False},
    }
    epochs, rows = export.collect(STUDY, trials)
    by_id = {r["trial_id"]: r for r in rows}
    assert {k: v["status"] for k, v in by_id.items()} == {
        "done": "completed", "nan": "diverged", "broken": "error", "running": "unfinished"}
    assert by_id["done"]["best_epoch"] == 3 and by_id["done"]["best_val_acc"] == 0.30000000000000004
    assert by_id["done"]["test_acc"] == 0.8 and by_id["done"]["epochs_completed"] == 3
    assert by_id["broken"]["error"] == "RuntimeError: boom" and by_id["broken"]["test_acc"] is None
    assert len(epochs) == 3 + 2 + 1 + 2


def test_write_results_is_atomic_and_self_describing(tmp_path):
    # the study's own fixed keys: its per-layer dropout needs its three hidden layers
    config = {**STUDY.fixed, "regularization": "none", "optimizer": "sgd", "init": "auto", "weight_decay": 0.0,
              "seed": 0}
    trials = {"a": {"config": config, "history": history([1, 2], test_acc=0.9), "error": None, "finished": True},
              "b": {"config": {**config, "regularization": "dropout"}, "history": history([1]), "error": None,
                    "finished": True}}
    epochs, rows = export.collect(STUDY, trials)
    export.write_results(str(tmp_path), STUDY, epochs, rows, {"smoke": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == [export.EPOCHS_FILE, export.TRIALS_FILE]  # no temp files left
    frame = pd.read_parquet(tmp_path / export.EPOCHS_FILE)
    assert frame["dropout"].tolist() == ["0.0", "0.0", "[0.2, 0.5, 0.5]"]  # one type per column
    meta = pq.read_schema(tmp_path / export.TRIALS_FILE).metadata
    assert json.loads(meta[b"hpstudy.study"])["axes"]["init"][0] == "xavier_normal"
    assert set(json.loads(meta[b"hpstudy.versions"])) >= {"torch", "ray", "pandas", "pyarrow"}
    assert json.loads(meta[b"hpstudy.run"]) == {"smoke": True}
    assert b"hpstudy.git_commit" in meta


def test_duplicate_epoch_rows_are_refused_even_under_python_O(tmp_path):
    # a real error, not an assert that `python -O` would strip
    code = (
        "import sys; from study.export import write_results; from study.presets import STUDIES\n"
        "row = {'study': 's', 'trial_id': 't', 'epoch': 1}\n"
        "try:\n"
        f"    write_results({str(tmp_path)!r}, STUDIES['mnist1d_grid'], [row, dict(row)], [])\n"
        "except ValueError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "more than one row for trial t epoch 1" in proc.stdout
    assert not (tmp_path / "epochs.parquet").exists()
