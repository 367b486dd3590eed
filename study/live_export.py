"""The live export: a Tune callback that keeps epochs.parquet / trials.parquet fresh while a study runs."""

from __future__ import annotations

import time

from pyarrow.fs import FileSelector, FileType
from ray import tune

from common.contract import TrialRecord, new_record
from study import export
from study.extend import from_study
from study.plan import Plan
from study.rounds import latest_state_file, saved_status
from study.run_file import run_record

FLUSH_EVERY_S = 5.0  # how often finished trials refresh the Parquet files during a study


class ParquetExporter(tune.Callback):
    """Rewrites the Parquet files whenever a trial finishes or errors.

    Tune pickles it with the experiment and `Tuner.restore` brings that copy back, so
    what a resumed study already holds is read in `setup`, which runs in either case.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.trials: dict[str, TrialRecord] = {}
        self.last_flush = float("-inf")
        self.rounds_seen = (None, None)  # the searcher state file last read, and its status

    def setup(self, **info):
        self.last_flush = float("-inf")
        try:  # a restored study: start from what it already holds
            self.trials = from_study(self.plan.study, self.plan.folder, self.plan.extensions)
        except ValueError:  # a new one: Tune has saved no experiment state yet
            self.trials = {}

    def _record(self, trial, result=None, error=None, finished=False):
        record = self.trials.setdefault(trial.trial_id, new_record(trial.config))
        if result is not None:
            record["history"].append(result)
        if error is not None:
            record["error"] = error
        record["finished"] = record["finished"] or finished

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._record(trial, result=result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, finished=True)
        prune_checkpoints(trial)
        self.flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, error=export.error_line(getattr(trial, "error_message", None) or "", "trial failed"),
                     finished=True)
        self.flush()

    def flush(self):
        # At most every FLUSH_EVERY_S: on 2 cores the driver shares the CPU with the
        # trials; the final export after tuner.fit() is always written in full.
        if time.monotonic() - self.last_flush < FLUSH_EVERY_S:
            return
        epochs, trial_rows = export.collect(self.plan.study, self.trials)
        export.write_results(self.plan.folder, self.plan.study, epochs, trial_rows,
                             run_record(self.plan, self.rounds_status()))
        self.last_flush = time.monotonic()

    def rounds_status(self) -> dict | None:
        """A seeds-on-demand study's rounds for the metadata, read again only when the searcher
        has saved a new state (Tune saves it every few seconds; a round takes far longer)."""
        if not self.plan.options.max_seeds:
            return None
        state_file = latest_state_file(self.plan.folder)
        key = None if state_file is None else (state_file.path, state_file.mtime_ns, state_file.size)
        if key != self.rounds_seen[0]:
            self.rounds_seen = (key, saved_status(self.plan.folder, state_file) if state_file else {})
        return self.rounds_seen[1]


def prune_checkpoints(trial) -> None:
    """Delete all but the last checkpoint of a finished trial.

    Tune's own `num_to_keep` deletes old checkpoints while a trial runs, before its
    experiment state (which names the checkpoint to restore) is saved: a driver
    killed in between leaves a study whose --resume fails ("checkpoint does not exist
    on storage anymore"; seen in this project's SIGKILL test). A finished trial is
    never restored, so pruning it is safe.
    """
    storage = trial.storage
    filesystem, folder = storage.storage_filesystem, storage.trial_fs_path
    checkpoints = sorted(info.path for info in filesystem.get_file_info(FileSelector(folder, allow_not_found=True))
                         if info.type == FileType.Directory and info.base_name.startswith("checkpoint_"))
    for path in checkpoints[:-1]:
        filesystem.delete_dir(path)
