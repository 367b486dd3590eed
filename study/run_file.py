"""The run file (hpstudy_run.json): how a study was started, so --resume continues it as it was."""

from __future__ import annotations

from trainables.errors import UserError

from study import export
from study.storage import join
from study.options import RunOptions

RUN_FILE = "hpstudy_run.json"


def run_info(options: RunOptions) -> dict:
    info = {"preset": options.preset, "trainable": options.trainable, "study_file": options.study_file,
            "sets": options.sets, "axis_overrides": options.axis_overrides, "plugins": list(options.plugins),
            "smoke": options.smoke,
            "epochs": options.epochs, "seeds": options.seeds, "data_root": options.data_root,
            "cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial,
            "max_concurrent": options.max_concurrent, "num_samples": options.num_samples,
            "max_failures": options.max_failures, "asha": options.asha, "batch_seeds": options.batch_seeds,
            "aggregate": options.aggregate, "max_seeds": options.max_seeds, "smallest_effect": options.smallest_effect,
            "checkpoint_every_s": options.checkpoint_every_s, "optuna_storage": options.optuna_storage,
            "log": list(options.log)}
    if options.max_seeds:
        # the planned looks and the rounds so far: the analysis tests each look at alpha / looks
        from study.seeds_on_demand import saved_status

        status = saved_status(options.folder) or {}
        info.update({k: status[k] for k in ("looks", "rounds") if k in status})
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


def write_run_file(options: RunOptions) -> None:
    export.write_json(join(options.folder, RUN_FILE), run_info(options))
