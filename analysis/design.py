"""What a study compares, read from the study spec stored with its results.

The factors are the spec's axes, in order; a bundle label (an optimizer level that
also sets lr and momentum) is one factor, and the keys it sets are never factors of
their own. `trainable` (the dataset) is a stratum: levels are compared within each
dataset, never pooled across. Each factor's baseline is its axis's first level
unless the user names another (`--baseline factor=level`).

Results without a spec (written by something else) fall back to inference: every
config column that takes a few values is a factor, with a conventional baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from analysis.load import NOT_FACTORS, Results
from common.cli import parse_value
from common.errors import UserError

STRATA = ("trainable",)  # compared within, never pooled across
MAX_LEVELS = 12  # more distinct values than this: a continuous parameter (an Optuna search), not a grid axis
# What an Optuna search samples when its spec names no space (results written before the
# spec recorded it: hpstudy's Optuna preset, study/studies/optuna.toml).
SEARCHED = ("lr", "weight_decay", "dropout", "activation", "batchnorm")
# Without a spec, the level others are compared with: each factor's usual default.
CONVENTIONAL_BASELINES = {"activation": "relu", "batchnorm": False, "optimizer": "sgd", "regularization": "none",
                          "init": "default"}


@dataclass(frozen=True)
class Factor:
    name: str
    levels: tuple  # in the study's order, as the values of the results column
    baseline: object


@dataclass(frozen=True)
class Design:
    factors: tuple[Factor, ...]
    strata: tuple[str, ...]  # columns compared within (the dataset, where a study has several)
    search: str  # "grid" or "optuna"
    from_spec: bool
    space: tuple[str, ...] = SEARCHED  # what an Optuna search samples

    def searched(self, runs: pd.DataFrame) -> list[str]:
        """The parameters that vary across `runs`: the factors, or what an Optuna search sampled."""
        return self.names or [c for c in self.space if c in runs and runs[c].nunique() > 1]

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.factors]


def _column_value(level, present: list):
    """A spec level as the results column holds it: lists are stored as JSON text."""
    if isinstance(level, (list, tuple, dict)):
        level = json.dumps(level)
    return next((v for v in present if v == level or str(v) == str(level)), level)


def _sorted_levels(series: pd.Series) -> list:
    return sorted(series.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def _from_spec(results: Results) -> tuple[list[tuple[str, list]], str]:
    spec = results.spec
    search = spec.get("search") or ("optuna" if str(spec.get("name", "")).startswith("optuna_") else "grid")
    axes = [(key, list(levels)) for key, levels in spec.get("axes", {}).items()
            if key != "seed" and key in results.trials.columns]
    return axes, search


def _inferred(results: Results) -> list[tuple[str, list]]:
    trials = results.trials
    return [(c, _sorted_levels(trials[c])) for c in trials.columns
            if c not in NOT_FACTORS and 1 < trials[c].nunique() <= MAX_LEVELS]


def parse_baselines(items: list[str]) -> dict[str, str]:
    """--baseline factor=level (repeatable) -> {factor: level text}."""
    out = {}
    for item in items or []:
        factor, sep, level = item.partition("=")
        if not sep or not factor.strip() or not level.strip():
            raise UserError(f"--baseline takes factor=level, got {item!r}; e.g. --baseline activation=relu")
        out[factor.strip()] = level.strip()
    return out


def _match_level(text: str, levels: list):
    value = parse_value(text)
    for level in levels:
        if level == value or str(level) == text or (isinstance(level, str) and level == str(value)):
            return level
    return None


def study_design(results: Results, baselines: dict[str, str] | None = None) -> Design:
    """The factors, levels, baselines and strata of the study that wrote `results`."""
    trials = results.trials
    if results.spec:
        axes, search = _from_spec(results)
        from_spec = True
    else:
        axes, search, from_spec = _inferred(results), "grid", False
    strata = tuple(s for s in STRATA if s in trials.columns and trials[s].nunique() > 1)
    factors = []
    for name, spec_levels in axes:
        if name in STRATA:
            continue
        present = _sorted_levels(trials[name])
        levels = [_column_value(level, present) for level in spec_levels] if from_spec else present
        levels += [v for v in present if v not in levels]  # values the spec did not name (a changed axis)
        if from_spec:
            baseline = levels[0]
        else:
            conventional = CONVENTIONAL_BASELINES.get(name)
            baseline = conventional if conventional in levels else levels[0]
        factors.append(Factor(name, tuple(levels), baseline))
    for name, text in (baselines or {}).items():
        known = {f.name: f for f in factors}
        if name not in known:
            raise UserError(f"--baseline {name}={text}: {name} is not a factor of study {results.name}; "
                            f"factors: {', '.join(known) or 'none'}")
        level = _match_level(text, list(known[name].levels))
        if level is None:
            raise UserError(f"--baseline {name}={text}: {text} is not a level of {name}; "
                            f"levels: {', '.join(map(str, known[name].levels))}")
        factors[factors.index(known[name])] = Factor(name, known[name].levels, level)
    # format 1: an Optuna spec written before it recorded its space
    space = tuple(results.spec.get("space") or (SEARCHED if results.format == 1 else ()))
    return Design(tuple(factors), strata, search, from_spec, space)
