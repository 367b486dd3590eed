"""What a study is: `Study`, data only (which trainable(s), fixed config, axes, seeds, search).

Some levels set several keys at once (an optimizer with its learning rate, a
"regularization" level with weight decay or dropout): those axes are listed in
`bundles`, label -> the config keys that label stands for. The label itself is
kept as a column of the results so analysis can group by it.

Studies are written as TOML files (study.study_file); the built-in presets are such
files shipped in study/studies/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from common.errors import ConfigError

SMOKE_DATA = {"max_train_samples": 256, "max_eval_samples": 128}
SMOKE_EPOCHS = 2


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    fixed: Mapping[str, object]  # config shared by every trial (includes `trainable` unless it is an axis)
    axes: Mapping[str, tuple]  # grid axes, besides the seed
    seeds: int
    smoke_axes: Mapping[str, tuple]  # a handful of trials for --smoke
    bundles: Mapping[str, Mapping[object, Mapping[str, object]]] = field(default_factory=dict)
    metric: str = "val_acc"
    mode: str = "max"
    search: str = "grid"  # "grid": every axis combination x seeds; "optuna": adaptive sampling, one seed each
    # An Optuna search's space: config key -> (distribution, *arguments), see study.spaces.DISTRIBUTIONS
    space: Mapping[str, tuple] = field(default_factory=dict)
    # Modules (names, or absolute .py paths) that register the trainables and datasets the study uses
    plugins: tuple[str, ...] = ()
    # What its report compares (analysis.outcomes), the first the primary; () for test accuracy alone
    outcomes: tuple[str, ...] = ()

    def trainables(self) -> list[str]:
        return list(self.axes.get("trainable", ())) or ([self.fixed["trainable"]] if "trainable" in self.fixed else [])

    def datasets(self) -> list[str]:
        from trainables.registry import get_spec

        return sorted({get_spec(t).dataset for t in self.trainables()})

    def expand(self, config: Mapping) -> dict:
        """The trial config `fit` takes: bundle labels replaced by the keys they stand for (in a
        fused trial's shared keys and in each of its members)."""
        config = self._expand_labels(config)
        if "members" in config:
            config["members"] = [self._expand_labels(member) for member in config["members"]]
        return config

    def _expand_labels(self, config: Mapping) -> dict:
        config = dict(config)
        for key, levels in self.bundles.items():
            if key in config:
                label = config[key]
                if label not in levels:
                    raise ConfigError(f"unknown {key} level {label!r} in study {self.name}; "
                                      f"choose one of: {', '.join(map(str, levels))}")
                del config[key]  # a pure label (regularization) vanishes; others are set by their level
                config.update(levels[label])
        return config

    def spec(self) -> dict:
        """A JSON-able description, stored with the results."""
        return {"name": self.name, "description": self.description, "fixed": dict(self.fixed),
                "axes": {k: list(v) for k, v in self.axes.items()}, "seeds": self.seeds,
                "bundles": {k: {label: dict(v) for label, v in b.items()} for k, b in self.bundles.items()},
                "metric": self.metric, "mode": self.mode, "search": self.search,
                "space": {k: list(v) for k, v in self.space.items()}, "plugins": list(self.plugins),
                **({"outcomes": list(self.outcomes)} if self.outcomes else {})}


def make_study(name, description, fixed, axes, seeds, smoke_axes, bundles=None, *, metric="val_acc", mode="max",
               search="grid", space=None, plugins=(), outcomes=()) -> Study:
    """A Study from plain dicts and lists (frozen, axes as tuples)."""
    return Study(name, description, _frozen(fixed), _frozen({k: tuple(v) for k, v in axes.items()}), seeds,
                 _frozen({k: tuple(v) for k, v in smoke_axes.items()}),
                 _frozen({k: _frozen({label: _frozen(v) for label, v in b.items()}) for k, b in (bundles or {}).items()}),
                 metric=metric, mode=mode, search=search,
                 space=_frozen({k: tuple(v) for k, v in (space or {}).items()}), plugins=tuple(plugins),
                 outcomes=tuple(outcomes))
