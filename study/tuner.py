"""The Tuner for a study: what each trial runs, resources, storage, checkpoints, and the search
(a grid, seeds on demand, or Optuna) the study asks for."""

from __future__ import annotations

import contextlib
import io
import os

from ray import tune
from ray.tune.logger import JsonLoggerCallback

from common.errors import UserError
from study.checks import open_optuna_storage
from study.definition import Study
from study.fusion import fused_trials, fusible_axes, members_of, optuna_members
from study.options import DEFAULT_OPTUNA_SAMPLES, RunOptions
from study.plan import Plan
from study.progress import ProgressBar
from study.spaces import grid_points, grid_space, search_space
from trainables.registry import TRAINABLES, resolve_config


def run_trial(config: dict, study: Study, splits_by_dataset: dict, data_root: str,
              checkpoint_every_s: float | None = None, plugin_sources: list | None = None,
              histograms: bool = False) -> None:
    """What each Ray trial runs: import the study's plugins, expand its level labels, then train."""
    from trainables.plugins import import_sources
    from trainables.tune_adapter import CHECKPOINT_EVERY_S, train

    import_sources(plugin_sources or [])

    members = members_of(config)
    trial_config = study.expand({**config, "members": members} if members is not None else config)
    dataset = TRAINABLES[trial_config["trainable"]].dataset
    train(trial_config, data_root=data_root, splits=splits_by_dataset[dataset],
          checkpoint_every_s=CHECKPOINT_EVERY_S if checkpoint_every_s is None else checkpoint_every_s,
          histograms=histograms)


def trial_dirname(trial) -> str:
    # The folder is the trial id, so exported rows and Ray's folders match one to one.
    return trial.trial_id


def listed_space(trials: list[dict]) -> dict:
    """param_space for trials listed as points_to_evaluate. Tune assigns each point over the
    space's keys (every point has the same keys) and warns, one line per key and point, where a
    point's value is not the space's: so a key is fixed where every point agrees and a
    tune.choice of the points' values where they differ (no values are drawn from it: num_samples
    is the number of points)."""
    space = {}
    for key in trials[0]:
        values = []
        for trial in trials:
            if trial[key] not in values:  # lists (hidden sizes) are not hashable
                values.append(trial[key])
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    return space


def seeds_on_demand(study: Study, options: RunOptions):
    """The Searcher for --max-seeds: rounds of seeds where comparisons are open."""
    from study.seeds_on_demand import SeedsOnDemand

    points = [{k: v for k, v in p.items() if k != "seed"} for p in grid_points({}, study.axes, 1)]
    return SeedsOnDemand(study.spec(), points, dict(study.fixed), first=study.seeds,
                         most=max(options.max_seeds, study.seeds),
                         smallest_effect=options.smallest_effect, alpha=0.05, name=options.name, fuse=options.fuse,
                         fusible=fusible_axes(study) if options.fuse else [])


def logger_callbacks(names, study_name: str) -> dict:
    """--log: Ray Tune's own logger callbacks, by name (each checked to be installed by
    study.checks.check_loggers). Their usual environment variables configure them; the MLflow
    experiment and the W&B project default to the study's name. All three come from
    ray.tune.logger, where Ray 2.41 to 2.60 all have them."""
    callbacks = {}
    for name in names:
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks[name] = TBXLoggerCallback()
        elif name == "mlflow":  # MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME / _ID
            from ray.tune.logger.mlflow import MLflowLoggerCallback

            callbacks[name] = MLflowLoggerCallback(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME") or study_name)
        elif name == "wandb":  # WANDB_API_KEY or WANDB_MODE=offline; WANDB_PROJECT (Ray's own: WANDB_PROJECT_NAME)
            from ray.tune.logger.wandb import WandbLoggerCallback

            project = os.environ.get("WANDB_PROJECT") or os.environ.get("WANDB_PROJECT_NAME") or study_name
            callbacks[name] = WandbLoggerCallback(project=project)
    return callbacks


LOGGER_FIXES = {
    "mlflow": "set MLFLOW_TRACKING_URI to a store MLflow accepts (sqlite:///mlflow.db, or a tracking server's URL)",
    "wandb": "set WANDB_API_KEY (or run `wandb login`), or WANDB_MODE=offline",
}


def start_loggers(callbacks: dict) -> list:
    """Run each logger's setup, the first call Tune makes on it, before Ray starts: a tracking
    store that cannot be used (no credentials, a store MLflow refuses) is one line, before any
    study folder exists, instead of a traceback from inside Tuner.fit."""
    for name, callback in callbacks.items():
        if name not in LOGGER_FIXES:
            continue
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # the trackers' own warnings would make it more lines
                callback.setup()
        except Exception as exc:  # each tracker raises its own kinds
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--log {name} cannot start: {message}; {LOGGER_FIXES[name]} (or drop --log {name})") \
                from None
    return list(callbacks.values())


def trial_count(plan: Plan) -> int | None:
    """The trials this run will run, for the progress bar (seeds on demand decides as it goes)."""
    study, options = plan.study, plan.options
    if plan.mode == "extend":
        return len(plan.trials)
    if plan.mode == "resume" and plan.extensions:  # the last part is the latest extension
        return plan.extensions[-1]["trials"]
    if options.max_seeds:
        return None
    if study.search == "optuna":
        return optuna_samples(options)
    if options.fuse:
        return len(fused_trials(study, options.fuse))
    return len(grid_points(study.fixed, study.axes, study.seeds))


def optuna_samples(options: RunOptions) -> int:
    return 2 if options.smoke and options.num_samples is None else (options.num_samples or DEFAULT_OPTUNA_SAMPLES)


def build_tuner(plan: Plan, splits_by_dataset: dict, exporter, gpus_per_trial: float,
                plugin_sources: list | None = None, reuse_actors: bool = True, loggers: list = ()):
    """The Tuner of this run, by its plan: a new study (a grid, fused trials, seeds on demand or
    an Optuna search), --resume of its last part (the first Tune experiment or its latest
    extension), or an extension: a new Tune experiment inside the study folder that trains the
    plan's trials (study.extend)."""
    study, options = plan.study, plan.options
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, study=study, splits_by_dataset=splits_by_dataset, data_root=options.data_root,
                             checkpoint_every_s=options.checkpoint_every_s, plugin_sources=plugin_sources,
                             histograms="tensorboard" in options.log),  # the first and last layer's, each epoch
        {"cpu": options.cpus_per_trial, "gpu": gpus_per_trial},
    )
    if plan.mode == "resume":
        return tune.Tuner.restore(plan.parts[-1], trainable, resume_unfinished=True, resume_errored=False)
    run_config = tune.RunConfig(
        name=plan.experiment,
        storage_path=plan.folder if plan.mode == "extend" else options.storage,
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        # Every checkpoint stays while its trial runs (see prune_checkpoints for why),
        # so --resume always finds the one Tune's saved state names.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        # --log tensorboard: each trial's histograms (trainables.tune_adapter.Histograms) reach the
        # study folder with its checkpoints, from whatever node ran it
        sync_config=tune.SyncConfig(sync_artifacts="tensorboard" in options.log),
        # result.json is what ExperimentAnalysis (and so our export) reads; the CSV and
        # TensorBoard loggers Tune adds by default would only cost time per result.
        callbacks=[exporter, JsonLoggerCallback(), *loggers,
                   *([] if options.verbose else [ProgressBar(options.name, trial_count(plan), study.metric,
                                                             study.mode)])],
        verbose=1 if options.verbose else 0,
    )
    # what the TuneConfig of every new part has, whatever its search
    tuning = dict(metric=study.metric, mode=study.mode, reuse_actors=reuse_actors, trial_dirname_creator=trial_dirname)
    if plan.mode == "extend":
        param_space, tune_config = listed(list(plan.trials), options, tuning)
    elif study.search == "optuna":
        param_space, tune_config = optuna_search(study, options, tuning)
    elif options.max_seeds:
        param_space = {}  # the searcher suggests whole configs
        tune_config = tune.TuneConfig(search_alg=seeds_on_demand(study, options), num_samples=-1,
                                      max_concurrent_trials=options.max_concurrent, **tuning)
    elif options.fuse:
        param_space, tune_config = listed(fused_trials(study, options.fuse), options, tuning)
    else:
        param_space = grid_space(study.fixed, study.axes, study.seeds)
        tune_config = tune.TuneConfig(max_concurrent_trials=options.max_concurrent, **tuning)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def listed(trials: list[dict], options: RunOptions, tuning: dict):
    """Trials as listed, each exactly as given: an extension's missing grid points (each one trial as
    the grid would have made it, or fused as the study fuses), or a new study's fused trials."""
    from ray.tune.search import BasicVariantGenerator

    return listed_space(trials), tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=trials),
                                                 num_samples=len(trials), max_concurrent_trials=options.max_concurrent,
                                                 **tuning)


def optuna_search(study: Study, options: RunOptions, tuning: dict):
    """An Optuna search over the study's space (with --fuse K, seeds 0..K-1 of each sampled config as
    the members of its trial), optionally with ASHA."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    epochs = resolve_config({**study.fixed})["epochs"]
    storage = open_optuna_storage(options.optuna_storage) if options.optuna_storage else None
    searcher = OptunaSearch(seed=0, storage=storage, study_name=options.name if storage else None)
    search = ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent or 2)
    scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1) if options.asha else None
    param_space = {**study.fixed, **search_space(study.space), "seed": 0,
                   **({"members": optuna_members(options.fuse)} if options.fuse else {})}
    return param_space, tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=optuna_samples(options),
                                        **tuning)


@contextlib.contextmanager
def tune_environment(verbose: bool = False):
    """Tune settings read from the environment, set only while our Tuner runs
    (a program that embeds hpstudy keeps its own Tune defaults)."""
    settings = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # see build_tuner's callbacks
    if not verbose:
        # Tune's newer console output prints its start and end boxes even at verbose=0; the
        # older one is silent there, and the progress bar (study.progress) says what matters
        settings["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
