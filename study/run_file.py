"""The run file (hpstudy_run.json): how a study was started, so --resume continues it as it was."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from trainables.errors import UserError

from study import export
from study.storage import join
from study.options import DEFAULT_DATA_ROOT, RESUMED_OPTIONS, RunOptions

RUN_FILE = "hpstudy_run.json"


def run_info(options: RunOptions) -> dict:
    info = {"preset": options.preset, "trainable": options.trainable, "study_file": options.study_file,
            "sets": options.sets, "axis_overrides": options.axis_overrides, "plugins": list(options.plugins),
            "smoke": options.smoke,
            "epochs": options.epochs, "seeds": options.seeds, "data_root": options.data_root,
            "cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial,
            "max_concurrent": options.max_concurrent, "num_samples": options.num_samples,
            "max_failures": options.max_failures, "asha": options.asha, "batch_seeds": options.batch_seeds,
            "fuse": options.fuse,
            "aggregate": options.aggregate, "max_seeds": options.max_seeds, "smallest_effect": options.smallest_effect,
            "checkpoint_every_s": options.checkpoint_every_s, "optuna_storage": options.optuna_storage,
            "log": list(options.log), "extensions": [dict(e) for e in options.extensions]}
    if options.max_seeds:
        # the planned looks, their spending and the rounds so far: the analysis tests the results
        # at the share of alpha their look spends (analysis.testing.look_alpha)
        from study.seeds_on_demand import saved_status

        status = saved_status(options.folder) or {}
        info.update({k: status[k] for k in ("looks", "spending", "fractions", "rounds") if k in status})
    return info


def load_run_file(options: RunOptions) -> dict:
    saved = export.read_json(join(options.folder, RUN_FILE))
    if saved is None:
        raise UserError(f"{options.folder} has no {RUN_FILE}: not an hpstudy study folder; check --storage and --name")
    if saved["preset"] != options.preset or saved.get("trainable") != options.trainable:
        how = (f"python -m study.{saved['preset']}" if saved["preset"] else
               f"python -m study {saved.get('study_file') or 'FILE.toml'}")
        raise UserError(f"{options.folder} holds a study started with {how}; resume it with that command and --resume")
    return saved


# Flags that shape the grid: given again on --resume they take part in the study's spec,
# which study.extend.check_same_grid compares with the study's own (naming what differs)
GRID_OPTIONS = ("smoke", "epochs", "sets", "axis_overrides", "batch_seeds", "aggregate")


def _flag(key: str) -> str:
    return "--" + {"axis_overrides": "axis", "sets": "set"}.get(key, key).replace("_", "-")


def resumed_options(options: RunOptions, saved: dict) -> tuple[RunOptions, int | None]:
    """The options a --resume runs with, and the seed count it asks for (None: the study's).

    The study's own flags come from its run file. A flag given again keeps its value where it
    shapes the grid (the grid check then names any difference) and must equal the study's
    otherwise; none is silently ignored."""
    changes = {}
    for key, default in RESUMED_OPTIONS.items():
        was, given = saved.get(key, default), getattr(options, key)
        if key in ("seeds", "extensions"):
            changes[key] = tuple(was) if key == "extensions" else was
        elif key == "plugins":
            changes[key] = tuple(dict.fromkeys([*was, *given]))  # more plugins only import more modules
        elif export.plain(given) == export.plain(default) or export.plain(given) == export.plain(was):
            changes[key] = was
        elif key in GRID_OPTIONS:
            changes[key] = given
        else:
            had = "has none" if was is None else f"has {was}"
            raise UserError(f"{_flag(key)} {given} differs from the study's own (it {had}); --resume continues a "
                            f"study as it was started: drop {_flag(key)} (more seeds: --seeds N)")
    if options.data_root == str(Path(DEFAULT_DATA_ROOT).resolve()) and saved.get("data_root"):
        changes["data_root"] = saved["data_root"]  # the study's data, unless --data-root says otherwise
    return replace(options, **changes), options.seeds


def write_run_file(options: RunOptions) -> None:
    export.write_json(join(options.folder, RUN_FILE), run_info(options))
