"""Search spaces: grids (every combination of the axes and seeds 0..N-1) and Optuna spaces.

They stay separate on purpose: Optuna samples from distributions and cannot
take `tune.grid_search`; a grid has no distributions. Packing runs into fused trials
(--fuse) is study.fusion's.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from ray import tune


def grid_space(fixed: Mapping, axes: Mapping[str, Sequence], seeds: int) -> dict:
    """Ray Tune param_space: constants, one grid_search per axis, and the seed axis."""
    space = dict(fixed)
    for key, values in axes.items():
        space[key] = tune.grid_search(list(values))
    space["seed"] = tune.grid_search(list(range(seeds)))
    return space


def grid_points(fixed: Mapping, axes: Mapping[str, Sequence], seeds: int) -> list[dict]:
    """Every config the grid produces, in plain Python (to validate before Ray starts)."""
    keys = [*axes, "seed"]
    values = [list(v) for v in axes.values()] + [list(range(seeds))]
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*values)]


# An Optuna study's space is data (Study.space): key -> (distribution, *arguments).
DISTRIBUTIONS = {
    "loguniform": lambda low, high: tune.loguniform(low, high),
    "uniform": lambda low, high: tune.uniform(low, high),
    "int": lambda low, high: tune.randint(low, high + 1),  # both ends included, as Optuna's suggest_int
    "choice": lambda options: tune.choice(list(options)),
}


def search_space(space: Mapping[str, Sequence]) -> dict:
    """Ray Tune distributions (which OptunaSearch converts) for a study's space."""
    return {key: DISTRIBUTIONS[kind](*args) for key, (kind, *args) in space.items()}


def space_corners(space: Mapping[str, Sequence]) -> list[dict]:
    """Points that together use every end of each range and every choice (to validate before Ray starts)."""
    values = {key: (list(args[0]) if kind == "choice" else list(args)) for key, (kind, *args) in space.items()}
    longest = max((len(v) for v in values.values()), default=0)
    return [{key: v[i % len(v)] for key, v in values.items()} for i in range(longest)]
