"""TRAINABLES: name -> spec (dataset, model builder, defaults), and config validation.

A trial config is the common keys (trainables.keys, the one table of them) plus the keys its
trainable adds. `resolve_config` fills in defaults and rejects unknown keys and
bad values with one line that lists the valid choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from common.errors import ConfigError
from trainables import models
from trainables.activations import canonical_activation
from trainables.data import Splits, load_word_vectors
from trainables.keys import CHECKS, COMMON_DEFAULTS, FUSIBLE_KEYS


@dataclass(frozen=True)
class TrainableSpec:
    dataset: str
    build: Callable[[dict, Splits], nn.Module]  # (resolved config, data) -> model
    defaults: Mapping[str, object] = field(default_factory=dict)  # overrides of COMMON_DEFAULTS
    extra: Mapping[str, object] = field(default_factory=dict)  # this trainable's own keys and defaults
    # how many drop probabilities the model takes (a per-layer `dropout` list must have as many)
    dropout_layers: Callable[[dict], int] = lambda c: 1
    # its own keys (in `extra`) that only change values, not shapes: members of a fused trial may differ in them
    fusible: tuple[str, ...] = ()


def fusible_keys(trainable: str) -> tuple[str, ...]:
    return (*FUSIBLE_KEYS, *get_spec(trainable).fusible)



def _n_pixels(splits: Splits) -> int:
    return math.prod(splits.train_x.shape[1:])


def _mlp_hidden(c: dict) -> list[int]:
    return [c["width"]] * c["depth"] if c["depth"] is not None else c["hidden"]


def _build_mlp(c: dict, s: Splits) -> nn.Module:
    hidden = _mlp_hidden(c)
    return models.mlp(_n_pixels(s), hidden, s.num_classes,
                      activation=c["activation"], batchnorm=c["batchnorm"], dropout=c["dropout"])


def _ablations(c: dict) -> dict:
    return dict(activation=c["activation"], batchnorm=c["batchnorm"], dropout=c["dropout"])


def _build_window_mlp(c: dict, s: Splits) -> nn.Module:
    vectors = load_word_vectors(c["embeddings"], s.vocab, c["embedding_dim"]) if c["embeddings"] else None
    return models.window_mlp(len(s.vocab), s.num_classes, window=s.train_x.shape[1], embedding_dim=c["embedding_dim"],
                             hidden=c["width"], embeddings=vectors, **_ablations(c))


MLP_KEYS = {"hidden": (512, 1024, 128), "depth": None, "width": None}

TRAINABLES: dict[str, TrainableSpec] = {
    "cifar10_lenet": TrainableSpec(
        "cifar10",
        lambda c, s: models.lenet5(in_channels=s.train_x.shape[1], num_classes=s.num_classes, **_ablations(c)),
        defaults={"optimizer": "sgd", "lr": 0.1, "batch_size": 128, "epochs": 25},
        dropout_layers=lambda c: 2,
    ),
    "stl10_conv6": TrainableSpec(
        "stl10",
        lambda c, s: models.conv6(in_channels=s.train_x.shape[1], num_classes=s.num_classes, **_ablations(c)),
        defaults={"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64, "epochs": 30},
    ),
    "twitter_pos_mlp": TrainableSpec(
        "twitter_pos",
        _build_window_mlp,
        defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "dropout": 0.2, "epochs": 30},
        extra={"width": 256, "embedding_dim": 50, "embeddings": None},
        dropout_layers=lambda c: 2,
    ),
    "mnist_mlp": TrainableSpec(
        "mnist", _build_mlp,
        defaults={"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 128, "epochs": 10},
        extra={**MLP_KEYS, "hidden": (200, 100)},
        dropout_layers=lambda c: len(_mlp_hidden(c)),
    ),
    "fashion_mnist_mlp": TrainableSpec(
        "fashion_mnist", _build_mlp,
        defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 10},
        extra={**MLP_KEYS, "hidden": (128, 128)},
        dropout_layers=lambda c: len(_mlp_hidden(c)),
    ),
    "mnist1d_mlp": TrainableSpec(
        "mnist1d", _build_mlp,
        defaults={"optimizer": "adam", "lr": 1e-2, "batch_size": 100, "epochs": 60},
        extra={**MLP_KEYS, "hidden": (100, 100)},
        dropout_layers=lambda c: len(_mlp_hidden(c)),
    ),
    "mnist1d_cnn": TrainableSpec(
        "mnist1d",
        lambda c, s: models.cnn1d(length=s.train_x.shape[1], channels=c["channels"], num_classes=s.num_classes, **_ablations(c)),
        defaults={"optimizer": "adam", "lr": 1e-2, "batch_size": 100, "epochs": 60},
        extra={"channels": 25},
    ),
}


def get_spec(name: str) -> TrainableSpec:
    if name not in TRAINABLES:
        raise ConfigError(f"unknown trainable {name!r}; choose one of: {', '.join(TRAINABLES)}")
    return TRAINABLES[name]


def resolve_config(config: Mapping) -> dict:
    """The full config of one trial: defaults filled in, every value checked.

    A fused trial's `members` (a list of dicts of fusible keys, one per member) is kept as
    given, after each member's config is checked the same way; a trial without it has no
    `members` key."""
    config = dict(config)
    members = config.pop("members", None)
    resolved = _resolve_one(config)
    if members is None:
        return resolved
    if not isinstance(members, (list, tuple)) or not members or not all(isinstance(m, Mapping) for m in members):
        raise ConfigError(f"members must be a non-empty list of tables of config keys, got {members!r}")
    allowed = fusible_keys(resolved["trainable"])
    for member in members:
        shared = sorted(set(member) - set(allowed))
        if shared:
            raise ConfigError(f"members may differ only in {', '.join(allowed)}; {', '.join(shared)} sets the "
                              "computation's shape or steps, so it must be one value for the whole trial")
    if resolved["compile"] or resolved["channels_last"]:
        raise ConfigError("compile and channels_last apply to trials of one run; with members set "
                          "compile=false and channels_last=false")
    for member in members:
        _resolve_one({**config, **member})
    resolved["members"] = [dict(m) for m in members]
    return resolved


def member_configs(cfg: Mapping) -> list[dict]:
    """The resolved configs of the runs one resolved trial config trains together: its `members`
    (configurations or seeds of one, fused), or itself alone."""
    shared = {k: v for k, v in cfg.items() if k != "members"}
    if cfg.get("members"):
        return [_resolve_one({**shared, **member}) for member in cfg["members"]]
    return [shared]


def seed_members(first: int, count: int) -> list[dict]:
    """The `members` of a trial that trains seeds first .. first+count-1 of one configuration."""
    return [{"seed": first + i} for i in range(count)]


def _resolve_one(config: dict) -> dict:
    config = dict(config)
    if "trainable" not in config:
        raise ConfigError(f"config has no 'trainable' key; choose one of: {', '.join(TRAINABLES)}")
    spec = get_spec(config["trainable"])
    resolved = {"trainable": config.pop("trainable"), **COMMON_DEFAULTS, **spec.defaults, **spec.extra}
    unknown = sorted(set(config) - set(resolved))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} for {resolved['trainable']}; "
                          f"valid keys: {', '.join(k for k in resolved if k != 'trainable')}")
    resolved.update(config)
    for key, value in resolved.items():
        if key in CHECKS:
            CHECKS[key](key, value)
    resolved["activation"] = canonical_activation(resolved["activation"])
    for key in ("lr", "weight_decay", "momentum"):
        resolved[key] = float(resolved[key])
    if isinstance(resolved.get("hidden"), tuple):
        resolved["hidden"] = list(resolved["hidden"])
    if "depth" in resolved and (resolved["depth"] is None) != (resolved["width"] is None):
        raise ConfigError("depth and width go together (hidden = [width] * depth); set both or neither")
    if isinstance(resolved["dropout"], (list, tuple)):
        resolved["dropout"] = [float(p) for p in resolved["dropout"]]
        layers = spec.dropout_layers(resolved)
        if len(resolved["dropout"]) != layers:
            raise ConfigError(f"dropout lists {len(resolved['dropout'])} probabilities but {resolved['trainable']} "
                              f"has {layers} dropout layer(s); give one number or a list of {layers}")
    else:
        resolved["dropout"] = float(resolved["dropout"])
    if resolved["nesterov"] and resolved["momentum"] <= 0:
        raise ConfigError("nesterov=true needs momentum > 0; set momentum=0.9 or nesterov=false")
    return resolved
