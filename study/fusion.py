"""Fused trials (--fuse K): runs of a study packed as the members of one trial.

A run is one (configuration, seed). Runs that agree on every key that is not fusible (and so
on the computation's shape: trainables.registry.fusible_keys) can train as the members of one
trial (trainables.engines); each still gets its own rows (study.export). The grid, an
extension's missing runs and a round of seeds on demand are packed here alike; an Optuna
search's trial has seeds 0..K-1 of its sampled configuration as members.
"""

from __future__ import annotations

import json

from common.contract import config_cell
from study.spaces import grid_points
from trainables.registry import fusible_keys, seed_members


def fusible_axes(study) -> list[str]:
    """The axes whose levels fused members may differ in (trainables.registry.fusible_keys, for
    every trainable of the study): a key's axis, or a bundle's whose every level sets only such keys."""
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


def trial_seeds(config: dict) -> list[int]:
    """The seeds one trial config trains: its members', or its own."""
    members = members_of(config)
    return [int(m["seed"]) for m in members] if members else [int(config["seed"])]


def optuna_members(fuse: int) -> str:
    """An Optuna trial's `members` (as Tune holds it): seeds 0..K-1 of the sampled configuration."""
    return json.dumps(seed_members(0, fuse))


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


def shared_key(point: dict, fusible: list[str]) -> str:
    """What runs must agree on to be fused: every key that is neither fusible nor the seed."""
    return json.dumps({k: config_cell(v) for k, v in point.items() if k not in fusible and k != "seed"},
                      sort_keys=True, default=str)


def fused_trials(study, fuse: int, points: list[dict] | None = None) -> list[dict]:
    """The grid (or `points` of it, one seed each) as fused trials of at most `fuse` members, as
    Tune takes them (`tune_config`).

    Points that agree on every axis that is not fusible (and so on the computation's shape) form
    a group, packed into trials by `pack`. A member is a point's fusible levels and its seed;
    members keep the grid's order, so one configuration's seeds sit side by side (one optimizer
    parameter group for them)."""
    fusible = fusible_axes(study)
    points = grid_points(study.fixed, study.axes, study.seeds) if points is None else points
    keys = [shared_key(p, fusible) for p in points]
    trials = []
    for chunk in pack(list(range(len(points))), keys, fuse):
        first = points[chunk[0]]
        shared = {k: v for k, v in first.items() if k not in fusible and k != "seed"}
        members = [{k: points[i][k] for k in (*fusible, "seed") if k in points[i]} for i in chunk]
        trials.append(tune_config({**shared, "members": members}))
    return trials
