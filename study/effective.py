"""The study as this run trains it: the preset with the run's flags applied, validated.

Every configuration the study will run is resolved here, so a bad one stops the run
before Ray starts or anything is written.
"""

from __future__ import annotations

from common.errors import ConfigError
from study.definition import SMOKE_DATA, SMOKE_EPOCHS, Study, make_study
from study.fusion import fused_trials, members_of
from study.options import RunOptions
from study.presets import get_study
from study.spaces import grid_points, space_corners
from study.study_file import read_study_file
from trainables.registry import resolve_config


def effective_study(options: RunOptions) -> Study:
    """The preset or study file with this run's --set / --axis / --plugins / --epochs / --seeds /
    --smoke / --fuse / --aggregate applied."""
    study = read_study_file(options.study_file) if options.study_file else get_study(options.preset, options.trainable)
    fixed = {k: v for k, v in study.fixed.items() if k not in options.axis_overrides}
    fixed.update(options.sets)
    axes = {**study.axes, **options.axis_overrides}
    smoke_axes = {**study.smoke_axes, **options.axis_overrides}
    seeds = options.seeds or study.seeds
    if options.smoke:
        axes, seeds = smoke_axes, options.seeds or 1  # one seed unless --seeds asks for more
        fixed.update(SMOKE_DATA, epochs=SMOKE_EPOCHS)
    if options.epochs:
        fixed["epochs"] = options.epochs
    if options.fuse and study.search == "optuna":
        seeds = options.fuse  # each sampled configuration's seeds 0..K-1, the members of its trial
    if options.fuse and options.aggregate:
        fixed["aggregate"] = options.aggregate  # what a fused trial reports to Tune: a config key
    plugins = list(dict.fromkeys([*options.plugins, *study.plugins]))
    return make_study(options.name, study.description, fixed, axes, seeds, smoke_axes,
                      {k: {label: dict(keys) for label, keys in b.items()} for k, b in study.bundles.items()},
                      metric=study.metric, mode=study.mode, search=study.search, space=study.space, plugins=plugins,
                      outcomes=study.outcomes)


def validate_study(study: Study, source: str | None = None, fuse: int | None = None) -> None:
    """Resolve every config the study will run (its fused trials too, with --fuse K), so a bad
    one stops us before Ray starts; `source`, the study file, starts the message."""
    try:
        if not study.trainables():
            raise ConfigError("the study names no trainable; set trainable in [fixed] or as an axis")
        if study.search == "optuna":
            for corner in space_corners(study.space):
                resolve_config(study.expand({**study.fixed, **corner, "seed": 0}))
            return
        for config in grid_points(study.fixed, study.axes, study.seeds):
            resolve_config(study.expand(config))
        for config in fused_trials(study, fuse) if fuse else []:
            resolve_config(study.expand({**config, "members": members_of(config)}))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") if source else exc from None
