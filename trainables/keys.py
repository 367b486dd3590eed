"""The config keys of one trial, each written once: its default, its check, whether fused members
may differ in it, and its role. Everything else derives from this table: the registry's defaults
and validation (trainables.registry), the keys fused trials may vary (`FUSIBLE_KEYS`), the
columns the analysis never takes for a factor (`NOT_FACTORS`), and the docs' key reference.

Torch-free (the names checks compare with load on first use): the analysis imports this module.

Adding a key: one `Key` entry below (a trainable's own key: its default goes in the trainable's
`extra`, its entry here with `common=False`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from common.errors import ConfigError

# What a key is to a study: a "factor" a study may vary and the analysis compares; "seed", the
# replication; "mechanics": how a run is computed or recorded, which never changes what it
# measures (the analysis never takes it for a factor).
ROLES = ("factor", "seed", "mechanics")

# How a trial's members combine into the one metric a search sees (config `aggregate`).
AGGREGATES: dict[str, Callable[[np.ndarray], np.floating]] = {"mean": np.mean, "median": np.median, "min": np.min}


@dataclass(frozen=True)
class Key:
    default: object
    check: Callable[[str, object], None]
    doc: str
    role: str = "factor"
    fusible: bool = False  # members of one fused trial may differ in it (it changes values, not shapes or steps)
    common: bool = True  # every trainable has it (False: some trainables' own, default in their `extra`)


# --- checks: (key, value) -> None, or ConfigError naming the key and what it takes --------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_int(key, v):
    if not _is_int(v) or v <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {v!r}")


def optional_positive_int(key, v):
    if v is not None:
        positive_int(key, v)


def boolean(key, v):
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {v!r}")


def choice(choices: Callable[[], list] | list):
    """One of `choices` (or of what `choices()` lists: names that live in torch-using modules)."""
    def names() -> list:
        return choices() if callable(choices) else list(choices)

    def check(key, v):
        if v not in names():
            raise ConfigError(f"unknown {key} {v!r}; choose one of: {', '.join(names())}")
    check.names = names  # what the docs' key reference lists
    return check


def _names(module: str, attribute: str) -> Callable[[], list]:
    return lambda: list(getattr(importlib.import_module(module), attribute))


def positive_number(key, v):
    if not _is_number(v) or v <= 0:
        raise ConfigError(f"{key} must be a positive number, got {v!r}")


def non_negative(key, v):
    if not _is_number(v) or v < 0:
        raise ConfigError(f"{key} must be a number >= 0, got {v!r}")


def drop_probability(key, v):
    values = list(v) if isinstance(v, (list, tuple)) else [v]
    for p in values:
        if not _is_number(p) or not 0 <= p < 1:
            raise ConfigError(f"dropout must lie in [0, 1) (a drop probability, or a list of one per hidden layer), got {v!r}")


def momentum(key, v):
    if not _is_number(v) or not 0 <= v < 1:
        raise ConfigError(f"momentum must lie in [0, 1), got {v!r}")


def seed(key, v):
    if not _is_int(v) or v < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {v!r}")


def activation(key, v):
    if not isinstance(v, str):
        raise ConfigError(f"activation must be a name, got {v!r}")
    importlib.import_module("trainables.activations").canonical_activation(v)


activation.names = _names("trainables.activations", "ACTIVATIONS")


def layer_widths(key, v):
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or not all(_is_int(n) and n > 0 for n in v):
        raise ConfigError(f"{key} must be a non-empty list of positive layer widths, e.g. [512, 1024, 128], got {v!r}")


def optional_path(key, v):
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{key} must be a file path or null, got {v!r}")


# --- the table --------------------------------------------------------------------------------

KEYS: Mapping[str, Key] = MappingProxyType({
    "activation": Key("relu", activation, "the hidden layers' activation function (trainables.activations)"),
    "batchnorm": Key(False, boolean, "BatchNorm after each hidden layer"),
    "lr": Key(0.01, positive_number, "learning rate", fusible=True),
    "weight_decay": Key(0.0, non_negative, "L2 penalty (decoupled for AdamW)", fusible=True),
    "momentum": Key(0.0, momentum, "SGD and RMSprop momentum", fusible=True),
    "nesterov": Key(False, boolean, "Nesterov momentum (SGD; needs momentum > 0)", fusible=True),
    "dropout": Key(0.0, drop_probability, "drop probability, or a list of one per hidden layer", fusible=True),
    "init": Key("default", choice(_names("trainables.optim", "INITS")), "weight initialisation", fusible=True),
    "seed": Key(0, seed, "the run's seed: its initial weights, data order, augmentation and dropout masks",
                role="seed", fusible=True),
    "optimizer": Key("sgd", choice(_names("trainables.optim", "OPTIMIZERS")), "the optimizer"),
    "batch_size": Key(128, positive_int, "training batch size"),
    "epochs": Key(10, positive_int, "epochs to train", role="mechanics"),
    "augment": Key(False, boolean, "random crop and flip, for the image datasets"),
    "max_train_samples": Key(None, optional_positive_int, "cap the training set (smoke runs); null: all of it",
                             role="mechanics"),
    "max_eval_samples": Key(None, optional_positive_int, "cap the validation and test sets (smoke runs)",
                            role="mechanics"),
    "grad_norms": Key(False, boolean, "record the first and last layer's gradient norms each epoch (on a fixed batch)",
                      role="mechanics"),
    "diagnostics": Key(False, boolean, "gradient norms and the dead and saturated shares of hidden units each epoch "
                       "(trainables.diagnostics)", role="mechanics"),
    "precision": Key("fp32", choice(["fp32", "bf16"]), "fp32, or bf16 autocast", role="mechanics"),
    "channels_last": Key(False, boolean, "channels-last memory format (image models, trials of one run)",
                         role="mechanics"),
    "compile": Key(False, boolean, "torch.compile the model: pays on a GPU for long trials; costs ~30 s on a CPU",
                   role="mechanics"),
    "aggregate": Key("mean", choice(list(AGGREGATES)),
                     "how a fused trial's members combine into the metric a search optimises: mean, median, min",
                     role="mechanics"),
    "member_engine": Key("auto", choice(["auto", "stacked", "looped"]),
                         "how a trial of K > 1 members runs them: stacked (one vmapped computation), looped (K plain "
                         "models each step) or auto (trainables.engines.choose_engine)", role="mechanics"),
    # some trainables' own keys (defaults in their `extra`, trainables.registry)
    "hidden": Key(None, layer_widths, "MLP hidden layer widths", common=False),
    "depth": Key(None, optional_positive_int, "MLP depth (with width: hidden = [width] * depth)", common=False),
    "width": Key(None, optional_positive_int, "hidden width (MLP with depth; the window MLP's layer)", common=False),
    "channels": Key(None, positive_int, "1-D CNN channels", common=False),
    "embedding_dim": Key(None, positive_int, "word embedding size (window MLP)", common=False),
    "embeddings": Key(None, optional_path, "pretrained word vectors file, or null (window MLP)", common=False),
})

COMMON_DEFAULTS: Mapping[str, object] = MappingProxyType({k: key.default for k, key in KEYS.items() if key.common})
CHECKS: Mapping[str, Callable[[str, object], None]] = MappingProxyType({k: key.check for k, key in KEYS.items()})
FUSIBLE_KEYS: tuple[str, ...] = tuple(k for k, key in KEYS.items() if key.fusible)
# config columns the analysis never takes for factors; "replicates" is a key results of format 1 hold
NOT_FACTORS: frozenset[str] = frozenset({k for k, key in KEYS.items() if key.role != "factor"} | {"replicates"})
