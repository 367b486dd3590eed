"""Synthetic studies with planted answers, written through the real export (study.export) so
the analysis reads exactly the Parquet contract a study writes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from study.definition import Study
from study.definition import make_study as _study
from study.export import identity, trial_row, write_results


def make_study(name: str, fixed: dict, axes: dict, seeds: int, bundles: dict | None = None) -> Study:
    return _study(name, f"synthetic {name}", fixed=fixed, axes=axes, seeds=seeds, smoke_axes={}, bundles=bundles)


def write_synthetic(folder: Path, study: Study, mean, sd=0.003, seed_sd: float = 0.0, rng_seed=0,
                    status=None, chance: float = 0.1, values=None) -> Path:
    """One run per grid point x seed. `mean(point)` is the planted accuracy of a configuration
    (point: the axis levels), each seed adds a shared offset (seed_sd: what pairing removes) and
    its own noise (sd, or sd(point): a configuration's own spread). `status(point, seed)` may
    return 'diverged', 'error' or 'unfinished'. `rng_seed` may be a numpy Generator, to go on
    drawing from it. `values(point, seed)`, where given, is each run's accuracy instead (a study
    whose first seeds stay what they were when it is written again with more)."""
    rng = rng_seed if isinstance(rng_seed, np.random.Generator) else np.random.default_rng(rng_seed)
    spread = sd if callable(sd) else (lambda point: sd)
    seed_offsets = rng.normal(0.0, seed_sd, study.seeds)
    epochs, trials = [], []
    keys = list(study.axes)
    for combo in itertools.product(*study.axes.values()):
        point = dict(zip(keys, combo))
        for seed in range(study.seeds):
            trial_id = f"t{len(trials):05d}"
            base = identity(study, trial_id, {**study.fixed, **point, "seed": seed})
            state = status(point, seed) if status else "completed"
            value = float(values(point, seed) if values else mean(point) + seed_offsets[seed] + rng.normal(0.0, spread(point)))
            if state == "diverged":
                value = chance
            epoch = {"epoch": 1, "train_loss": 1.0, "train_acc": value, "val_loss": 1.0, "val_acc": value,
                     "epoch_time_s": 0.1, "diverged": state == "diverged"}
            rows = [{**base, **epoch}]
            final = {"test_acc": value, "test_loss": 1.0, "chance_acc": chance} if state != "error" else {}
            row = trial_row(base, rows if state != "error" else [], final, "RuntimeError: boom" if state == "error" else None,
                            finished=state != "unfinished")
            epochs += rows if state != "error" else []
            trials.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    write_results(str(folder), study, epochs, trials)
    return folder
