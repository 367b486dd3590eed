"""Search spaces: grids (every combination, each seed or batch of seeds its own trial) and Optuna spaces.

They stay separate on purpose: Optuna samples from distributions and cannot
take `tune.grid_search`; a grid has no distributions.
"""

from __future__ import annotations

import itertools
import json
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


def fusible_axes(study) -> list[str]:
    """The axes whose levels fused members may differ in (trainables.registry.fusible_keys, for
    every trainable of the study): a key's axis, or a bundle's whose every level sets only such keys."""
    from trainables.registry import fusible_keys

    keys = set.intersection(*(set(fusible_keys(t)) for t in study.trainables()))
    return [axis for axis in study.axes
            if axis in keys or (axis in study.bundles and all(set(level) <= keys
                                                              for level in study.bundles[axis].values()))]


def tune_config(trial: dict) -> dict:
    """A fused trial's config as Tune holds it: `members` as JSON text. Tune's variant generator
    walks into lists of dicts in preset points and, where two trials' lists differ in length,
    fails; text is one value to it. run_trial, the export and the searcher read it back with
    `members_of`."""
    return {**trial, "members": json.dumps(trial["members"])} if "members" in trial else dict(trial)


def members_of(config: dict) -> list[dict] | None:
    """The `members` of a trial config, as a list, whether Tune's text or a list; None if none."""
    members = config.get("members")
    return json.loads(members) if isinstance(members, str) else members


def pack(items: list, groups: list[str], most: int) -> list[list]:
    """`items` as lists of at most `most`, each list from one group (`groups[i]` is item i's), in
    the items' order; a group is cut into as few lists as `most` allows, of sizes that differ by
    at most one (so the trials of a group take about as long as each other)."""
    by_group: dict[str, list] = {}
    for item, group in zip(items, groups):
        by_group.setdefault(group, []).append(item)
    out = []
    for members in by_group.values():
        count = -(-len(members) // most)
        size, extra = divmod(len(members), count)
        start = 0
        for i in range(count):
            end = start + size + (i < extra)
            out.append(members[start:end])
            start = end
    return out


def fused_trials(study, fuse: int, points: list[dict] | None = None) -> list[dict]:
    """The grid (or `points` of it, one seed each) as fused trials of at most `fuse` members, as
    Tune takes them (`tune_config`).

    Points that agree on every axis that is not fusible (and so on the computation's shape) form
    a group, packed into trials by `pack`. A member is a point's fusible levels and its seed;
    members keep the grid's order, so one configuration's seeds sit side by side (one optimizer
    parameter group for them)."""
    fusible = fusible_axes(study)
    points = grid_points(study.fixed, study.axes, study.seeds) if points is None else points
    shared = [{k: v for k, v in p.items() if k not in fusible and k != "seed"} for p in points]
    members = [{k: p[k] for k in (*fusible, "seed") if k in p} for p in points]
    keys = [json.dumps(s, sort_keys=True, default=str) for s in shared]
    first_of = dict(zip(keys, shared))
    return [tune_config({**first_of[keys[chunk[0]]], "members": [members[i] for i in chunk]})
            for chunk in pack(list(range(len(points))), keys, fuse)]


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
