"""Fused studies (--fuse K): a grid's points trained as members of fewer trials give results that
read exactly like an unfused study's (rows, columns, types, numbers, verdicts); extending one
with more seeds fuses the runs it adds; seeds on demand fuses a round's runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ray.tune.search import Searcher

from analysis.compare import analyse
from analysis.load import load_results
from study.definition import make_study
from study.fusion import members_of
from study.run import main
from study.seeds_on_demand import SeedsOnDemand

from conftest import call_main, study_summary

STUDY_FILE = """
name = "fused_check"
seeds = 3
[fixed]
trainable = "mnist1d_mlp"
hidden = [32]
epochs = 2
max_train_samples = 256
max_eval_samples = 128
[axes]
activation = ["relu", "gelu"]
lr = [0.01, 0.003]
"""
CONFIG = ["activation", "lr", "seed"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One Ray for the module's studies (a study joins a Ray it did not start and leaves it up)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def study(capsys, study_file: Path, storage: Path, data_root: Path, *flags: str) -> str:
    code = call_main(main, None, [str(study_file), "--storage", str(storage), "--data-root", str(data_root), *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def runs(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(folder / name).sort_values([*CONFIG, *(["epoch"] if "epoch" in name else [])]
                                                      ).reset_index(drop=True)


def test_a_fused_study_reads_like_an_unfused_one_and_extends_fused(capsys, tmp_path, data_root):
    study_file = tmp_path / "fused_check.toml"
    study_file.write_text(STUDY_FILE)
    plain = study(capsys, study_file, tmp_path / "plain", data_root)
    fused = study(capsys, study_file, tmp_path / "fused", data_root, "--fuse", "4")
    assert study_summary(plain, "fused_check")[0].startswith("fused_check: 12 trials: 12 completed")
    line, answer = study_summary(fused, "fused_check")
    assert line.startswith("fused_check: 12 runs (fused, up to 4 per trial): 12 completed")

    for name in ("trials.parquet", "epochs.parquet"):
        a, b = runs(tmp_path / "plain" / "fused_check", name), runs(tmp_path / "fused" / "fused_check", name)
        assert list(a.columns) == list(b.columns) and list(a.dtypes) == list(b.dtypes) and a.shape == b.shape
        # the same runs, to float rounding (no dropout: each member is exactly its run alone)
        assert a[CONFIG].equals(b[CONFIG])
        metrics = (("final_val_acc", "final_val_loss", "test_acc") if name == "trials.parquet" else
                   ("val_acc", "val_loss", "train_loss"))
        for metric in metrics:
            assert b[metric].tolist() == pytest.approx(a[metric].tolist(), rel=1e-4, abs=1e-5), (name, metric)
    fused_trials = runs(tmp_path / "fused" / "fused_check", "trials.parquet")
    # each group (an activation) has 2 lr x 3 seeds = 6 members: two trials of 3 at --fuse 4
    assert fused_trials["trial_id"].str.fullmatch(r".+_\d{5}-m[0-2]").all()
    assert fused_trials["trial_id"].str.rsplit("-", n=1).str[0].nunique() == 4
    assert (fused_trials.groupby(fused_trials["trial_id"].str.rsplit("-", n=1).str[0])["activation"].nunique() == 1).all()
    # time columns are each member's share of its trial
    assert fused_trials.groupby(fused_trials["trial_id"].str.rsplit("-", n=1).str[0])["train_time_s"].nunique().eq(1).all()
    # the study's answer is the same
    verdicts = [analyse(load_results(tmp_path / kind / "fused_check")).findings()
                .sort_values(["factor", "level"])[["factor", "level", "verdict"]].reset_index(drop=True)
                for kind in ("plain", "fused")]
    pd.testing.assert_frame_equal(*verdicts)
    assert answer == [line.replace(str(tmp_path / "plain"), str(tmp_path / "fused"))
                      for line in study_summary(plain, "fused_check")[1]]

    # one more seed per configuration: 4 runs, fused as the study fuses (2 per activation)
    out = study(capsys, study_file, tmp_path / "fused", data_root, "--seeds", "4", "--resume")
    assert "extension-1: 2 trials for seeds 3" in out
    extended = runs(tmp_path / "fused" / "fused_check", "trials.parquet")
    assert len(extended) == 16 and not extended.duplicated(CONFIG).any()
    added = extended[~extended["trial_id"].isin(fused_trials["trial_id"])]
    assert sorted(added["seed"]) == [3] * 4 and added["trial_id"].str.endswith(("-m0", "-m1")).all()


def test_print_study_says_what_fusing_makes_of_it(capsys, tmp_path):
    study_file = tmp_path / "fused_check.toml"
    study_file.write_text(STUDY_FILE)
    code = call_main(main, None, [str(study_file), "--fuse", "4", "--print-study"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == ("# --fuse 4: 12 runs as 4 trials of up to 4 members; members of a trial "
                                   "differ in lr, seed")


def test_seeds_on_demand_fuses_the_runs_of_a_round():
    """The real searcher, driven as Tune would: every round's runs go out as fused trials (one
    per activation, its lr levels and seeds as members), each answered per member."""
    fixed = {"trainable": "mnist1d_mlp", "epochs": 1}
    axes = {"activation": ["relu", "gelu"], "lr": [0.01, 0.003]}
    spec = make_study("sim", "simulated", fixed=fixed, axes=axes, seeds=2, smoke_axes={}).spec()
    points = [{"activation": a, "lr": lr} for a in axes["activation"] for lr in axes["lr"]]
    searcher = SeedsOnDemand(spec, points, fixed, first=2, most=6, smallest_effect=0.01, alpha=0.05,
                             name="sim", fuse=8, fusible=["lr"])
    trained, count = {}, 0
    while True:
        pending = []
        while isinstance(suggestion := searcher.suggest(f"t{count}"), dict):
            pending.append((f"t{count}", suggestion))
            count += 1
        for trial_id, config in pending:
            members = members_of(config)
            assert "seed" not in config and len(members) <= 8
            rows = []
            for index, member in enumerate(members):
                key = (config["activation"], member["lr"], member["seed"])
                assert key not in trained, f"{key} trained twice"
                # relu and gelu tie: the comparison stays open for a while
                value = 0.8 + 0.01 * (member["seed"] % 3) + (0.001 if config["activation"] == "gelu" else 0)
                trained[key] = value
                rows.append({"member": index, "seed": member["seed"], "test_acc": value, "val_acc": value,
                             "chance_acc": 0.1, "diverged": False})
            searcher.on_trial_complete(trial_id, {"member_metrics": rows})
        if suggestion == Searcher.FINISHED:
            break
    assert count < len(trained)  # fused: fewer trials than runs
    recorded = {(r["activation"], r["lr"], r["seed"]): r["test_acc"] for r in searcher.runs}
    assert recorded == trained  # each member's answer reached its own run
    status = searcher.status()
    assert status["seed_runs"] == len(trained) and status["rounds"][0]["scheduled"] == 8
