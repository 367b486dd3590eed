"""The runner under failure: driver interrupted (SIGINT, SIGKILL) and resumed, bad input, cluster.yaml."""

import itertools
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from common.errors import ConfigError
from study import export
from study.presets import SMOKE_DATA, STUDIES
from study.run import main
from trainables import fit
from trainables.registry import seed_members

from conftest import REPO, call_main

KEY = ["activation", "batchnorm", "seed", "epoch"]


class StudyProcess:
    """python -m study.mnist1d_grid in the background, its output in a file (a full pipe would stall it)."""

    def __init__(self, *args, log: Path):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "study.mnist1d_grid", *args], cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT, text=True)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def finish(self, timeout=300) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.log.read_text()


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def some_trial_reached_epoch(folder: Path, epoch: int) -> bool:
    return any(folder.glob(f"*/checkpoint_{epoch - 1:06d}"))


def epoch_table(folder: Path) -> pd.DataFrame:
    epochs = pd.read_parquet(folder / export.EPOCHS_FILE)
    return epochs.sort_values(KEY).reset_index(drop=True)


# A checkpoint every epoch: the tests watch them to interrupt a study mid-trial.
SMALL_EPOCHS = 20
SMALL = ["--smoke", "--epochs", str(SMALL_EPOCHS), "--checkpoint-every-s", "0"]


def uninterrupted(data_root, epochs: int, seeds: int) -> pd.DataFrame:
    """The smoke grid's trials (seed 0) run to the end in this process, on one thread as in a 1-CPU
    Ray trial: the rows an uninterrupted study gives, sorted by KEY (a single-seed trial reports
    its one row; a trial of its seeds as members lists their rows)."""
    study = STUDIES["mnist1d_grid"]
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for activation, batchnorm in itertools.product(*study.smoke_axes.values()):
            config = {**study.fixed, **SMOKE_DATA, "epochs": epochs, "seed": 0,
                      "activation": activation, "batchnorm": batchnorm,
                      **({"members": seed_members(0, seeds)} if seeds > 1 else {})}
            fit(config, lambda metrics, state, c=config: rows.extend(
                {"activation": c["activation"], "batchnorm": c["batchnorm"], "seed": c["seed"], **row}
                for row in metrics.get("member_metrics", [metrics])), data_root=str(data_root))
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows).sort_values(KEY).reset_index(drop=True)


# SIGKILL here, single-seed trials; SIGINT below, with batched seeds
@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["sigkill"])
def test_interrupted_driver_resumes_to_the_same_trials_and_epochs(sig, tmp_path, data_root):
    folder = tmp_path / "mnist1d_grid"
    args = [*SMALL, "--storage", str(tmp_path), "--data-root", str(data_root)]
    proc = StudyProcess(*args, log=tmp_path / "first.log")
    wait_for(lambda: some_trial_reached_epoch(folder, 5), what="a trial at epoch 5")
    proc.send_signal(sig)
    code, out = proc.finish(timeout=120)
    if sig == signal.SIGINT:
        assert code == 130, out[-3000:]
        assert "did not finish; continue with the same command and --resume" in out
    else:
        assert code == -signal.SIGKILL
    finished_before = {p.parent.name: len(p.read_text().splitlines())
                       for p in folder.glob("*/result.json")
                       if any('"test_acc"' in line for line in p.read_text().splitlines())}
    assert len(finished_before) < 4  # the interruption did land mid-study

    code, out = StudyProcess(*args, "--resume", log=tmp_path / "resumed.log").finish()
    assert code == 0, out[-3000:]
    assert "4 trials: 4 completed" in out

    table = epoch_table(folder)
    assert not table.duplicated(["trial_id", "epoch"]).any()
    reference = uninterrupted(data_root, epochs=SMALL_EPOCHS, seeds=1)
    assert table[KEY].equals(reference[KEY])  # same trials, same epochs
    # deterministic trials resumed from checkpoints: the very same numbers
    assert table["val_acc"].tolist() == reference["val_acc"].tolist()
    for trial_id, lines in finished_before.items():  # finished trials were not rerun
        assert len((folder / trial_id / "result.json").read_text().splitlines()) == lines


# Two seeds per trial (--seeds 2 --fuse 2): the listed trials of members that Tune restores through
# its BasicVariantGenerator
BATCHED = {"fused": (["--seeds", "2", "--fuse", "2"], "8 runs (fused, up to 2 per trial): 8 completed")}


@pytest.mark.parametrize("how", ["fused"])
def test_interrupted_study_of_batched_seeds_resumes_to_the_same_rows(how, tmp_path, data_root):
    """--fuse: each Tune trial checkpoints K seeds at once; after Ctrl-C, --resume
    continues them from those checkpoints to the very rows the batched trials give uninterrupted."""
    epochs = 16
    storage = tmp_path / "interrupted"
    folder = storage / "mnist1d_grid"
    flags, summary = BATCHED[how]
    args = ["--smoke", "--epochs", str(epochs), *flags, "--data-root", str(data_root),
            "--storage", str(storage), "--checkpoint-every-s", "0"]
    proc = StudyProcess(*args, log=tmp_path / "first.log")
    wait_for(lambda: some_trial_reached_epoch(folder, 3), what="a trial at epoch 3")
    proc.send_signal(signal.SIGINT)
    code, out = proc.finish(timeout=120)
    assert code == 130 and "continue with the same command and --resume" in out, out[-3000:]
    finished = [t for t in folder.iterdir() if (t / f"checkpoint_{epochs - 1:06d}").exists()]
    assert len(finished) < 4  # the interruption did land mid-study
    code, out = StudyProcess(*args, "--resume", log=tmp_path / "resumed.log").finish()
    assert code == 0, out[-3000:]
    assert summary in out
    table = epoch_table(folder)
    assert len(table) == 8 * epochs and not table.duplicated(["trial_id", "epoch"]).any()

    # the same batched trials, uninterrupted: the very same numbers
    reference = uninterrupted(data_root, epochs=epochs, seeds=2)
    assert table[KEY].equals(reference[KEY])
    assert table["val_acc"].tolist() == reference["val_acc"].tolist()

# --- bad input: one line, exit 2, nothing written or overwritten ------------------------------

def run_main(capsys, *argv, preset="mnist1d_grid"):
    code = call_main(main, preset, list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    (["--seeds", "many"], "argument --seeds: expected a positive integer, got 'many'"),
    (["--cpus-per-trial", "0"], "argument --cpus-per-trial: expected a number > 0"),
    (["--gpus-per-trial", "-1"], "argument --gpus-per-trial: expected a number >= 0"),
    (["--max-failures", "-2"], "argument --max-failures: expected an integer >= 0"),
    (["--num-samples", "5"], "--num-samples is for Optuna searches"),
    (["--colour", "blue"], "unrecognized arguments: --colour blue"),
    (["--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["--address", "nonsense"], "is not HOST:PORT or auto"),
    (["--resume"], "nothing to resume at"),
    (["--batch-seeds", "0"], "argument --batch-seeds: expected a positive integer, got '0'"),
    (["--aggregate", "mean"], "--aggregate combines the members of a fused trial into the metric Tune sees; add --fuse K"),
    (["--batch-seeds", "4", "--aggregate", "max"], "argument --aggregate: invalid choice: 'max'"),
    (["--seeds", "4", "--max-seeds", "3"], "--max-seeds 3 is below the 4 seeds every configuration starts with"),
    (["--smallest-effect", "0.02"], "--smallest-effect decides when seeds on demand stop; add --max-seeds M"),
    (["--max-seeds", "6", "--smallest-effect", "-1"], "argument --smallest-effect: expected a number >= 0"),
    (["--checkpoint-every-s", "soon"], "argument --checkpoint-every-s: expected a number such as 1 or 0.25"),
    (["--checkpoint-every-s", "-5"], "argument --checkpoint-every-s: expected a number >= 0"),
    (["--cluster-config", "nope.yaml"], "--cluster-config nope.yaml does not exist"),
    (["--fuse", "0"], "argument --fuse: expected a positive integer, got '0'"),
    (["--fuse", "4", "--batch-seeds", "2"], "--batch-seeds is the old spelling of --fuse; give --fuse K alone"),
    (["--fuse", "4", "--set", "compile=true"], "with members set compile=false and channels_last=false"),
])
def test_bad_flags(argv, expected, tmp_path, capsys):
    code, err = run_main(capsys, *argv, "--storage", str(tmp_path / "results"))
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "results").exists()


def test_shared_storage_with_an_object_store_is_one_line(capsys):
    code, err = run_main(capsys, "--shared-storage", "--storage", "s3://bucket/x")
    assert code == 2 and len(err) == 1 and "--shared-storage is for a folder every node mounts" in err[0], err


def test_optuna_bad_trainable_and_seeds(tmp_path, capsys):
    code, err = run_main(capsys, "resnet", "--storage", str(tmp_path), preset="optuna")
    assert code == 2 and len(err) == 1 and "invalid choice: 'resnet'" in err[0]
    code, err = run_main(capsys, "mnist1d_cnn", "--seeds", "3", "--storage", str(tmp_path), preset="optuna")
    assert code == 2 and len(err) == 1 and "drop --seeds" in err[0]
    # --fuse K on a search trains each sampled config's seeds 0..K-1 together; --aggregate needs it
    code, err = run_main(capsys, "mnist1d_cnn", "--aggregate", "min", "--storage", str(tmp_path), preset="optuna")
    assert code == 2 and len(err) == 1 and "--aggregate combines the members of a fused trial" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_unwritable_storage(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = run_main(capsys, "--storage", str(blocker / "results"))
    assert code == 2 and len(err) == 1 and "is not writable" in err[0] and "not a folder" in err[0]
    assert blocker.read_text() == "not a folder"


def test_storage_where_nothing_can_be_created_stops_before_ray(tmp_path):
    # permission bits call /proc writable for root; creating anything there fails
    proc = subprocess.run([sys.executable, "-m", "study.mnist1d_grid", "--smoke", "--storage", "/proc/forbidden",
                           "--data-root", str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout[-2000:]
    assert proc.stderr.count("\n") == 1 and "--storage /proc/forbidden is not writable" in proc.stderr
    assert "cannot create /proc/forbidden" in proc.stderr and not Path("/proc/forbidden").exists()


def test_the_storage_probe_leaves_nothing_behind(tmp_path, capsys):
    code, err = run_main(capsys, "--resume", "--storage", str(tmp_path / "a" / "b"))
    assert code == 2 and "nothing to resume" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_entry_modules_import_without_running():
    code = "import study.stl10_grid, study.mnist1d_grid, study.optuna; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr[-2000:]


def test_existing_results_are_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "mnist1d_grid"
    folder.mkdir()
    (folder / export.EPOCHS_FILE).write_bytes(b"precious")
    code, err = run_main(capsys, "--storage", str(tmp_path))
    assert code == 2 and len(err) == 1 and "results already exist" in err[0] and "--resume" in err[0]
    assert (folder / export.EPOCHS_FILE).read_bytes() == b"precious"


def test_missing_dataset_stops_before_anything_is_written(tmp_path, capsys):
    code, err = run_main(capsys, "--storage", str(tmp_path / "results"), "--data-root", str(tmp_path / "nowhere"),
                         preset="cifar10_grid")
    assert code == 2 and len(err) == 1 and "--download" in err[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "nowhere").exists()


def test_bad_input_from_a_real_shell_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "study.stl10_grid", "--seeds", "0", "--storage", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "python -m study.stl10_grid: error: argument --seeds: expected a positive integer, got '0'; "
        "see python -m study.stl10_grid --help"]


# --- cluster.yaml ---------------------------------------------------------------------------

def test_cluster_yaml_passes_rays_autoscaler_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["node_config"]["InstanceType"].startswith("g5")
    assert any("pip install -e ~/hpstudy" in c for c in prepared["setup_commands"])
    assert prepared["file_mounts"]["~/hpstudy"] == "."
    # one pinned image and pinned versions on every node; workers that can write the results bucket
    # the image's Ray is the one pinned for every node (the one the tests ran; not the installed Ray,
    # which may be any version the project supports)
    image = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py311-gpu", prepared["docker"]["image"])
    assert image and f"ray[default,tune]=={image.group(1)}" in " ".join(prepared["setup_commands"])
    assert "torch==" in " ".join(prepared["setup_commands"])
    for name in ("gpu_worker", "gpu_worker_spot"):
        node_config = prepared["available_node_types"][name]["node_config"]
        assert node_config["IamInstanceProfile"]["Arn"].endswith(":instance-profile/ray-autoscaler-v1")
        assert prepared["available_node_types"][name]["resources"] == {"CPU": 4, "GPU": 1}
    assert prepared["available_node_types"]["gpu_worker_spot"]["node_config"]["InstanceMarketOptions"] == \
        {"MarketType": "spot"}
    assert all(c.startswith("ulimit -n 65536; ray start") for c in
               prepared["head_start_ray_commands"][1:] + prepared["worker_start_ray_commands"][1:])
    assert not any(".git" in pattern for pattern in prepared["rsync_exclude"])  # results record the commit
    broken = yaml.safe_load((REPO / "cluster.yaml").read_text())
    broken["available_node_types"]["gpu_worker"]["max_wokers"] = 2
    with pytest.raises(Exception, match="max_wokers"):
        validate_config(prepare_config(broken))


def test_an_optuna_space_is_data_checked_at_every_end_and_choice():
    from dataclasses import replace

    from study.effective import validate_study
    from study.presets import optuna_study
    from study.spaces import search_space, space_corners

    study = optuna_study("mnist1d_cnn")
    assert study.search == "optuna" and study.spec()["space"]["lr"] == ["loguniform", 1e-5, 1.0]
    validate_study(study)
    corners = space_corners(study.space)
    assert {c["activation"] for c in corners} == set(study.space["activation"][1])
    assert {c["lr"] for c in corners} == {1e-5, 1.0} and {c["batchnorm"] for c in corners} == {True, False}
    assert set(search_space(study.space)) == set(study.space)
    bad = replace(study, space={**study.space, "activation": ("choice", ("relu", "relu6"))})
    with pytest.raises(ConfigError, match="unknown activation 'relu6'"):
        validate_study(bad)
