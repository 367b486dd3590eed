"""Search spaces: grids (every combination, each seed or batch of seeds its own trial) and Optuna spaces.

They stay separate on purpose: Optuna samples from distributions and cannot
take `tune.grid_search`; a grid has no distributions.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from ray import tune


def seed_axis(fixed: Mapping, seeds: int) -> list[int]:
    """The first seed of each trial: every seed its own trial, or, where the config batches
    K seeds per trial (`replicates`), seeds 0, K, 2K, ... each standing for K seeds."""
    return list(range(0, seeds, fixed.get("replicates", 1)))


def grid_space(fixed: Mapping, axes: Mapping[str, Sequence], seeds: int) -> dict:
    """Ray Tune param_space: constants, one grid_search per axis, and the seed axis."""
    space = dict(fixed)
    for key, values in axes.items():
        space[key] = tune.grid_search(list(values))
    space["seed"] = tune.grid_search(seed_axis(fixed, seeds))
    return space


def grid_points(fixed: Mapping, axes: Mapping[str, Sequence], seeds: int) -> list[dict]:
    """Every config the grid produces, in plain Python (to validate before Ray starts)."""
    keys = [*axes, "seed"]
    values = [list(v) for v in axes.values()] + [seed_axis(fixed, seeds)]
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*values)]


# Optuna: log scales for the rates, a bounded dropout, categorical ablations.
OPTUNA_ACTIVATIONS = ["relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid"]


def optuna_space() -> dict:
    return {
        "lr": tune.loguniform(1e-5, 1.0),
        "weight_decay": tune.loguniform(1e-6, 1e-1),
        "dropout": tune.uniform(0.0, 0.5),
        "activation": tune.choice(OPTUNA_ACTIVATIONS),
        "batchnorm": tune.choice([True, False]),
    }
