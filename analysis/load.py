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
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.contract import (
    EPOCHS_FILE,
    FINAL_METRICS,
    IDENTITY_COLUMNS,
    META_FORMAT,
    META_RUN,
    META_STUDY,
    OUTCOME_COLUMNS,
    REQUIRED_EPOCH_COLUMNS,
    REQUIRED_TRIAL_COLUMNS,
    RESULTS_FORMAT,
    TRIALS_FILE,
)
from common.errors import UserError
from common.storage import filesystem_of, is_uri, join
from trainables.keys import NOT_FACTORS as CONFIG_NOT_FACTORS

# Columns that identify or measure a run, and config keys that are not part of a design (the seed,
# and mechanics: how much data a smoke run used, what was logged, how it was computed, the
# roles of trainables.keys); every other column of trials.parquet is config a study may vary.
NOT_FACTORS = {*IDENTITY_COLUMNS, "status", "error", *OUTCOME_COLUMNS, *FINAL_METRICS, *CONFIG_NOT_FACTORS}


class ResultsError(UserError):
    """Results that cannot be analysed: missing, corrupt, or lacking contract columns."""


@dataclass(frozen=True)
class Results:
    folder: Path | str  # a local folder, or the URI of one in an object store
    epochs: pd.DataFrame
    trials: pd.DataFrame
    spec: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # how the study ran (hpstudy.run): flags, seeds-on-demand rounds
    format: int = RESULTS_FORMAT  # the results format they were written in (common.contract.RESULTS_FORMAT)

    @property
    def name(self) -> str:
        if self.spec.get("name"):
            return self.spec["name"]
        return str(self.trials["study"].iloc[0]) if len(self.trials) else str(self.folder).rstrip("/").rsplit("/", 1)[-1]


def _read(location: str, required: list[str]) -> tuple[pd.DataFrame, dict, dict, int]:
    filesystem, path = filesystem_of(location)
    try:
        kind = filesystem.get_file_info(path).type
    except OSError as exc:  # an object store that cannot be reached or refuses us
        raise ResultsError(f"{location} cannot be read ({str(exc).splitlines()[0]}); check the URI and the "
                           "credentials for it") from None
    if kind != pafs.FileType.File:
        raise ResultsError(f"{location} does not exist; give the folder a study wrote (e.g. results/mnist1d_grid)")
    try:
        table = pq.read_table(path, filesystem=filesystem)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        reason = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise ResultsError(f"{location} is not a readable Parquet file ({type(exc).__name__}: {reason}); rerun the "
                           "study or restore the file") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ResultsError(f"{location} lacks required column(s) {', '.join(missing)}; "
                           "it was not written by hpstudy's study export")
    meta = table.schema.metadata or {}
    results_format = format_of(location, meta)
    spec = json.loads(meta[META_STUDY]) if META_STUDY in meta else {}
    run = json.loads(meta[META_RUN]) if META_RUN in meta else {}
    return table.to_pandas(), spec, run, results_format


def format_of(location: str, meta: dict) -> int:
    """The results format of a file (common.contract.RESULTS_FORMAT; absent: 1); a newer one than
    this hpstudy reads is refused."""
    text = meta.get(META_FORMAT, b"1").decode()
    if not text.isdigit():
        raise ResultsError(f"{location} names results format {text!r}, not a number; it was not written by "
                           "hpstudy's study export")
    if int(text) > RESULTS_FORMAT:
        raise ResultsError(f"{location} is in results format {text}, newer than this hpstudy reads (formats 1 to "
                           f"{RESULTS_FORMAT}); upgrade hpstudy (pip install -U, or git pull where it is installed from)")
    return int(text)


def load_results(folder: str | Path) -> Results:
    """A study's results from a local folder or an object store (s3://bucket/results/stl10_grid)."""
    location = str(folder)
    try:
        filesystem, path = filesystem_of(location)
    except Exception as exc:  # pyarrow: an unknown scheme, a bucket URI it cannot parse
        raise ResultsError(f"{folder} cannot be opened ({str(exc).splitlines()[0]}); give a results folder, "
                           "s3://bucket/path or gs://bucket/path") from None
    try:
        is_folder = is_uri(location) or filesystem.get_file_info(path).type == pafs.FileType.Directory
    except OSError:
        is_folder = False
    if not is_folder:
        raise ResultsError(f"{folder} is not a folder; give the study's results folder (e.g. results/mnist1d_grid)")
    epochs, spec, _, epochs_format = _read(join(location, EPOCHS_FILE), REQUIRED_EPOCH_COLUMNS)
    trials, trial_spec, run, results_format = _read(join(location, TRIALS_FILE), REQUIRED_TRIAL_COLUMNS)
    if trials.empty:
        raise ResultsError(f"{join(location, TRIALS_FILE)} holds no trials; run the study (or --resume it) first")
    return Results(Path(location) if not is_uri(location) else location, epochs, trials, spec or trial_spec, run or {},
                   min(epochs_format, results_format))
