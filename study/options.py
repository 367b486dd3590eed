"""The study runner's command line: `python -m study.<preset> [flags]` or `python -m study FILE.toml
[flags]` -> RunOptions.

Bad flags and flag combinations are one line on stderr and exit code 2 (argparse's
`error`, through common.cli.OneLineParser); a bad study file, plugin or override
is a UserError, which the runner's main turns into the same.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from common.cli import OneLineParser, parse_assignments, parse_value
from common.errors import UserError
from common.files import DEFAULT_DATA_ROOT
from common.storage import join
from study.definition import SMOKE_EPOCHS, Study
from study.presets import PER_TRAINABLE, get_study
from study.study_file import read_study_file
from trainables.keys import AGGREGATES
from trainables.plugins import import_plugins
from trainables.registry import TRAINABLES

# --log NAME -> (the package it needs, the extra that installs it)
LOGGERS = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
DEFAULT_OPTUNA_SAMPLES = 20


def flag(default=None, *, recorded: bool = True, resumed: bool = False, grid: bool = False):
    """A RunOptions field and what the run does with it: `recorded` in the run file and the
    results' `hpstudy.run` metadata; `resumed`: --resume takes it from the run file (a value given
    again must agree with the study's, or, for a `grid` flag, takes part in the spec that
    study.extend.check_same_grid compares; the default is what a run file without it implies)."""
    metadata = {"recorded": recorded, "resumed": resumed, "grid": grid}
    if isinstance(default, dict):  # a dataclass takes a mutable default only as a factory
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunOptions:
    """The runner's command line, as given (on --resume, with the study's own flags from its run file).

    Adding a flag: a field here (with `flag(...)`: whether the run file records it, --resume
    takes it from there, it shapes the grid) and its `add_argument` in `parse_args`, whose
    `dest` is the field's name."""

    preset: str | None = flag()  # None: a study file
    trainable: str | None = flag()  # presets made per trainable (study.presets.PER_TRAINABLE) only
    study_file: str | None = flag()  # absolute path of the study file (python -m study FILE.toml)
    epochs: int | None = flag(resumed=True, grid=True)
    seeds: int | None = flag(resumed=True)  # a larger --seeds on --resume extends the study (study.extend)
    smoke: bool = flag(False, resumed=True, grid=True)
    storage: str = flag("results", recorded=False)
    name: str = flag("", recorded=False)
    address: str | None = flag(recorded=False)
    resume: bool = flag(False, recorded=False)
    data_root: str = flag(DEFAULT_DATA_ROOT)
    download: bool = flag(False, recorded=False)
    cpus_per_trial: float = flag(1.0)
    gpus_per_trial: float | None = flag()
    max_concurrent: int | None = flag()
    num_samples: int | None = flag(resumed=True)
    max_failures: int = flag(3)
    asha: bool = flag(False, resumed=True)
    fuse: int | None = flag(resumed=True)  # runs trained together as the members of one trial
    aggregate: str | None = flag(resumed=True, grid=True)  # how a fused trial's members combine into Tune's metric
    max_seeds: int | None = flag(resumed=True)  # seeds on demand: up to this many seeds where a comparison is open
    smallest_effect: float = flag(0.01, resumed=True)  # seeds on demand: the smallest difference that matters
    checkpoint_every_s: float | None = flag()  # None: trainables.tune_adapter.CHECKPOINT_EVERY_S
    sets: dict = flag({}, resumed=True, grid=True)  # --set key=value: fixed values
    axis_overrides: dict = flag({}, resumed=True, grid=True)  # --axis key=levels: axes replaced or added
    plugins: tuple = flag((), resumed=True)  # --plugins, besides the study's own
    print_study: bool = flag(False, recorded=False)
    optuna_storage: str | None = flag(resumed=True)  # Optuna's own storage (sqlite:///file.db or a journal file)
    log: tuple = flag(())  # --log: Tune logger callbacks (study.tuner.LOGGERS)
    verbose: bool = flag(False, recorded=False)  # Tune's own trial table instead of the compact progress bar
    shared_storage: bool = flag(False, recorded=False)  # a local --storage folder that every node mounts
    cluster_config: str | None = flag(recorded=False)  # the autoscaling config where the GCS has none

    @property
    def prog(self) -> str:
        return study_command(self.preset)

    @property
    def folder(self) -> str:
        return join(self.storage, self.name)


def options_where(what: str) -> dict:
    """The RunOptions fields whose flag() says `what` ("recorded", "resumed", "grid"), with their defaults."""
    return {f.name: f.default_factory() if f.default is MISSING else f.default
            for f in fields(RunOptions) if f.metadata[what]}


def study_command(preset: str | None, trainable: str | None = None, study_file: str | None = None) -> str:
    """How a study is started: `python -m study.<preset> [TRAINABLE]`, or `python -m study FILE.toml`
    (without `study_file`: the program's name)."""
    if preset is not None:
        return f"python -m study.{preset}" + (f" {trainable}" if trainable else "")
    return "python -m study" + (f" {shlex.quote(study_file)}" if study_file else "")


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


# Flag combinations refused before anything runs: (when, the one line that says why and what to do).
# Each test reads the parsed arguments `a` and the study `s` the run starts from.
REFUSALS = [
    (lambda a, s: a.shared_storage and "://" in a.storage,
     lambda a, s: f"--shared-storage is for a folder every node mounts; {a.storage} is an object store, which every "
                  "node reaches anyway: drop --shared-storage"),
    (lambda a, s: a.cluster_config and not Path(a.cluster_config).expanduser().is_file(),
     lambda a, s: f"--cluster-config {a.cluster_config} does not exist; give the YAML the cluster was started with "
                  "(ray up leaves it on the head as ~/ray_bootstrap_config.yaml)"),
    (lambda a, s: a.optuna_storage and s.search != "optuna",
     lambda a, s: "--optuna-storage keeps an Optuna search's study; a grid has none, drop it"),
    (lambda a, s: a.asha and s.search != "optuna",
     lambda a, s: "--asha stops poor trials of an Optuna search; a grid trains every point to the end, drop it"),
    (lambda a, s: a.num_samples is not None and s.search != "optuna",
     lambda a, s: "--num-samples is for Optuna searches; a grid runs every point once, use --seeds K for repeats"),
    (lambda a, s: s.search == "optuna" and a.seeds not in (None, 1),
     lambda a, s: "an Optuna search trains seed 0 per sampled config (or seeds 0..K-1 as the members of one trial "
                  "with --fuse K); drop --seeds"),
    (lambda a, s: a.max_seeds is not None and s.search == "optuna",
     lambda a, s: "--max-seeds adds seeds to a grid's open comparisons; an Optuna search has none, drop it"),
    (lambda a, s: a.max_seeds is not None and a.max_seeds < first_seeds(a, s),
     lambda a, s: f"--max-seeds {a.max_seeds} is below the {first_seeds(a, s)} seeds every configuration starts "
                  f"with (--seeds); e.g. --seeds {first_seeds(a, s)} --max-seeds {4 * first_seeds(a, s)}"),
    (lambda a, s: a.smallest_effect is not None and a.max_seeds is None,
     lambda a, s: "--smallest-effect decides when seeds on demand stop; add --max-seeds M "
                  "(the report takes its own --smallest-effect)"),
    (lambda a, s: a.aggregate is not None and a.fuse is None,
     lambda a, s: "--aggregate combines the members of a fused trial into the metric Tune sees; add --fuse K"),
    (lambda a, s: "/" in (a.name or s.name) or (a.name or s.name) in (".", ".."),
     lambda a, s: f"--name must be a plain folder name, got {a.name or s.name!r}"),
]


def first_seeds(args, study: Study) -> int:
    """The seeds every configuration starts with."""
    return args.seeds or (1 if args.smoke else study.seeds)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of the runner; each `dest` is a RunOptions field."""
    parser.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the preset's)")
    parser.add_argument("--seeds", type=_positive_int,
                        help="seeds per configuration, 0..K-1 (default: the preset's); with --resume, more seeds "
                             "than the study has trains only the missing ones")
    parser.add_argument("--smoke", action="store_true", help=f"a handful of trials, {SMOKE_EPOCHS} epochs, small data")
    parser.add_argument("--storage", default=RunOptions.storage, help="results folder or URI (s3://, gs://); default ./results")
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
                        help="GPUs per trial, fractions pack trials (0.25: four per GPU); default 1 if the cluster "
                             "has GPUs, else 0")
    parser.add_argument("--max-concurrent", type=_positive_int, help="trials running at once (default: as resources allow)")
    parser.add_argument("--num-samples", type=_positive_int,
                        help=f"Optuna trials (default {DEFAULT_OPTUNA_SAMPLES}); grid presets run each grid point once")
    parser.add_argument("--max-failures", type=_non_negative_int, default=3, help="retries of a failed trial from its checkpoint")
    parser.add_argument("--checkpoint-every-s", type=_resource(allow_zero=True), metavar="S",
                        help="save a trial's state at most every S seconds and at its end (default 30; 0: every "
                             "epoch); a restarted trial redoes at most S seconds")
    parser.add_argument("--fuse", type=_positive_int, metavar="K",
                        help="train up to K runs as the members of one trial (one batched computation); each run "
                             "still gets its own rows. A grid fuses the runs (seeds, and configurations) that differ "
                             "only in lr, weight decay, momentum, dropout, init or seed; an Optuna search trains "
                             "seeds 0..K-1 of each sampled configuration")
    parser.add_argument("--batch-seeds", type=_positive_int, metavar="K", help=argparse.SUPPRESS)  # --fuse's old spelling
    parser.add_argument("--aggregate", choices=list(AGGREGATES), default=None,
                        help="with --fuse: the metric Tune optimises is this over a trial's members (default mean)")
    parser.add_argument("--max-seeds", type=_positive_int, metavar="M",
                        help="seeds on demand: every configuration gets --seeds N first, then more in rounds only "
                             "where a comparison is still inconclusive, up to M")
    parser.add_argument("--smallest-effect", type=_resource(allow_zero=True), default=None,
                        help="with --max-seeds: the smallest difference in test accuracy that matters (default 0.01)")
    parser.add_argument("--asha", action="store_true", help="Optuna searches: stop poor trials early with ASHA")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed config value for every trial (JSON values: --set lr=0.05 --set hidden=[64,64])")
    parser.add_argument("--axis", dest="axis_overrides", action="append", default=[], metavar="KEY=LEVELS",
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


def _deprecated_batch_seeds(args, parser: argparse.ArgumentParser) -> None:
    """--batch-seeds K, the old spelling: a trial of K seeds is a fused trial of K members."""
    if args.batch_seeds is None:
        return
    if args.fuse is not None:
        parser.error("--batch-seeds is the old spelling of --fuse; give --fuse K alone")
    sys.stderr.write(f"{parser.prog}: --batch-seeds is deprecated: it is --fuse {args.batch_seeds} (seeds are "
                     "members like any fused run); running with --fuse\n")
    args.fuse = args.batch_seeds


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
    parser = OneLineParser(prog=study_command(preset), description=description)
    if preset is None:
        parser.add_argument("study_file", metavar="FILE.toml", help="the study file (see ARCHITECTURE.md, study files)")
    if per_trainable:
        parser.add_argument("trainable", choices=list(TRAINABLES), metavar="TRAINABLE",
                            help=f"one of: {', '.join(TRAINABLES)}")
    add_flags(parser)
    args = parser.parse_args(argv)
    args.trainable = getattr(args, "trainable", None)
    args.study_file = str(Path(args.study_file).expanduser().resolve()) if preset is None else None
    base = read_study_file(args.study_file) if args.study_file else get_study(preset, args.trainable)
    import_plugins(base.plugins)
    args.sets = parse_assignments(args.sets)
    args.axis_overrides = dict(parse_axis(item) for item in args.axis_overrides)
    check_overrides(base, args.sets, args.axis_overrides)
    _deprecated_batch_seeds(args, parser)
    for refused, why in REFUSALS:
        if refused(args, base):
            parser.error(why(args, base))
    args.preset, args.plugins, args.log = preset, plugins, tuple(dict.fromkeys(args.log))
    args.name = args.name or base.name
    args.storage = args.storage if "://" in args.storage else str(Path(args.storage).expanduser().resolve())
    args.data_root = str(Path(args.data_root).expanduser().resolve())
    if args.smallest_effect is None:
        args.smallest_effect = RunOptions.smallest_effect
    return RunOptions(**{f.name: getattr(args, f.name) for f in fields(RunOptions)})
