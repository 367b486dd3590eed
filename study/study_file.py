"""Study files: a study as TOML data, read with the standard library's tomllib, and any Study
written back as one (tomlkit), so `--print-study` output runs as the study it printed.

    name = "my_study"
    description = "GELU against ReLU on my model"
    plugins = ["my_models"]          # modules (or .py files, relative to this file) that register
    seeds = 3                        # trainables and datasets: trainables.register_trainable
    metric = "val_acc"               # what a search optimises; mode = "max" or "min"
    search = "grid"                  # or "optuna" (with [space] instead of [axes])

    [fixed]                          # config every trial shares
    trainable = "my_mlp"
    epochs = 10

    [axes]                           # the grid: every combination x seeds
    activation = ["relu", "gelu"]

    [smoke_axes]                     # what --smoke runs (default: each axis's first two levels)
    [bundles.optimizer.sgd]          # a level that sets several keys: label -> keys
    [space]                          # Optuna: key = ["loguniform", 1e-5, 1.0], ["uniform", a, b],
                                     #   ["int", a, b], ["choice", [levels...]]

Bad files are one line naming the file and what is wrong (a `StudyFileError`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path

from common.errors import UserError
from study.definition import Study, make_study

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KEYS = ("name", "description", "plugins", "seeds", "metric", "mode", "search", "outcomes", "fixed", "axes",
         "smoke_axes", "bundles", "space")
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
SEARCHES = ("grid", "optuna")
SPACE_KINDS = {"loguniform": "[\"loguniform\", low, high]", "uniform": "[\"uniform\", low, high]",
               "int": "[\"int\", low, high]", "choice": "[\"choice\", [level, ...]]"}


class StudyFileError(UserError):
    """A study file that cannot be read: missing, not TOML, or not a study."""


def read_study_file(path: str | Path) -> Study:
    """The Study a TOML file describes (its plugins are named, not yet imported)."""
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(f"{path} does not exist; give a study file such as my_study.toml "
                             "(`python -m study.mnist1d_grid --print-study` prints one to start from)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise StudyFileError(f"{path} is not a text file; give a TOML study file") from None
    return study_from_data(data, path)


def study_from_data(data: Mapping, path: Path) -> Study:
    def fail(message: str):
        raise StudyFileError(f"{path}: {message}")

    unknown = [key for key in data if key not in KEYS]
    if unknown:
        fail(f"unknown key {unknown[0]!r}; valid keys: {', '.join(KEYS)}")
    for key in ("fixed", "axes", "smoke_axes", "bundles", "space"):
        if not isinstance(data.get(key, {}), dict):
            fail(f"{key} must be a table ([{key}]), got {data[key]!r}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        fail(f"name must be a plain folder name, got {name!r}")
    seeds = data.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        fail(f"seeds must be a positive integer, got {seeds!r}")
    metric, mode = data.get("metric", "val_acc"), data.get("mode")
    if metric not in METRICS:
        fail(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    mode = mode or ("min" if metric.endswith("loss") else "max")
    if mode not in ("max", "min"):
        fail(f"mode must be max or min, got {mode!r}")
    search = data.get("search", "grid")
    if search not in SEARCHES:
        fail(f"unknown search {search!r}; choose one of: {', '.join(SEARCHES)}")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        fail(f"plugins must be a list of module names or .py paths, got {plugins!r}")

    axes = _levels_table(data.get("axes", {}), "axes", fail)
    smoke_axes = _levels_table(data.get("smoke_axes", {}), "smoke_axes", fail)
    for key in smoke_axes:
        if key not in axes:
            fail(f"smoke_axes.{key} is not an axis; smoke axes are a subset of: {', '.join(axes) or 'no axes'}")
    if "smoke_axes" not in data:
        smoke_axes = {key: levels[:2] for key, levels in axes.items()}
    bundles = _bundles(data.get("bundles", {}), axes, fail)
    space = _space(data.get("space", {}), fail)
    if search == "optuna" and axes:
        fail("an Optuna search samples [space]; it has no [axes] (use search = \"grid\" for a grid)")
    if search == "optuna" and not space:
        fail("search = \"optuna\" needs a [space], e.g. lr = [\"loguniform\", 1e-5, 1.0]")
    if search == "grid" and space:
        fail("[space] is for search = \"optuna\"; a grid takes [axes]")
    fixed = dict(data.get("fixed", {}))
    for key in fixed:
        if key in axes or key in space:
            fail(f"{key} is both fixed and {'an axis' if key in axes else 'searched'}; keep one")
    plugins = [str((path.parent / p).resolve()) if p.endswith(".py") else p for p in plugins]
    return make_study(name, data.get("description", ""), fixed, axes, seeds, smoke_axes, bundles,
                      metric=metric, mode=mode, search=search, space=space, plugins=plugins,
                      outcomes=_outcomes(data.get("outcomes", []), fail))


def _outcomes(names, fail) -> list[str]:
    """What the study's report compares: outcomes of analysis.outcomes, none needing a --target
    (the report takes those with --metric NAME --target V)."""
    from analysis.outcomes import OUTCOMES

    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        fail(f"outcomes must be a list of outcome names, e.g. [\"test_acc\", \"train_time_s\"]; got {names!r}")
    for name in names:
        if name not in OUTCOMES:
            fail(f"unknown outcome {name!r}; choose one of: {', '.join(OUTCOMES)}")
        if OUTCOMES[name].needs_target:
            fail(f"outcome {name} needs a target; give it to the report: --metric {name} --target V")
    return list(dict.fromkeys(names))


def _levels_table(table: Mapping, what: str, fail) -> dict[str, list]:
    for key, levels in table.items():
        if not isinstance(levels, list) or not levels:
            fail(f"{what}.{key} must be a non-empty list of levels, e.g. {key} = [\"relu\", \"gelu\"]; got {levels!r}")
    return {key: list(levels) for key, levels in table.items()}


def _bundles(table: Mapping, axes: Mapping[str, list], fail) -> dict:
    """Bundle labels as the axis holds them: TOML table keys are text, an axis level may be 5 or true."""
    bundles = {}
    for key, levels in table.items():
        if key not in axes:
            fail(f"bundles.{key} is not an axis; bundles name what each level of an axis sets")
        if not isinstance(levels, dict) or not all(isinstance(v, dict) for v in levels.values()):
            fail(f"bundles.{key} must map each level to a table of keys, e.g. [bundles.{key}.sgd] optimizer = \"sgd\"")
        by_text = {_label_text(level): level for level in axes[key]}
        missing = [level for level in axes[key] if _label_text(level) not in levels]
        if missing:
            fail(f"bundles.{key} has no entry for level {missing[0]!r}")
        bundles[key] = {by_text.get(label, label): dict(keys) for label, keys in levels.items()}
    return bundles


def _label_text(level) -> str:
    return str(level).lower() if isinstance(level, bool) else str(level)


def _space(table: Mapping, fail) -> dict[str, tuple]:
    space = {}
    for key, entry in table.items():
        kind = entry[0] if isinstance(entry, list) and entry else None
        if kind not in SPACE_KINDS:
            fail(f"space.{key} must be one of {', '.join(SPACE_KINDS.values())}; got {entry!r}")
        args = entry[1:]
        if kind == "choice":
            if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
                fail(f"space.{key} must be {SPACE_KINDS[kind]}; got {entry!r}")
            space[key] = (kind, tuple(args[0]))
            continue
        numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)
        if len(args) != 2 or not numbers or not args[0] < args[1]:
            fail(f"space.{key} must be {SPACE_KINDS[kind]} with low < high; got {entry!r}")
        if kind == "loguniform" and args[0] <= 0:
            fail(f"space.{key}: a loguniform range must be above 0; got {entry!r}")
        if kind == "int" and not all(isinstance(a, int) for a in args):
            fail(f"space.{key}: an int range takes integers; got {entry!r}")
        space[key] = (kind, *args)
    return space


def study_data(study: Study) -> dict:
    """The study as the tables and values of its TOML file."""
    data = {"name": study.name, "description": study.description}
    if study.plugins:
        data["plugins"] = list(study.plugins)
    data.update(seeds=study.seeds, metric=study.metric, mode=study.mode, search=study.search)
    if study.outcomes:
        data["outcomes"] = list(study.outcomes)
    data["fixed"] = _no_nulls(study.fixed)
    if study.axes:
        data["axes"] = {k: list(v) for k, v in study.axes.items()}
        data["smoke_axes"] = {k: list(v) for k, v in study.smoke_axes.items()}
    if study.bundles:
        data["bundles"] = {k: {_label_text(label): _no_nulls(keys) for label, keys in b.items()}
                           for k, b in study.bundles.items()}
    if study.space:
        data["space"] = {k: [kind, list(args[0])] if kind == "choice" else [kind, *args]
                         for k, (kind, *args) in study.space.items()}
    return data


def _no_nulls(mapping: Mapping) -> dict:
    # TOML has no null: a key set to None is left out (None is every such key's default).
    return {k: list(v) if isinstance(v, tuple) else v for k, v in mapping.items() if v is not None}


def to_toml(study: Study, header: str | None = None) -> str:
    """The study as a study file; `header`, if given, as comment lines above it (how this run trains it)."""
    import tomlkit

    comments = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
    return comments + tomlkit.dumps(study_data(study))
