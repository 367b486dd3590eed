"""More seeds for a finished study: `--seeds N --resume` trains only the missing (configuration, seed) runs.

A study folder holds its first Tune experiment (the folder itself) and one Tune experiment
per extension, `extension-<k>/` inside it. An extension's trials are exactly the grid points
whose seeds no part of the study has trained yet, so the trials already trained, their
checkpoints and their rows stay as they were. Every configuration ends with at least N seeds
(a seeds-on-demand study may have given some more already).

What --resume may change is the seed count, and only upwards; the grid (axes, levels, fixed
values) is the study's, so a changed grid is refused with the one thing that differs.
"""

from __future__ import annotations

import datetime
import json

import pyarrow.parquet as pq

from common.contract import META_STUDY, TRIALS_FILE, TrialRecord
from common.errors import UserError
from common.storage import filesystem_of, join, plain
from study import export
from study.definition import Study
from study.fusion import fused_trials, trial_seeds
from study.spaces import grid_points

EXTENSION_PREFIX = "extension-"
# what makes one study's grid another's; the seed count is what an extension changes
GRID_KEYS = ("axes", "fixed", "bundles", "search", "space", "metric", "mode")


def part_folders(folder: str, extensions) -> list[str]:
    """The study's Tune experiments in the order they ran: the first, then each extension."""
    return [folder, *(join(folder, e["experiment"]) for e in extensions)]


def study_parts(study: Study, folder: str, extensions) -> list[dict[str, TrialRecord]]:
    """Each part's Tune trials, in the order of part_folders (an extension interrupted before
    Tune saved its state has none yet)."""
    parts = []
    for part in part_folders(folder, extensions):
        try:
            parts.append(export.from_experiment(study, part))
        except ValueError:  # no experiment state in the folder
            if part == folder:
                raise
            parts.append({})
    return parts


def merged(parts: list[dict[str, TrialRecord]]) -> dict[str, TrialRecord]:
    """Every Tune trial of the study (trial ids are unique across Tune experiments)."""
    return {trial_id: trial for part in parts for trial_id, trial in part.items()}


def from_study(study: Study, folder: str, extensions) -> dict[str, TrialRecord]:
    return merged(study_parts(study, folder, extensions))


def saved_spec(folder: str) -> dict | None:
    """The study spec the results were written with (Parquet metadata), or None before any were."""
    filesystem, path = filesystem_of(join(folder, TRIALS_FILE))
    if filesystem.get_file_info(path).type.name != "File":
        return None
    meta = pq.read_schema(path, filesystem=filesystem).metadata or {}
    return json.loads(meta[META_STUDY]) if META_STUDY in meta else None


def _show(value) -> str:
    return "absent" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


def grid_difference(saved: dict, study: Study) -> str | None:
    """What makes `study`'s grid not the saved one's, in a few words, or None."""
    now = plain(study.spec())
    for key in GRID_KEYS:
        if key not in saved:  # results of format 1 written before the spec had this key
            continue
        before, after = saved[key], now.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            what = {"axes": "axis", "fixed": "fixed value", "bundles": "levels of", "space": "searched"}.get(key, key)
            return "; ".join(f"{what} {name}: {_show(before.get(name))} in the study, {_show(after.get(name))} now"
                             for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name))
        return f"{key}: {before} in the study, {after} now"
    return None


def check_same_grid(study: Study, folder: str) -> None:
    """Refuse a --resume whose grid is not the study's (another axis, other levels, other fixed values)."""
    saved = saved_spec(folder)
    difference = None if saved is None else grid_difference(saved, study)
    if difference:
        raise UserError(f"{folder} was trained with another grid ({difference}); --resume continues the "
                        f"study's own grid (more seeds with --seeds N); a changed grid is a new study: give it "
                        f"--name NEW_NAME")


def _key(config: dict, study: Study) -> tuple:
    return tuple(json.dumps(config.get(axis), default=str) for axis in study.axes)


def trained_seeds(study: Study, trials: dict[str, TrialRecord]) -> dict[tuple, set[int]]:
    """Grid point -> the seeds some part of the study trained (finished or errored: failures count)."""
    seeds: dict[tuple, set[int]] = {}
    for trial_id, trial in trials.items():
        for _, config, history in export.runs_of(trial_id, trial):
            if history or trial.get("error"):
                seeds.setdefault(_key(config, study), set()).add(int(config["seed"]))
    return seeds


def missing_trials(study: Study, trained: dict[tuple, set[int]], fuse: int | None = None) -> list[dict]:
    """The trial configs of the grid (at the study's new seed count) that no part trained; with
    `fuse`, those runs fused as the study fuses its grid."""
    missing = [config for config in grid_points(study.fixed, study.axes, study.seeds)
               if config["seed"] not in trained.get(_key(config, study), set())]
    return fused_trials(study, fuse, missing) if fuse and missing else missing


def unfinished(trials: dict[str, TrialRecord]) -> int:
    return sum(not t["finished"] for t in trials.values())


def new_extension(extensions, seeds_before: int, seeds: int, trials: list[dict]) -> dict:
    """The record of one extension, kept in the run file and the Parquet metadata (hpstudy.run)."""
    return {"experiment": f"{EXTENSION_PREFIX}{len(extensions) + 1}", "seeds_before": seeds_before,
            "seeds": seeds, "trials": len(trials),
            "seeds_trained": sorted({seed for c in trials for seed in trial_seeds(c)}),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def extension_runs(extensions, parts: list[dict[str, TrialRecord]]) -> list[dict]:
    """Each extension's record with the run ids it added (what the metadata says of each run);
    `parts` as study_parts read them."""
    return [{**extension, "run_ids": sorted(run_id for trial_id, trial in part.items()
                                            for run_id, _, _ in export.runs_of(trial_id, trial))}
            for extension, part in zip(extensions, parts[1:])]


def extension_trials(study: Study, grown: Study, name: str, folder: str, extensions, fuse: int | None,
                     max_seeds: int | None) -> list[dict]:
    """For `--seeds N --resume` (the study at N seeds: `grown`): the trials that give every
    configuration N seeds. Everything refused here is refused before anything is written."""
    if grown.seeds < study.seeds:
        raise UserError(f"--seeds {grown.seeds} is below the {study.seeds} seeds per configuration study {name} "
                        f"has; a study keeps every run it trained: drop --seeds to resume it, or give more than "
                        f"{study.seeds} to add seeds")
    if study.search != "grid":
        raise UserError("an Optuna search has no seeds to add; run the configurations it found as a grid study")
    trials = from_study(study, folder, extensions)
    not_finished = unfinished(trials)
    if not_finished:
        raise UserError(f"{folder} has {not_finished} trials that did not finish; finish them first "
                        f"with the same command and --resume without --seeds, then add seeds")
    missing = missing_trials(grown, trained_seeds(grown, trials), fuse)
    if not missing:
        gave = f" (seeds on demand gave some up to {max_seeds})" if max_seeds else ""
        raise UserError(f"every configuration of {name} already has {grown.seeds} seeds or more{gave}; "
                        "nothing to train: give a larger --seeds")
    return missing


def has_saved_state(folder: str) -> bool:
    """Whether Tune saved a trial state in `folder` (Tuner.can_restore also says yes to a
    Tuner that was built but stopped before its first trial state)."""
    import pyarrow.fs as pafs

    filesystem, path = filesystem_of(folder)
    return any(info.base_name.startswith("experiment_state-")
               for info in filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True)))


def trials_to_restart(study: Study, folder: str, extensions, fuse: int | None) -> list[dict]:
    """--resume of an extension Tune never saved (its driver stopped as it began): the trials it
    still misses, to start it again; none where the last part can be restored."""
    if not extensions or has_saved_state(part_folders(folder, extensions)[-1]):
        return []
    return missing_trials(study, trained_seeds(study, from_study(study, folder, extensions)), fuse)
