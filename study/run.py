"""Run a study on Ray Tune: `python -m study.<preset> [flags]`.

Builds the Tuner (grid or Optuna search, resources, storage, failure and
resume handling), runs it, keeps `epochs.parquet` / `trials.parquet` fresh as
trials finish, and ends with a one-line summary. Bad input of any kind is one
line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from trainables.cli import OneLineParser, report_user_error
from trainables.errors import UserError
from trainables.registry import AGGREGATES, TRAINABLES, resolve_config

from study import export
from study.presets import OPTUNA_PRESET, SMOKE_DATA, SMOKE_EPOCHS, STUDIES, Study, optuna_study
from study.spaces import grid_points, grid_space, optuna_space

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C: results are partial, `--resume` continues
RUN_FILE = "hpstudy_run.json"  # how the study was started, for --resume
DEFAULT_STORAGE = "results"
DEFAULT_OPTUNA_SAMPLES = 20
FLUSH_EVERY_S = 5.0  # how often finished trials refresh the Parquet files during a study
# What --resume takes from the run file rather than the command line, and the value a run
# file written before that option existed implies.
RESUMED_OPTIONS = {"smoke": False, "epochs": None, "seeds": None, "num_samples": None, "asha": False,
                   "batch_seeds": None, "aggregate": "mean", "max_seeds": None, "smallest_effect": 0.01}


@dataclass(frozen=True)
class RunOptions:
    preset: str
    trainable: str | None  # Optuna preset only
    epochs: int | None
    seeds: int | None
    smoke: bool
    storage: str
    name: str
    address: str | None
    resume: bool
    data_root: str
    download: bool
    cpus_per_trial: float
    gpus_per_trial: float | None
    max_concurrent: int | None
    num_samples: int | None
    max_failures: int
    asha: bool
    batch_seeds: int | None = None  # seeds trained together in one trial (trainables.engines.StackedModel)
    aggregate: str = "mean"  # how a batched trial's seeds combine into the metric Tune optimises
    max_seeds: int | None = None  # seeds on demand: up to this many seeds where a comparison is open
    smallest_effect: float = 0.01  # seeds on demand: the smallest difference that matters

    @property
    def folder(self) -> str:
        return export.join(self.storage, self.name)


# --- command line ------------------------------------------------------------------

def _int_at_least(minimum: int):
    """argparse type: an integer >= minimum, with the one-line message the CLI contract wants."""
    import argparse

    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _resource(allow_zero: bool):
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number such as 1 or 0.25, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value

    return parse


def parse_args(preset: str, argv: list[str] | None) -> RunOptions:
    is_optuna = preset == OPTUNA_PRESET
    parser = OneLineParser(prog=f"python -m study.{preset}",
                           description=(STUDIES[preset].description if not is_optuna
                                        else "Optuna search (OptunaSearch under a ConcurrencyLimiter) for one trainable."))
    if is_optuna:
        parser.add_argument("trainable", choices=list(TRAINABLES), metavar="TRAINABLE",
                            help=f"one of: {', '.join(TRAINABLES)}")
    parser.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the preset's)")
    parser.add_argument("--seeds", type=_positive_int, help="seeds per configuration, 0..K-1 (default: the preset's)")
    parser.add_argument("--smoke", action="store_true", help=f"a handful of trials, {SMOKE_EPOCHS} epochs, small data")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="results folder or URI (s3://, gs://); default ./results")
    parser.add_argument("--name", help="study folder name under --storage (default: the preset name)")
    parser.add_argument("--address", help="Ray cluster to join (auto on a `ray up` head node); default: start a local Ray")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted study in --storage/--name")
    parser.add_argument("--data-root", default="data", help="dataset folder (default ./data)")
    parser.add_argument("--download", action="store_true", help="download missing torchvision datasets")
    parser.add_argument("--cpus-per-trial", type=_resource(allow_zero=False), default=1.0)
    parser.add_argument("--gpus-per-trial", type=_resource(allow_zero=True), default=None,
                        help="GPUs per trial, fractions pack trials (0.25: four per GPU); default 1 if the cluster has GPUs, else 0")
    parser.add_argument("--max-concurrent", type=_positive_int, help="trials running at once (default: as resources allow)")
    parser.add_argument("--num-samples", type=_positive_int,
                        help=f"Optuna trials (default {DEFAULT_OPTUNA_SAMPLES}); grid presets run each grid point once")
    parser.add_argument("--max-failures", type=_non_negative_int, default=3, help="retries of a failed trial from its checkpoint")
    parser.add_argument("--batch-seeds", type=_positive_int, metavar="K",
                        help="train K seeds of each configuration as one batched trial (seeds rounded up to a "
                             "multiple of K); each seed still gets its own rows in the results")
    parser.add_argument("--aggregate", choices=list(AGGREGATES), default=None,
                        help="with --batch-seeds: the metric Tune optimises is this over the K seeds (default mean)")
    parser.add_argument("--max-seeds", type=_positive_int, metavar="M",
                        help="seeds on demand: every configuration gets --seeds N first, then more in rounds only "
                             "where a comparison is still inconclusive, up to M")
    parser.add_argument("--smallest-effect", type=_resource(allow_zero=True), default=None,
                        help="with --max-seeds: the smallest difference in test accuracy that matters (default 0.01)")
    if is_optuna:
        parser.add_argument("--asha", action="store_true", help="stop poor trials early with ASHA")
    args = parser.parse_args(argv)

    if not is_optuna and args.num_samples is not None:
        parser.error("--num-samples is for Optuna searches; a grid runs every point once, use --seeds K for repeats")
    if is_optuna and args.seeds not in (None, 1):
        parser.error("an Optuna search trains seed 0 per sampled config (or seeds 0..K-1 with --batch-seeds K); "
                     "drop --seeds")
    if args.max_seeds is not None and is_optuna:
        parser.error("--max-seeds adds seeds to a grid's open comparisons; an Optuna search has none, drop it")
    if args.max_seeds is not None:
        first = args.seeds or (1 if args.smoke else STUDIES[preset].seeds)
        if args.max_seeds < first:
            parser.error(f"--max-seeds {args.max_seeds} is below the {first} seeds every configuration starts "
                         f"with (--seeds); e.g. --seeds {first} --max-seeds {4 * first}")
    if args.smallest_effect is not None and args.max_seeds is None:
        parser.error("--smallest-effect decides when seeds on demand stop; add --max-seeds M "
                     "(the report takes its own --smallest-effect)")
    if args.aggregate is not None and args.batch_seeds is None:
        parser.error("--aggregate combines the seeds of a batched trial; add --batch-seeds K")
    trainable = getattr(args, "trainable", None)
    name = args.name or (f"optuna_{trainable}" if is_optuna else preset)
    if "/" in name or name in (".", ".."):
        parser.error(f"--name must be a plain folder name, got {name!r}")
    storage = args.storage if "://" in args.storage else str(Path(args.storage).expanduser().resolve())
    return RunOptions(
        preset=preset, trainable=trainable, epochs=args.epochs, seeds=args.seeds, smoke=args.smoke,
        storage=storage, name=name, address=args.address, resume=args.resume,
        data_root=str(Path(args.data_root).expanduser().resolve()), download=args.download,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
        num_samples=args.num_samples, max_failures=args.max_failures, asha=getattr(args, "asha", False),
        batch_seeds=args.batch_seeds, aggregate=args.aggregate or "mean", max_seeds=args.max_seeds,
        smallest_effect=0.01 if args.smallest_effect is None else args.smallest_effect,
    )


# --- the study as run ------------------------------------------------------------------

def effective_study(options: RunOptions) -> Study:
    """The preset with this run's --epochs / --seeds / --smoke / --batch-seeds applied."""
    study = optuna_study(options.trainable) if options.preset == OPTUNA_PRESET else STUDIES[options.preset]
    fixed = dict(study.fixed)
    axes = dict(study.axes)
    seeds = options.seeds or study.seeds
    if options.smoke:
        axes, seeds = dict(study.smoke_axes), options.seeds or 1  # one seed unless --seeds asks for more
        fixed.update(SMOKE_DATA, epochs=SMOKE_EPOCHS)
    if options.epochs:
        fixed["epochs"] = options.epochs
    if options.batch_seeds:
        # K seeds per trial: the grid's seed axis steps by K (spaces.seed_axis), so the seed
        # count is rounded up to whole trials; an Optuna trial trains seeds 0..K-1
        fixed.update(replicates=options.batch_seeds, aggregate=options.aggregate)
        seeds = -(-seeds // options.batch_seeds) * options.batch_seeds
    return replace(study, name=options.name, fixed=fixed, axes=axes, seeds=seeds)


def validate_study(study: Study, options: RunOptions) -> None:
    """Resolve every config the study will run, so a bad one stops us before Ray starts."""
    if options.preset == OPTUNA_PRESET:
        sample = {"lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.1, "activation": "relu", "batchnorm": True}
        resolve_config(study.expand({**study.fixed, **sample, "seed": 0}))
        return
    for config in grid_points(study.fixed, study.axes, study.seeds):
        resolve_config(study.expand(config))


def run_trial(config: dict, study: Study, splits_by_dataset: dict, data_root: str) -> None:
    """What each Ray trial runs: expand the study's level labels, then train."""
    from trainables.tune_adapter import train

    trial_config = study.expand(config)
    dataset = TRAINABLES[trial_config["trainable"]].dataset
    train(trial_config, data_root=data_root, splits=splits_by_dataset[dataset])


def trial_dirname(trial) -> str:
    # The folder is the trial id, so exported rows and Ray's folders match one to one.
    return trial.trial_id


# --- checks that must pass before anything is written ----------------------------------

def check_address(address: str | None) -> None:
    """Fail fast on an unreachable cluster (ray.init would wait for minutes)."""
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not HOST:PORT or auto; e.g. --address 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                        "`ray start --head` or `ray up cluster.yaml`, or drop --address to run locally") from None


def check_storage(options: RunOptions) -> None:
    if "://" in options.storage:
        # object stores: Ray and pyarrow report access errors on the first write
        from ray import tune

        has_results = tune.Tuner.can_restore(options.folder)
    else:
        folder = Path(options.folder)
        has_results = folder.exists() and any(folder.iterdir())  # anything there: never overwrite it
        if not has_results:
            probe_storage(folder, options.storage)
    if options.resume and not has_results:
        raise UserError(f"nothing to resume at {options.folder}; run without --resume to start the study")
    if not options.resume and has_results:
        raise UserError(f"results already exist at {options.folder}; pass --resume to continue them, "
                        "or --name NEW (or another --storage) to start a new study")


def probe_storage(folder: Path, storage: str) -> None:
    """Create the study folder and a file in it, then remove what the probe made: permission
    bits can call a place writable where nothing can be created (/proc, a read-only mount)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--storage {storage} is not writable ({existing} is not a folder); choose a writable folder")
    created = []
    try:
        for path in [*reversed(folder.parents), folder]:
            if not path.exists():
                path.mkdir()
                created.append(path)
        (folder / ".hpstudy-probe").write_bytes(b"")
        (folder / ".hpstudy-probe").unlink()
    except OSError as exc:
        raise UserError(f"--storage {storage} is not writable (cannot create {folder}: {exc.strerror or exc}); "
                        "choose a writable folder") from None
    finally:
        for path in reversed(created):
            path.rmdir()


def load_run_file(options: RunOptions) -> dict:
    saved = export.read_json(export.join(options.folder, RUN_FILE))
    if saved is None:
        raise UserError(f"{options.folder} has no {RUN_FILE}: not an hpstudy study folder; check --storage and --name")
    if saved["preset"] != options.preset or saved.get("trainable") != options.trainable:
        raise UserError(f"{options.folder} holds a {saved['preset']} study; resume it with python -m study.{saved['preset']}")
    return saved


def check_data(study: Study, options: RunOptions):
    """Load each dataset once in the driver; Ray's object store ships it to every node."""
    from trainables import data

    return {name: data.load(name, options.data_root, download=options.download).shareable() for name in study.datasets()}


# --- live export -------------------------------------------------------------------------

def make_exporter(study: Study, options: RunOptions):
    """A Tune callback that rewrites the Parquet files whenever a trial finishes or errors.

    Tune pickles it with the experiment and `Tuner.restore` brings that copy back, so
    what a resumed study already holds is read in `setup`, which runs in either case.
    """
    from ray import tune

    class ParquetExporter(tune.Callback):
        def __init__(self):
            self.trials: dict[str, dict] = {}
            self.last_flush = float("-inf")

        def setup(self, **info):
            self.last_flush = float("-inf")
            try:  # a restored study: start from what it already holds
                self.trials = export.from_experiment(study, options.folder)
            except ValueError:  # a new one: Tune has saved no experiment state yet
                self.trials = {}

        def _record(self, trial, result=None, error=None, finished=False):
            record = self.trials.setdefault(
                trial.trial_id, {"config": trial.config, "history": [], "error": None, "finished": False})
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
            epochs, trial_rows = export.collect(study, self.trials)
            export.write_results(options.folder, study, epochs, trial_rows, run_info(options))
            self.last_flush = time.monotonic()

    return ParquetExporter()


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
    from pyarrow.fs import FileSelector, FileType

    checkpoints = sorted(info.path for info in filesystem.get_file_info(FileSelector(folder, allow_not_found=True))
                         if info.type == FileType.Directory and info.base_name.startswith("checkpoint_"))
    for path in checkpoints[:-1]:
        filesystem.delete_dir(path)


def run_info(options: RunOptions) -> dict:
    info = {"preset": options.preset, "trainable": options.trainable, "smoke": options.smoke,
            "epochs": options.epochs, "seeds": options.seeds, "data_root": options.data_root,
            "cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial,
            "max_concurrent": options.max_concurrent, "num_samples": options.num_samples,
            "max_failures": options.max_failures, "asha": options.asha, "batch_seeds": options.batch_seeds,
            "aggregate": options.aggregate, "max_seeds": options.max_seeds, "smallest_effect": options.smallest_effect}
    if options.max_seeds:
        # the planned looks and the rounds so far: the analysis tests each look at alpha / looks
        from study.seeds_on_demand import saved_status

        status = saved_status(options.folder) or {}
        info.update({k: status[k] for k in ("looks", "rounds") if k in status})
    return info


def seeds_on_demand(study: Study, options: RunOptions):
    """The Searcher for --max-seeds: rounds of seeds where comparisons are open."""
    from study.seeds_on_demand import SeedsOnDemand

    batch = study.fixed.get("replicates", 1)
    most = -(-options.max_seeds // batch) * batch  # whole batched trials, as --seeds
    points = [{k: v for k, v in p.items() if k != "seed"} for p in grid_points({}, study.axes, 1)]
    return SeedsOnDemand(study.spec(), points, dict(study.fixed), first=study.seeds, most=max(most, study.seeds),
                         step=batch if batch > 1 else study.seeds, smallest_effect=options.smallest_effect,
                         alpha=0.05, name=options.name)


def seeds_summary(options: RunOptions) -> str | None:
    """The last line of a seeds-on-demand study: seed runs spent against the fixed design."""
    from study.seeds_on_demand import saved_status

    status = saved_status(options.folder)
    if not status:
        return None
    fixed = status["configurations"] * status["max_seeds"]
    state = ("every comparison decided" if not status["open"] else
             f"{status['open']} comparisons still open at {status['max_seeds']} seeds")
    return (f"{options.name}: seeds on demand: {status['seed_runs']} seed runs in {len(status['rounds'])} rounds "
            f"against {status['configurations']} configs x {status['max_seeds']} = {fixed} for the fixed design "
            f"({status['seed_runs'] / fixed:.0%}); {status['decided']} comparisons decided, {state}")


# --- the Tuner ----------------------------------------------------------------------------

def build_tuner(study: Study, options: RunOptions, splits_by_dataset: dict, exporter, gpus_per_trial: float,
                reuse_actors: bool = True):
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, study=study, splits_by_dataset=splits_by_dataset, data_root=options.data_root),
        {"cpu": options.cpus_per_trial, "gpu": gpus_per_trial},
    )
    from ray.tune.logger import JsonLoggerCallback

    run_config = tune.RunConfig(
        name=options.name,
        storage_path=options.storage,
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        # Every checkpoint stays while its trial runs (see prune_checkpoints for why),
        # so --resume always finds the one Tune's saved state names.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        # result.json is what ExperimentAnalysis (and so our export) reads; the CSV and
        # TensorBoard loggers Tune adds by default would only cost time per result.
        callbacks=[exporter, JsonLoggerCallback()],
        verbose=1,
    )
    if options.resume:
        return tune.Tuner.restore(options.folder, trainable, resume_unfinished=True, resume_errored=False)
    if options.preset == OPTUNA_PRESET:
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        epochs = resolve_config({**study.fixed})["epochs"]
        search = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=options.max_concurrent or 2)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1) if options.asha else None
        param_space = {**study.fixed, **optuna_space(), "seed": 0}
        num_samples = 2 if options.smoke and options.num_samples is None else (options.num_samples or DEFAULT_OPTUNA_SAMPLES)
        tune_config = tune.TuneConfig(metric=study.metric, mode=study.mode, search_alg=search, scheduler=scheduler,
                                      num_samples=num_samples, reuse_actors=reuse_actors, trial_dirname_creator=trial_dirname)
    elif options.max_seeds:
        param_space = {}  # the searcher suggests whole configs
        tune_config = tune.TuneConfig(metric=study.metric, mode=study.mode, search_alg=seeds_on_demand(study, options),
                                      num_samples=-1, reuse_actors=reuse_actors,
                                      max_concurrent_trials=options.max_concurrent, trial_dirname_creator=trial_dirname)
    else:
        param_space = grid_space(study.fixed, study.axes, study.seeds)
        tune_config = tune.TuneConfig(metric=study.metric, mode=study.mode, reuse_actors=reuse_actors,
                                      max_concurrent_trials=options.max_concurrent, trial_dirname_creator=trial_dirname)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


@contextlib.contextmanager
def tune_environment():
    """Tune settings read from the environment, set only while our Tuner runs
    (a program that embeds hpstudy keeps its own Tune defaults)."""
    settings = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # see build_tuner's callbacks
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


def start_ray(options: RunOptions) -> bool:
    """Join --address, or start a local Ray; True if we started (and so must stop) it."""
    import ray

    if ray.is_initialized():
        return False  # an embedding program (or a test) owns Ray
    try:
        if options.address:
            ray.init(address=options.address, log_to_driver=True)
        else:
            ray.init(include_dashboard=False)
    except ConnectionError as exc:
        raise UserError(f"cannot connect to Ray at {options.address}: {exc}; start a cluster "
                        "(`ray start --head` or `ray up cluster.yaml`) or drop --address") from None
    return True


def summarize(options: RunOptions, trials: list[dict], seconds: float) -> str:
    counts = {s: sum(t["status"] == s for t in trials) for s in export.STATUSES}
    unfinished = f", {counts['unfinished']} unfinished" if counts["unfinished"] else ""
    # a batched trial's seeds are counted one by one, as its rows are
    what = f"{len(trials)} trials" if not options.batch_seeds else f"{len(trials)} seed runs ({options.batch_seeds} per trial)"
    return (f"{options.name}: {what}: {counts['completed']} completed, {counts['diverged']} diverged, "
            f"{counts['error']} errored{unfinished} in {seconds:.0f} s; results in {options.folder}/{export.EPOCHS_FILE} "
            f"and {export.TRIALS_FILE}")


def run(options: RunOptions, reuse_actors: bool = True) -> int:
    """Run (or resume) the study; `reuse_actors=False` exists only to measure what reuse saves."""
    started = time.perf_counter()
    if options.resume:
        check_storage(options)
        saved = load_run_file(options)
        options = replace(options, **{k: saved.get(k, default) for k, default in RESUMED_OPTIONS.items()})
    study = effective_study(options)
    validate_study(study, options)
    check_address(options.address)
    if not options.resume:
        check_storage(options)
    splits_by_dataset = check_data(study, options)

    import ray

    owns_ray = start_ray(options)
    try:
        gpus = options.gpus_per_trial
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        if not options.resume:
            _write_run_file(options)
        exporter = make_exporter(study, options)
        tuner = build_tuner(study, options, splits_by_dataset, exporter, gpus, reuse_actors)
        with tune_environment():
            tuner.fit()
        # Read back what Tune saved: after Ctrl-C its in-memory trials all look "terminated",
        # while the saved state keeps the unfinished ones pending for --resume.
        trials = export.from_experiment(study, options.folder)
        epochs, trial_rows = export.collect(study, trials)
        export.write_results(options.folder, study, epochs, trial_rows, run_info(options))
        unfinished = sum(not t["finished"] for t in trials.values())
        print(summarize(options, trial_rows, time.perf_counter() - started), flush=True)
        summary = seeds_summary(options) if options.max_seeds and not unfinished else None
        if summary:
            print(summary, flush=True)
        if unfinished:
            print(f"{options.name}: {unfinished} trials did not finish; continue with the same command and --resume",
                  flush=True)
            return EXIT_INTERRUPTED
    finally:
        if owns_ray:
            ray.shutdown()
    return 0


def _write_run_file(options: RunOptions) -> None:
    export.write_json(export.join(options.folder, RUN_FILE), run_info(options))


def main(preset: str, argv: list[str] | None = None) -> int:
    prog = f"python -m study.{preset}"
    options = parse_args(preset, argv)
    try:
        return run(options)
    except UserError as error:
        return report_user_error(prog, error)
