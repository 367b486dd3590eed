"""Read and validate a study's Parquet results (never Ray's own files).

`load_results(folder)` returns the epochs and trials tables and the study spec
stored in their metadata. A missing, unreadable or incomplete file is a
`ResultsError`: one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from trainables.errors import UserError

EPOCHS_FILE = "epochs.parquet"
TRIALS_FILE = "trials.parquet"

EPOCH_COLUMNS = ["study", "trial_id", "trainable", "seed", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
TRIAL_COLUMNS = ["study", "trial_id", "trainable", "seed", "status", "epochs_completed", "final_val_acc",
                 "best_val_acc", "final_val_loss", "test_acc"]

# Columns that identify or measure a trial; every other column of trials.parquet is config.
NOT_FACTORS = {
    "study", "trial_id", "seed", "status", "error", "epochs_completed", "final_val_acc", "final_val_loss",
    "final_train_acc", "final_train_loss", "best_val_acc", "best_epoch", "test_acc", "test_loss", "train_time_s",
    "train_us_per_sample", "infer_us_per_sample", "n_params", "device", "hostname", "node_id", "epochs",
    "max_train_samples", "max_eval_samples", "grad_norms", "precision", "channels_last", "chance_acc", "compile",
}


class ResultsError(UserError):
    """Results that cannot be analysed: missing, corrupt, or lacking contract columns."""


@dataclass(frozen=True)
class Results:
    folder: Path
    epochs: pd.DataFrame
    trials: pd.DataFrame
    spec: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # how the study ran (hpstudy.run): flags, seeds-on-demand rounds

    @property
    def name(self) -> str:
        if self.spec.get("name"):
            return self.spec["name"]
        return str(self.trials["study"].iloc[0]) if len(self.trials) else self.folder.name


def _read(path: Path, required: list[str]) -> tuple[pd.DataFrame, dict, dict]:
    if not path.exists():
        raise ResultsError(f"{path} does not exist; give the folder a study wrote (e.g. results/mnist1d_grid)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise ResultsError(f"{path} is not a readable Parquet file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}); rerun the study or restore the file") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ResultsError(f"{path} lacks required column(s) {', '.join(missing)}; "
                           "it was not written by hpstudy's study export")
    meta = table.schema.metadata or {}
    spec = json.loads(meta[b"hpstudy.study"]) if b"hpstudy.study" in meta else {}
    run = json.loads(meta[b"hpstudy.run"]) if b"hpstudy.run" in meta else {}
    return table.to_pandas(), spec, run


def load_results(folder: str | Path) -> Results:
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"{folder} is not a folder; give the study's results folder (e.g. results/mnist1d_grid)")
    epochs, spec, _ = _read(folder / EPOCHS_FILE, EPOCH_COLUMNS)
    trials, trial_spec, run = _read(folder / TRIALS_FILE, TRIAL_COLUMNS)
    if trials.empty:
        raise ResultsError(f"{folder / TRIALS_FILE} holds no trials; run the study (or --resume it) first")
    return Results(folder, epochs, trials, spec or trial_spec, run or {})
