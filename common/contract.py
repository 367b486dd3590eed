"""The results contract (ARCHITECTURE.md, "Results"): file names, columns, metadata keys, the trial record.

The one place these are defined: the study export writes them, the analysis reads them
(this module imports nothing of the project and neither torch nor Ray).
"""

from __future__ import annotations

import json
from typing import TypedDict

EPOCHS_FILE = "epochs.parquet"
TRIALS_FILE = "trials.parquet"

# --- epochs.parquet: one row per run x epoch --------------------------------------------
EPOCH_METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "diverged"]
# config `grad_norms` or `diagnostics`; `diagnostics` (trainables.diagnostics); the node that ran the epoch
OPTIONAL_EPOCH_METRICS = ["grad_norm_first", "grad_norm_last", "dead_fraction", "saturated_fraction", "node_id"]

# --- trials.parquet: one row per run --------------------------------------------------------
# "unfinished" only appears while a study runs or after it was interrupted (until --resume).
STATUSES = ("completed", "diverged", "error", "unfinished")
# What the export derives from a run's epochs (besides `status` and `error`).
# grad_ratio (grad_norm_first / grad_norm_last at the last epoch: vanishing gradients) only where
# the run recorded gradient norms (config `grad_norms` or `diagnostics`).
OUTCOME_COLUMNS = ["epochs_completed", "final_val_acc", "final_val_loss", "final_train_acc", "final_train_loss",
                   "best_val_acc", "best_epoch", "grad_ratio"]
# The final epoch's test, cost and provenance columns (trainables.loop.cost_metrics and the test pass).
FINAL_METRICS = ["test_acc", "test_loss", "chance_acc", "train_time_s", "train_us_per_sample", "infer_us_per_sample",
                 "n_params", "device", "hostname", "node_id"]
# Every row starts with these, then the run's full config (one column per config key).
IDENTITY_COLUMNS = ["study", "trial_id"]
# A fused trial's runs (its members) report their rows under this key of the trial's metrics
# (trainables.loop); each member is a run of its own, `<Tune trial id>-m<member index>`.
MEMBER_METRICS = "member_metrics"


def member_run_id(trial_id: str, member: int) -> str:
    return f"{trial_id}-m{member}"

# What a file must hold for the analysis to read it.
REQUIRED_EPOCH_COLUMNS = ["study", "trial_id", "trainable", "seed", "epoch", "train_loss", "train_acc", "val_loss",
                          "val_acc"]
REQUIRED_TRIAL_COLUMNS = ["study", "trial_id", "trainable", "seed", "status", "epochs_completed", "final_val_acc",
                          "best_val_acc", "final_val_loss", "test_acc"]

# --- Parquet key-value metadata, on both files ---------------------------------------------
META_STUDY = b"hpstudy.study"  # the study spec (study.definition.Study.spec)
META_RUN = b"hpstudy.run"  # how the study ran: its flags; seeds on demand adds looks and rounds
META_VERSIONS = b"hpstudy.versions"
META_GIT_COMMIT = b"hpstudy.git_commit"
META_FORMAT = b"hpstudy.format"  # the results format, an integer (absent: 1)

# The results format, raised whenever what a results file holds changes meaning (CHANGELOG.md).
# The loader reads every format up to this one, each by its number, and refuses a newer one.
#   1: results written before the format was recorded (hpstudy 0.1): batched seeds as runs
#      `<id>-seed<seed>` beside a `replicates` column; no `resume_command` in hpstudy.run; the
#      oldest lack `chance_acc`, an Optuna spec's `space` or a seeds-on-demand run's `spending`.
#   2: hpstudy 0.2: every member of a fused trial is a run `<id>-m<index>`; `replicates` gone;
#      hpstudy.run carries `resume_command`.
#   3: hpstudy 0.3: grad_norm_first / grad_norm_last taken on one fixed batch after each epoch (in
#      format 2 and before, the mean over the epoch's steps); dead_fraction, saturated_fraction,
#      grad_ratio where recorded.
RESULTS_FORMAT = 3


def config_cell(value):
    """A config value as a results column holds it: lists and tables (hidden sizes, per-layer
    dropout) as JSON text, so a column keeps one type across runs; anything else as it is."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


class TrialRecord(TypedDict):
    """What the export turns into rows: one Tune trial as the live callback or Tune's saved state holds it."""

    config: dict  # the trial's config as Tune gave it (bundle labels not yet expanded)
    history: list[dict]  # every report, in order; a rerun epoch appears again, the last one counts
    error: str | None  # one line, for a trial that errored
    finished: bool  # terminated or errored; False while pending or running


def new_record(config: dict) -> TrialRecord:
    return {"config": config, "history": [], "error": None, "finished": False}
