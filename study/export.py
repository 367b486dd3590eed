"""Study results -> `<storage>/<study>/epochs.parquet` and `trials.parquet` (ARCHITECTURE.md's contract).

Each row carries the trial's full config (defaults filled in), so a row
describes itself. Files are written atomically (temp file + rename on a local
disk; one PUT on an object store), with the study spec, package versions and
git commit as Parquet key-value metadata. Exactly one epochs row per
(trial_id, epoch): a trial that reran an epoch after a restore keeps the last.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa

from common.contract import (
    EPOCH_METRICS,
    EPOCHS_FILE,
    FINAL_METRICS,
    MEMBER_METRICS,
    META_FORMAT,
    META_GIT_COMMIT,
    META_RUN,
    META_STUDY,
    META_VERSIONS,
    OPTIONAL_EPOCH_METRICS,
    RESULTS_FORMAT,
    TRIALS_FILE,
    TrialRecord,
    config_cell,
    member_run_id,
)
from common.storage import write_parquet
from study.definition import Study
from study.fusion import members_of
from trainables.registry import resolve_config


def trial_config(study: Study, config: dict) -> dict:
    """The full config of a trial as stored: labels, then every resolved key.

    List values (hidden sizes, per-layer dropout) are stored as JSON text so a
    column keeps one type across trials (e.g. dropout 0.0 beside [0.2, 0.5, 0.5]).
    """
    labels = {k: config[k] for k in study.bundles if k in config}
    resolved = resolve_config(study.expand(config))
    return {k: config_cell(v) for k, v in {**resolved, **labels}.items()}


def identity(study: Study, trial_id: str, config: dict) -> dict:
    """The columns every row of one trial starts with: study, trial id, full config."""
    return {"study": study.name, "trial_id": trial_id, **trial_config(study, config)}  # IDENTITY_COLUMNS first


def epoch_rows(base: dict, history: list[dict]) -> list[dict]:
    by_epoch: dict[int, dict] = {}
    for metrics in history:
        if "epoch" in metrics and metrics["epoch"] == metrics["epoch"]:  # skip rows without an epoch (NaN)
            by_epoch[int(metrics["epoch"])] = metrics  # a rerun epoch replaces the earlier one
    rows = []
    for epoch in sorted(by_epoch):
        metrics = by_epoch[epoch]
        row = {**base, **{k: metrics.get(k) for k in EPOCH_METRICS}}
        row.update({k: metrics[k] for k in OPTIONAL_EPOCH_METRICS if k in metrics})
        row["epoch"] = epoch
        row["diverged"] = bool(row["diverged"])
        rows.append(row)
    return rows


def grad_ratio(first: float, last: float | None) -> float:
    """The first layer's gradient norm over the last's (NaN where either is missing or the last is 0)."""
    return first / last if last and first == first and last == last else math.nan


def trial_row(base: dict, epochs: list[dict], last: dict, error: str | None, finished: bool = True) -> dict:
    row = dict(base)
    diverged = bool(epochs and epochs[-1]["diverged"])
    row["status"] = "error" if error else "diverged" if diverged else "completed" if finished else "unfinished"
    row["error"] = error
    row["epochs_completed"] = len(epochs)
    if epochs:
        # the first epoch of highest val_acc, a missing one (None or NaN) counting as -1 (pandas' idxmax
        # over fillna(-1)), without building a frame per trial: the export of a large study does this per run
        best = max(epochs, key=lambda e: -1.0 if e["val_acc"] is None or e["val_acc"] != e["val_acc"] else e["val_acc"])
        row.update(final_val_acc=epochs[-1]["val_acc"], final_val_loss=epochs[-1]["val_loss"],
                   final_train_acc=epochs[-1]["train_acc"], final_train_loss=epochs[-1]["train_loss"],
                   best_val_acc=best["val_acc"], best_epoch=int(best["epoch"]))
        if epochs[-1].get("grad_norm_first") is not None:
            row["grad_ratio"] = grad_ratio(epochs[-1]["grad_norm_first"], epochs[-1]["grad_norm_last"])
    else:
        row.update(final_val_acc=None, final_val_loss=None, final_train_acc=None, final_train_loss=None,
                   best_val_acc=None, best_epoch=None)
    row.update({k: last.get(k) for k in FINAL_METRICS})
    return row


# --- metadata -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    versions = {}
    for package in ("hpstudy", "torch", "torchvision", "ray", "optuna", "numpy", "pandas", "pyarrow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def file_metadata(study: Study, extra: dict | None = None) -> dict[bytes, bytes]:
    return {
        META_STUDY: json.dumps(study.spec(), default=str).encode(),
        META_VERSIONS: json.dumps(_versions()).encode(),
        META_GIT_COMMIT: json.dumps(_git_commit()).encode(),
        META_RUN: json.dumps(extra or {}, default=str).encode(),
        META_FORMAT: str(RESULTS_FORMAT).encode(),
    }


# --- writing --------------------------------------------------------------------

def _one_type_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    """A column holding JSON text for some trials (a per-layer dropout list) holds JSON text for all."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype != object:  # a typed column holds one type already
            continue
        values = frame[column].dropna()
        if values.map(lambda v: isinstance(v, str)).any() and values.map(lambda v: isinstance(v, (int, float))).any():
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
    return frame


def _table(frame: pd.DataFrame, meta: dict[bytes, bytes]) -> pa.Table:
    table = pa.Table.from_pandas(_one_type_per_column(frame), preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})


def write_results(folder: str, study: Study, epochs: list[dict], trials: list[dict], run_info: dict | None = None):
    meta = file_metadata(study, run_info)
    epochs_frame = pd.DataFrame(epochs)
    if not epochs_frame.empty:
        epochs_frame = epochs_frame.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
        duplicated = epochs_frame.duplicated(["trial_id", "epoch"])
        if duplicated.any():  # a bug upstream, never bad input: refuse to write a file that breaks the contract
            first = epochs_frame[duplicated].iloc[0]
            raise ValueError(f"epochs hold more than one row for trial {first['trial_id']} epoch {first['epoch']}; "
                             "the contract is one row per (trial_id, epoch)")
    trials_frame = pd.DataFrame(trials)
    if not trials_frame.empty:
        trials_frame = trials_frame.sort_values("trial_id", kind="stable").reset_index(drop=True)
    write_parquet(_table(epochs_frame, meta), f"{folder.rstrip('/')}/{EPOCHS_FILE}")
    write_parquet(_table(trials_frame, meta), f"{folder.rstrip('/')}/{TRIALS_FILE}")


def runs_of(trial_id: str, trial: TrialRecord) -> list[tuple[str, dict, list[dict]]]:
    """One Tune trial -> its runs as (trial_id, config, history): itself, or, for a fused trial
    (config `members`), one run per member, `<trial id>-m<index>`.

    A fused trial's epochs carry its members' rows (`member_metrics`, see trainables.loop), one
    per member still training; each member's become the history of a run whose rows look exactly
    like a trial's of its own, so the analysis never needs to know runs were fused."""
    members = members_of(trial["config"])
    if not members:
        return [(trial_id, trial["config"], trial["history"])]
    shared = {k: v for k, v in trial["config"].items() if k != "members"}
    if len(members) == 1:  # one member trains as a single model and reports its row as it is
        return [(member_run_id(trial_id, 0), {**shared, **members[0]}, trial["history"])]
    by_member: dict[int, list[dict]] = {i: [] for i in range(len(members))}
    for metrics in trial["history"]:
        rows = metrics.get(MEMBER_METRICS)
        if isinstance(rows, list):  # Tune's log may hold it as text; the checkpoint's copy is exact
            for row in rows:
                by_member[int(row["member"])].append(row)
    return [(member_run_id(trial_id, i), {**shared, **member}, by_member[i]) for i, member in enumerate(members)]


def collect(study: Study, trials: dict[str, TrialRecord]) -> tuple[list[dict], list[dict]]:
    """Tune trial id -> its record (common.contract.TrialRecord) -> (epoch rows, trial rows)."""
    epochs_out, trials_out = [], []
    for tune_trial_id, trial in sorted(trials.items()):
        for trial_id, config, history in runs_of(tune_trial_id, trial):
            if not history and not trial.get("error"):
                continue  # never started (pending when the study stopped): nothing to record yet
            base = identity(study, trial_id, config)
            rows = epoch_rows(base, history)
            finals = [m for m in history if "test_acc" in m and m["test_acc"] == m["test_acc"]]
            last = finals[-1] if finals else (history[-1] if history else {})
            epochs_out += rows
            trials_out.append(trial_row(base, rows, last, trial.get("error"), trial.get("finished", True)))
    return epochs_out, trials_out


def from_experiment(study: Study, folder: str) -> dict[str, TrialRecord]:
    """What Tune saved in `folder` -> the per-trial records `collect` takes.

    Reads Ray's public ExperimentAnalysis / ResultGrid (reported history, config,
    error) and the saved trial status: TERMINATED or ERROR means finished; a trial
    still pending or running when the driver stopped is unfinished (one that never
    started has an empty history, and `collect` writes no row for it).
    """
    from ray.tune import ExperimentAnalysis, ResultGrid

    analysis = ExperimentAnalysis(folder)
    trials = {}
    for trial, result in zip(analysis.trials, ResultGrid(analysis)):
        frame = result.metrics_dataframe
        history = frame.to_dict("records") if frame is not None and not frame.empty else []
        # Last wins per epoch in epoch_rows: the latest checkpoint's own record of every
        # epoch fills what Tune's log lacks (reports lost with a node whose checkpoints
        # were already saved; seen in this project's node-loss test).
        history += checkpoint_history(result.checkpoint)
        error = None if result.error is None else error_line(result.error, type(result.error).__name__)
        trials[trial.trial_id] = {"config": trial.config, "history": history, "error": error,
                                  "finished": trial.status in ("TERMINATED", "ERROR")}
    return trials


def error_line(error, fallback: str) -> str:
    """A trial's error as one line for the results: the last line of its message (the exception itself)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else fallback


def checkpoint_history(checkpoint) -> list[dict]:
    """The per-epoch metrics a trial's checkpoint carries (see trainables.loop.fit)."""
    if checkpoint is None:
        return []
    from trainables.tune_adapter import load_state

    try:
        return list(load_state(checkpoint).get("history", []))
    except (OSError, RuntimeError, ValueError):  # a checkpoint half-written when a driver died
        return []
