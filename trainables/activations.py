"""Activation functions by name.

Every call of `make_activation` builds a fresh module, so a model that asks for
one activation per layer gets independent parameters (PReLU learns one slope per
layer, never one shared across layers by accident).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from common.errors import ConfigError


@dataclass(frozen=True)
class ActivationSpec:
    factory: Callable[[], nn.Module]
    # Rectifier-like units keep about half the variance: He init suits them,
    # saturating ones (sigmoid, tanh) and SELU are Xavier territory (`init=auto`).
    relu_like: bool
    # The range of a bounded activation: its units saturate near a bound (config `diagnostics`).
    bounds: tuple[float, float] | None = None


ACTIVATIONS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec(nn.ReLU, relu_like=True),
    "leaky_relu": ActivationSpec(lambda: nn.LeakyReLU(0.01), relu_like=True),
    "prelu": ActivationSpec(nn.PReLU, relu_like=True),
    "elu": ActivationSpec(nn.ELU, relu_like=True),
    "celu": ActivationSpec(nn.CELU, relu_like=True),
    "selu": ActivationSpec(nn.SELU, relu_like=False),
    "gelu": ActivationSpec(nn.GELU, relu_like=True),
    "gelu_tanh": ActivationSpec(lambda: nn.GELU(approximate="tanh"), relu_like=True),
    "silu": ActivationSpec(nn.SiLU, relu_like=True),
    "mish": ActivationSpec(nn.Mish, relu_like=True),
    "sigmoid": ActivationSpec(nn.Sigmoid, relu_like=False, bounds=(0.0, 1.0)),
    "tanh": ActivationSpec(nn.Tanh, relu_like=False, bounds=(-1.0, 1.0)),
    "softplus": ActivationSpec(nn.Softplus, relu_like=True),
}

ALIASES: dict[str, str] = {"swish": "silu"}


def canonical_activation(name: str) -> str:
    """The registry name for `name` (resolving aliases); ConfigError if unknown."""
    name = ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        choices = ", ".join([*ACTIVATIONS, *ALIASES])
        raise ConfigError(f"unknown activation {name!r}; choose one of: {choices}")
    return name


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for `name` (any of ACTIVATIONS, or an alias such as `swish`).

    A plugin's model builder calls it with `config["activation"]`, so the study's activation
    axis reaches the user's own model; an unknown name is a ConfigError listing the valid ones.
    The module carries its name (`hpstudy_activation`): the unit diagnostics (config `diagnostics`,
    trainables.diagnostics) find a model's hidden activations by it."""
    canonical = canonical_activation(name)
    module = ACTIVATIONS[canonical].factory()
    module.hpstudy_activation = canonical
    return module
