"""The study as this run trains it: the preset with the run's flags applied, validated.

Every configuration the study will run is resolved here, so a bad one stops the run
before Ray starts or anything is written.
"""

from __future__ import annotations

from dataclasses import replace

from trainables.registry import resolve_config

from study.options import RunOptions
from study.presets import SMOKE_DATA, SMOKE_EPOCHS, Study, get_study
from study.spaces import grid_points, space_corners


def effective_study(options: RunOptions) -> Study:
    """The preset with this run's --epochs / --seeds / --smoke / --batch-seeds applied."""
    study = get_study(options.preset, options.trainable)
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


def validate_study(study: Study) -> None:
    """Resolve every config the study will run, so a bad one stops us before Ray starts."""
    if study.search == "optuna":
        for corner in space_corners(study.space):
            resolve_config(study.expand({**study.fixed, **corner, "seed": 0}))
        return
    for config in grid_points(study.fixed, study.axes, study.seeds):
        resolve_config(study.expand(config))
