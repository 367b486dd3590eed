"""More seeds for a finished study (study.extend): `--seeds N --resume` trains only the missing
(configuration, seed) runs into the same folder, the old rows stay exactly as they were, and
what cannot be extended is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.compare import analyse
from analysis.load import load_results
from common.contract import META_RUN
from study.definition import make_study
from study.extend import missing_trials
from study.fusion import trial_seeds
from study.run import main

from conftest import REPO, call_main, study_summary

KEY = {"trials.parquet": ["trial_id"], "epochs.parquet": ["trial_id", "epoch"]}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One Ray for the module's studies (a study joins a Ray it did not start and leaves it up)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def study(capsys, storage: Path, *flags: str) -> str:
    code = call_main(main, "mnist1d_grid", ["--smoke", "--storage", str(storage), "--data-root",
                                            str(storage.parent / "data"), *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / name) for name in KEY}


def assert_old_rows_unchanged(before: dict, after: dict) -> None:
    """Every row the study had is in the new files, value for value, with the same columns and types."""
    for name, key in KEY.items():
        old = before[name].sort_values(key).reset_index(drop=True)
        kept = after[name][after[name]["trial_id"].isin(old["trial_id"])].sort_values(key).reset_index(drop=True)
        assert list(after[name].columns) == list(old.columns)
        pd.testing.assert_frame_equal(kept, old, check_exact=True)


def seeds_per_configuration(folder: Path) -> dict:
    trials = load_results(folder).trials
    return trials.groupby(["activation", "batchnorm"])["seed"].apply(lambda s: sorted(s)).to_dict()


def run_metadata(folder: Path) -> dict:
    return json.loads(pq.read_schema(folder / "trials.parquet").metadata[META_RUN])


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_more_seeds_train_only_the_missing_runs_and_refusals_write_nothing(tmp_path, capsys):
    storage = tmp_path / "results"
    study(capsys, storage, "--seeds", "2")
    folder = storage / "mnist1d_grid"
    before, files = tables(folder), snapshot(folder)

    # what --resume cannot do: one line each, exit 2, the folder untouched
    for flags, expected in [
        (["--seeds", "1"], "--seeds 1 is below the 2 seeds per configuration study mnist1d_grid has"),
        (["--axis", "activation=relu,tanh", "--seeds", "3"],
         "was trained with another grid (axis activation: relu,gelu in the study, relu,tanh now)"),
        (["--epochs", "3", "--seeds", "3"], "another grid (fixed value epochs: 2 in the study, 3 now)"),
        (["--max-seeds", "6"], "--max-seeds 6 differs from the study's own (it has none)"),
    ]:
        code = call_main(main, "mnist1d_grid", ["--storage", str(storage), "--resume", *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
        if "another grid" in expected:
            assert "--name NEW_NAME" in err[0]
    assert snapshot(folder) == files

    # the command the analysis gives for more seeds, from a real shell, as printed
    command = analyse(load_results(folder)).more_seeds_command.format(seeds=3)
    assert command == f"python -m study.mnist1d_grid --storage {storage} --seeds 3 --resume"
    proc = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "extension-1: 4 trials for seeds 2, so that every configuration has 3 seeds" in proc.stdout
    summary, after_lines = study_summary(proc.stdout, "mnist1d_grid")
    assert "12 trials: 12 completed" in summary
    assert after_lines[-1].startswith("mnist1d_grid: the whole report: python -m analysis.report")

    after = tables(folder)
    assert_old_rows_unchanged(before, after)
    assert all(v == [0, 1, 2] for v in seeds_per_configuration(folder).values())  # as the report sees them
    meta = run_metadata(folder)
    new_ids = sorted(set(after["trials.parquet"]["trial_id"]) - set(before["trials.parquet"]["trial_id"]))
    (extension,) = meta["extensions"]
    assert extension["run_ids"] == new_ids and len(new_ids) == 4
    assert (extension["seeds_before"], extension["seeds"], extension["seeds_trained"]) == (2, 3, [2])
    assert meta["seeds"] == 3
    extended = analyse(load_results(folder))
    assert extended.extensions == 1 and extended.family_alpha == 0.05 / 2  # one more look

    # the same command again: nothing more to train, and the study says so
    code = call_main(main, "mnist1d_grid", ["--storage", str(storage), "--resume", "--seeds", "3"])
    summary, _ = study_summary(capsys.readouterr().out, "mnist1d_grid")
    assert code == 0 and "12 trials: 12 completed" in summary
    assert_old_rows_unchanged(after, tables(folder))


def test_a_batched_study_and_a_seeds_on_demand_study_extend(tmp_path, capsys):
    batched = tmp_path / "batched"
    study(capsys, batched, "--seeds", "2", "--fuse", "2")
    before = tables(batched / "mnist1d_grid")
    out = study(capsys, batched, "--seeds", "4", "--resume")
    assert "extension-1: 4 trials for seeds 2-3" in out
    assert "16 runs (fused, up to 2 per trial): 16 completed" in study_summary(out, "mnist1d_grid")[0]
    assert_old_rows_unchanged(before, tables(batched / "mnist1d_grid"))
    assert all(v == [0, 1, 2, 3] for v in seeds_per_configuration(batched / "mnist1d_grid").values())

    on_demand = tmp_path / "on_demand"
    study(capsys, on_demand, "--seeds", "2", "--max-seeds", "2")
    before = tables(on_demand / "mnist1d_grid")
    out = study(capsys, on_demand, "--seeds", "3", "--resume")
    assert "12 trials: 12 completed" in study_summary(out, "mnist1d_grid")[0]
    assert_old_rows_unchanged(before, tables(on_demand / "mnist1d_grid"))
    meta = run_metadata(on_demand / "mnist1d_grid")
    assert meta["max_seeds"] == 2 and len(meta["rounds"]) == 1 and meta["looks"] == 1
    assert analyse(load_results(on_demand / "mnist1d_grid")).family_alpha == 0.05 / 2


def test_the_missing_runs_of_a_study_whose_configurations_have_uneven_seeds():
    """After seeds on demand some configurations have more seeds than others: an extension to N
    seeds fills each one up to N and trains nothing twice, fused, a configuration's missing seeds share trials."""
    grid = make_study("uneven", "", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "gelu", "tanh"]}, 6, {})
    key = lambda level: (json.dumps(level),)
    trained = {key("relu"): set(range(2)), key("gelu"): set(range(6)), key("tanh"): set(range(4))}
    missing = missing_trials(grid, trained)
    assert sorted((c["activation"], c["seed"]) for c in missing) == \
        sorted([("relu", s) for s in range(2, 6)] + [("tanh", 4), ("tanh", 5)])
    fused = make_study("uneven", "", {"trainable": "mnist1d_cnn"}, {"activation": ["relu", "tanh"]}, 6, {})
    missing = missing_trials(fused, {key("relu"): set(range(2)), key("tanh"): set(range(4))}, fuse=2)
    assert sorted((c["activation"], trial_seeds(c)) for c in missing) == [("relu", [2, 3]), ("relu", [4, 5]),
                                                                          ("tanh", [4, 5])]
