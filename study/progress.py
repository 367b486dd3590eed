"""The compact live status of a running study: one tqdm bar over its trials.

Trials done of the total (a grid's points, an Optuna search's samples; unknown for seeds on
demand, which decides as it goes), running and pending, the best value of the study's metric
so far, elapsed and remaining time (tqdm's estimate). It replaces Tune's box per trial start;
`--verbose` brings Tune's own table back instead.
"""

from __future__ import annotations

import sys
import time

from ray import tune
from tqdm.auto import tqdm

REFRESH_S = 1.0  # at most this often from Tune's loop; on a terminal, completions always show
FILE_REFRESH_S = 30.0  # where output goes to a file, a status at most this often (and the last one)


class ProgressBar(tune.Callback):
    def __init__(self, name: str, total: int | None, metric: str, mode: str):
        self.name, self.total, self.metric, self.mode = name, total, metric, mode
        self.bar = None
        self.interactive = False
        self.best: float | None = None
        self.last_refresh = 0.0

    def __getstate__(self):  # Tune saves callbacks with the experiment; a bar is not data
        return {**self.__dict__, "bar": None}

    def setup(self, **info):
        # a line per refresh where output is a file (a log, `ray job logs`), in place on a terminal
        self.interactive = sys.stdout.isatty()
        self.bar = tqdm(total=self.total, desc=self.name, unit="trial", file=sys.stdout, dynamic_ncols=self.interactive,
                        mininterval=REFRESH_S if self.interactive else FILE_REFRESH_S, leave=True)

    def _refresh(self, trials, force: bool = False) -> None:
        if self.bar is None or (not force and time.monotonic() - self.last_refresh < REFRESH_S):
            return
        states = [t.status for t in trials]
        done = sum(s in ("TERMINATED", "ERROR") for s in states)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        status = {"running": states.count("RUNNING"), "pending": states.count("PENDING")}
        if self.best is not None:
            status[f"best {self.metric}"] = f"{self.best:.4g}"
        self.bar.set_postfix(status, refresh=force and self.interactive)
        self.last_refresh = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and value == value:
            if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
                self.best = float(value)

    def on_step_end(self, iteration, trials, **info):
        self._refresh(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._refresh(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._refresh(trials, force=True)

    def on_experiment_end(self, trials, **info):
        self._refresh(trials, force=True)
        self.bar.close()
        self.bar = None
