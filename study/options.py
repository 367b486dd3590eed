"""The study runner's command line: `python -m study.<preset> [flags]` or `python -m study FILE.toml
[flags]` -> RunOptions.

Bad flags and flag combinations are one line on stderr and exit code 2 (argparse's
`error`, through trainables.cli.OneLineParser); a bad study file, plugin or override
is a UserError, which the runner's main turns into the same.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from trainables.cli import OneLineParser, parse_assignments, parse_value
from trainables.errors import UserError
from trainables.plugins import import_plugins
from trainables.registry import AGGREGATES, TRAINABLES

from study.storage import join
from study.definition import SMOKE_EPOCHS, Study
from study.presets import PER_TRAINABLE, get_study
from study.study_file import read_study_file

# --log NAME -> (the package it needs, the extra that installs it)
LOGGERS = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
DEFAULT_STORAGE = "results"
DEFAULT_DATA_ROOT = "data"
DEFAULT_OPTUNA_SAMPLES = 20
# What --resume takes from the run file rather than the command line, and the value a run
# file written before that option existed implies (study.run_file.resumed_options: a flag
# given again must agree with the study; --seeds may grow, which extends it).
RESUMED_OPTIONS = {"smoke": False, "epochs": None, "seeds": None, "num_samples": None, "asha": False,
                   "batch_seeds": None, "fuse": None, "aggregate": "mean", "max_seeds": None, "smallest_effect": 0.01,
                   "sets": {}, "axis_overrides": {}, "plugins": [], "optuna_storage": None, "extensions": []}


@dataclass(frozen=True)
class RunOptions:
    preset: str | None  # None: a study file
    trainable: str | None  # presets made per trainable (study.presets.PER_TRAINABLE) only
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
    fuse: int | None = None  # grid points (configurations and seeds) trained together as members of one trial
    aggregate: str = "mean"  # how a batched trial's seeds combine into the metric Tune optimises
    max_seeds: int | None = None  # seeds on demand: up to this many seeds where a comparison is open
    smallest_effect: float = 0.01  # seeds on demand: the smallest difference that matters
    checkpoint_every_s: float | None = None  # None: trainables.tune_adapter.CHECKPOINT_EVERY_S
    study_file: str | None = None  # absolute path of the study file (python -m study FILE.toml)
    sets: dict = field(default_factory=dict)  # --set key=value: fixed values
    axis_overrides: dict = field(default_factory=dict)  # --axis key=levels: axes replaced or added
    plugins: tuple = ()  # --plugins, besides the study's own
    print_study: bool = False
    optuna_storage: str | None = None  # Optuna's own storage (sqlite:///file.db or a journal file), for its dashboard
    log: tuple = ()  # --log: Tune logger callbacks (study.tuner.LOGGERS)
    verbose: bool = False  # Tune's own trial table instead of the compact progress bar
    shared_storage: bool = False  # a local --storage folder that every node of a cluster mounts
    cluster_config: str | None = None  # the autoscaling config where the GCS has none (default: ray up's ~/ray_bootstrap_config.yaml)
    extensions: tuple = ()  # the study's extensions with more seeds so far (study.extend.new_extension records)

    @property
    def prog(self) -> str:
        return "python -m study" if self.preset is None else f"python -m study.{self.preset}"

    @property
    def folder(self) -> str:
        return join(self.storage, self.name)


def _int_at_least(minimum: int):
    """argparse type: an integer >= minimum, with the one-line message the CLI contract wants."""
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
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number such as 1 or 0.25, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value

    return parse


def _plugin_entries(entries: list[str]) -> tuple[str, ...]:
    """--plugins as given: module names, and .py paths made absolute (workers run elsewhere)."""
    return tuple(str(Path(e).expanduser().resolve()) if e.endswith(".py") else e for e in entries)


def parse_axis(item: str) -> tuple[str, list]:
    """--axis key=level,level,... (levels as --set values), or key=[JSON list] for list levels."""
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    levels = (parse_value(text) if text.startswith("[") else [parse_value(t.strip()) for t in text.split(",")]
              ) if sep and key and text else None
    if not isinstance(levels, list) or not levels:
        raise UserError(f"--axis takes key=level,level,..., got {item!r}; e.g. --axis activation=relu,gelu")
    return key, levels


def check_overrides(study: Study, sets: dict, axes: dict) -> None:
    """--set and --axis against the study they change: one line for what would be ignored or clash."""
    for key in sets:
        if key in axes:
            raise UserError(f"{key} is given to both --set and --axis; keep one")
        if key in study.axes:
            raise UserError(f"{key} is an axis of study {study.name}; use --axis {key}={sets[key]} to keep one level")
        if key in study.space:
            raise UserError(f"{key} is searched by study {study.name}'s Optuna space; change the space in a study "
                            "file (--print-study writes one)")
        setters = [axis for axis, levels in study.bundles.items() if any(key in keys for keys in levels.values())]
        if setters:
            raise UserError(f"{key} is set by the {setters[0]} levels of study {study.name}; change them in a study "
                            "file (--print-study writes one)")
    if axes and study.search == "optuna":
        raise UserError(f"--axis adds grid axes; study {study.name} is an Optuna search, change its space in a "
                        "study file (--print-study writes one)")


def parse_args(preset: str | None, argv: list[str] | None) -> RunOptions:
    """`preset` None: the first argument is a study file."""
    # --plugins first: they may register the trainable a per-trainable preset is given
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--plugins", action="append", default=[])
    plugins = _plugin_entries(early.parse_known_args(argv)[0].plugins)
    import_plugins(plugins)

    per_trainable = preset in PER_TRAINABLE
    if preset is None:
        description = __doc__.splitlines()[0]
    else:
        description = (get_study(preset) if not per_trainable else read_study_file(
            Path(__file__).parent / "studies" / f"{preset}.toml")).description
    parser = OneLineParser(prog="python -m study" if preset is None else f"python -m study.{preset}",
                           description=description)
    if preset is None:
        parser.add_argument("study_file", metavar="FILE.toml", help="the study file (see ARCHITECTURE.md, study files)")
    if per_trainable:
        parser.add_argument("trainable", choices=list(TRAINABLES), metavar="TRAINABLE",
                            help=f"one of: {', '.join(TRAINABLES)}")
    parser.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the preset's)")
    parser.add_argument("--seeds", type=_positive_int,
                        help="seeds per configuration, 0..K-1 (default: the preset's); with --resume, more seeds "
                             "than the study has trains only the missing ones")
    parser.add_argument("--smoke", action="store_true", help=f"a handful of trials, {SMOKE_EPOCHS} epochs, small data")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="results folder or URI (s3://, gs://); default ./results")
    parser.add_argument("--name", help="study folder name under --storage (default: the preset name)")
    parser.add_argument("--address", help="Ray cluster to join (auto on a `ray up` head node); default: start a local Ray")
    parser.add_argument("--shared-storage", action="store_true",
                        help="--storage is a folder every node of the cluster mounts (NFS, EFS, ...)")
    parser.add_argument("--cluster-config", metavar="YAML",
                        help="the cluster's autoscaling config, for the node types it can launch where the "
                             "cluster's GCS holds none (default: ~/ray_bootstrap_config.yaml, which ray up leaves "
                             "on the head node)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted study in --storage/--name, or add seeds to it (--seeds N)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                        help="dataset folder (default ./data; --resume: the study's)")
    parser.add_argument("--download", action="store_true", help="download missing torchvision datasets")
    parser.add_argument("--cpus-per-trial", type=_resource(allow_zero=False), default=1.0)
    parser.add_argument("--gpus-per-trial", type=_resource(allow_zero=True), default=None,
                        help="GPUs per trial, fractions pack trials (0.25: four per GPU); default 1 if the cluster has GPUs, else 0")
    parser.add_argument("--max-concurrent", type=_positive_int, help="trials running at once (default: as resources allow)")
    parser.add_argument("--num-samples", type=_positive_int,
                        help=f"Optuna trials (default {DEFAULT_OPTUNA_SAMPLES}); grid presets run each grid point once")
    parser.add_argument("--max-failures", type=_non_negative_int, default=3, help="retries of a failed trial from its checkpoint")
    parser.add_argument("--checkpoint-every-s", type=_resource(allow_zero=True), metavar="S",
                        help="save a trial's state at most every S seconds and at its end (default 30; 0: every "
                             "epoch); a restarted trial redoes at most S seconds")
    parser.add_argument("--batch-seeds", type=_positive_int, metavar="K",
                        help="train K seeds of each configuration as one batched trial (seeds rounded up to a "
                             "multiple of K); each seed still gets its own rows in the results")
    parser.add_argument("--fuse", type=_positive_int, metavar="K",
                        help="train up to K grid points that differ only in lr, weight decay, momentum, dropout, "
                             "init or seed as members of one batched trial; each member still gets its own rows")
    parser.add_argument("--aggregate", choices=list(AGGREGATES), default=None,
                        help="with --batch-seeds: the metric Tune optimises is this over the K seeds (default mean)")
    parser.add_argument("--max-seeds", type=_positive_int, metavar="M",
                        help="seeds on demand: every configuration gets --seeds N first, then more in rounds only "
                             "where a comparison is still inconclusive, up to M")
    parser.add_argument("--smallest-effect", type=_resource(allow_zero=True), default=None,
                        help="with --max-seeds: the smallest difference in test accuracy that matters (default 0.01)")
    parser.add_argument("--asha", action="store_true", help="Optuna searches: stop poor trials early with ASHA")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed config value for every trial (JSON values: --set lr=0.05 --set hidden=[64,64])")
    parser.add_argument("--axis", dest="axes", action="append", default=[], metavar="KEY=LEVELS",
                        help="replace or add a grid axis: --axis activation=relu,gelu")
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                        help="a module name or .py file that registers trainables and datasets (repeatable)")
    parser.add_argument("--optuna-storage", metavar="URL",
                        help="Optuna searches: keep the Optuna study in sqlite:///file.db (or another database URL) "
                             "or a journal file, to watch it with optuna-dashboard; --resume continues it")
    parser.add_argument("--log", action="append", default=[], choices=list(LOGGERS),
                        help="also log to tensorboard, mlflow or wandb (repeatable; mlflow and wandb are extras)")
    parser.add_argument("--verbose", action="store_true", help="Ray Tune's full trial table instead of one progress bar")
    parser.add_argument("--print-study", action="store_true",
                        help="print the study (with --set / --axis applied) as a study file and exit")
    args = parser.parse_args(argv)
    trainable = getattr(args, "trainable", None)
    study_file = str(Path(args.study_file).expanduser().resolve()) if preset is None else None
    base = read_study_file(study_file) if study_file else get_study(preset, trainable)
    import_plugins(base.plugins)
    sets = parse_assignments(args.sets)
    axis_overrides = dict(parse_axis(item) for item in args.axes)
    check_overrides(base, sets, axis_overrides)
    is_optuna = base.search == "optuna"

    if args.shared_storage and "://" in args.storage:
        parser.error(f"--shared-storage is for a folder every node mounts; {args.storage} is an object store, "
                     "which every node reaches anyway: drop --shared-storage")
    if args.cluster_config and not Path(args.cluster_config).expanduser().is_file():
        parser.error(f"--cluster-config {args.cluster_config} does not exist; give the YAML the cluster was started "
                     "with (ray up leaves it on the head as ~/ray_bootstrap_config.yaml)")
    if args.optuna_storage and not is_optuna:
        parser.error("--optuna-storage keeps an Optuna search's study; a grid has none, drop it")
    if args.asha and not is_optuna:
        parser.error("--asha stops poor trials of an Optuna search; a grid trains every point to the end, drop it")
    if not is_optuna and args.num_samples is not None:
        parser.error("--num-samples is for Optuna searches; a grid runs every point once, use --seeds K for repeats")
    if is_optuna and args.seeds not in (None, 1):
        parser.error("an Optuna search trains seed 0 per sampled config (or seeds 0..K-1 with --batch-seeds K); "
                     "drop --seeds")
    if args.max_seeds is not None and is_optuna:
        parser.error("--max-seeds adds seeds to a grid's open comparisons; an Optuna search has none, drop it")
    if args.max_seeds is not None:
        first = args.seeds or (1 if args.smoke else base.seeds)
        if args.max_seeds < first:
            parser.error(f"--max-seeds {args.max_seeds} is below the {first} seeds every configuration starts "
                         f"with (--seeds); e.g. --seeds {first} --max-seeds {4 * first}")
    if args.smallest_effect is not None and args.max_seeds is None:
        parser.error("--smallest-effect decides when seeds on demand stop; add --max-seeds M "
                     "(the report takes its own --smallest-effect)")
    if args.fuse is not None and is_optuna:
        parser.error("--fuse packs a grid's points into trials; an Optuna search samples one config per trial, "
                     "drop --fuse (or --batch-seeds K trains K seeds of each sampled config together)")
    if args.fuse is not None and args.batch_seeds is not None:
        parser.error("--fuse already trains a configuration's seeds together with the other members; "
                     "drop --batch-seeds")
    if args.aggregate is not None and args.batch_seeds is None:
        parser.error("--aggregate combines the seeds of a batched trial; add --batch-seeds K")
    name = args.name or base.name
    if "/" in name or name in (".", ".."):
        parser.error(f"--name must be a plain folder name, got {name!r}")
    storage = args.storage if "://" in args.storage else str(Path(args.storage).expanduser().resolve())
    return RunOptions(
        preset=preset, trainable=trainable, epochs=args.epochs, seeds=args.seeds, smoke=args.smoke,
        storage=storage, name=name, address=args.address, resume=args.resume,
        data_root=str(Path(args.data_root).expanduser().resolve()), download=args.download,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
        num_samples=args.num_samples, max_failures=args.max_failures, asha=args.asha,
        batch_seeds=args.batch_seeds, fuse=args.fuse, aggregate=args.aggregate or "mean", max_seeds=args.max_seeds,
        smallest_effect=0.01 if args.smallest_effect is None else args.smallest_effect,
        checkpoint_every_s=args.checkpoint_every_s, study_file=study_file, sets=sets, axis_overrides=axis_overrides,
        plugins=plugins, print_study=args.print_study, optuna_storage=args.optuna_storage,
        log=tuple(dict.fromkeys(args.log)), verbose=args.verbose, shared_storage=args.shared_storage,
        cluster_config=args.cluster_config,
    )
