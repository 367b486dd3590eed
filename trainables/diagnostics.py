"""Gradient and unit diagnostics (configs `grad_norms` and `diagnostics`), per member, each epoch.

Measured after each epoch's training on one fixed evaluation batch (the first DIAGNOSTIC_BATCH
validation samples) in eval mode (BatchNorm's running statistics, no dropout: no random draw, so
training goes on exactly as it would without them), each member on its own, so epochs and members
are compared on the same inputs:
- `grad_norm_first`, `grad_norm_last`: the norm of the cross-entropy's gradient on the batch with
  respect to the first and the last weight layer (vanishing gradients: the first far below the last);
- with `diagnostics`, also the hidden units: the outputs of the modules made by
  trainables.make_activation (so a plugin's model has them too); a unit is a feature of a dense
  layer, or a channel of a convolution at every position:
  - `dead_fraction`: the share of hidden units whose activation is below DEAD_BELOW in magnitude on
    every sample of the batch (a ReLU unit that no input switches on);
  - `saturated_fraction`: the share of hidden units' values within SATURATED_WITHIN of the range of
    a bounded activation (sigmoid, tanh: trainables.activations) of one of its bounds, each unit
    weighted equally; a unit of an unbounded activation never saturates.

One forward and backward pass of the batch per member and epoch, a fixed cost (mostly overhead):
under 1.5% of an epoch on a CPU, but 3 to 3.7% of MNIST-1D's 11 to 38 ms epochs
(benchmarks/README.md, diagnostics cost).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.activations import ACTIVATIONS

DIAGNOSTIC_BATCH = 128  # its cost is mostly overhead: a batch of 32 costs about what 128 does (benchmarks/README.md)
DEAD_BELOW = 1e-6
SATURATED_WITHIN = 0.01  # of the activation's range, from either bound


def first_and_last_weights(model: nn.Module) -> tuple[str, str]:
    """The weights of the first and the last linear or conv layer (gradient norms, histograms)."""
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    return f"{layers[0]}.weight", f"{layers[-1]}.weight"


@dataclass(frozen=True)
class Layout:
    """What the diagnostics look at in a model, found once per model (its modules do not change)."""

    activations: list[tuple[nn.Module, tuple[float, float] | None]]  # make_activation's modules, with their bounds
    first: str  # the first and the last weight layer's weight
    last: str


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layout(model: nn.Module) -> Layout:
    if model not in _LAYOUTS:
        activations = [(m, ACTIVATIONS[m.hpstudy_activation].bounds) for m in model.modules()
                       if hasattr(m, "hpstudy_activation")]
        _LAYOUTS[model] = Layout(activations, *first_and_last_weights(model))
    return _LAYOUTS[model]


class UnitCounts:
    """Hidden units seen by forward hooks in one forward pass: how many, dead, saturated (summed as
    tensors: one conversion at the end, not one per layer)."""

    def __init__(self):
        self.units, self.dead, self.saturated = 0, [], []

    def hook(self, bounds: tuple[float, float] | None):
        def observe(module, inputs, output):
            values = output.detach()
            units = values.shape[1]  # a feature, or a channel at every position
            self.units += units
            magnitude = values.abs()
            # a convolution's (samples, units, positions) as (units, samples x positions): a copy, then a reduction
            # over its rows, is faster than one over dims 0 and 2
            largest = magnitude.amax(0) if values.dim() == 2 else magnitude.transpose(0, 1).reshape(units, -1).amax(1)
            self.dead.append((largest < DEAD_BELOW).sum())
            if bounds is not None:  # within the margin of either bound: at least half the range minus it from the middle
                low, high = bounds
                middle, reach = (low + high) / 2, (high - low) / 2 - SATURATED_WITHIN * (high - low)
                # every unit has as many values (samples x positions): its share, summed over units, is the layer's
                # share of saturated values times its units
                self.saturated.append(((values - middle).abs() >= reach).float().mean() * units)

        return observe

    def fractions(self) -> dict[str, float]:
        if not self.units:  # a model with no make_activation modules
            return {"dead_fraction": math.nan, "saturated_fraction": math.nan}
        saturated = float(sum(self.saturated)) if self.saturated else 0.0
        return {"dead_fraction": int(sum(self.dead)) / self.units, "saturated_fraction": saturated / self.units}


def member_diagnostics(engine, x: torch.Tensor, y: torch.Tensor, units: bool) -> list[dict[str, float]]:
    """Each member's gradient norms (and, `units`, its unit fractions) on the batch (x prepared, y)."""
    engine.eval()
    rows = []
    for r in range(len(engine.seeds)):
        member = engine.member(r)
        parts = layout(member.module)
        counts = UnitCounts()
        handles = [m.register_forward_hook(counts.hook(bounds)) for m, bounds in parts.activations] if units else []
        try:
            loss = F.cross_entropy(member.forward(x).float(), y)
        finally:
            for handle in handles:
                handle.remove()
        # autograd.grad, not backward: the parameters' .grad (the optimizer's) stays as training left it
        grad_first, grad_last = torch.autograd.grad(loss, [member.params[parts.first], member.params[parts.last]])
        row = {"grad_norm_first": grad_first.norm().item(), "grad_norm_last": grad_last.norm().item()}
        rows.append({**row, **(counts.fractions() if units else {})})
    return rows
