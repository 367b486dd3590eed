"""Optimizers and weight initialisations by name.

Weight decay is an option of every optimizer: L2 added to the gradient for
sgd, adam, rmsprop and cubic_adam (PyTorch's `weight_decay`), decoupled for
adamw, which is the one difference between adam and adamw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from common.errors import ConfigError
from trainables.activations import ACTIVATIONS, canonical_activation


class CubicAdam(torch.optim.Optimizer):
    """Adam with a third, bias-corrected moment of the gradient in the denominator.

    m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2,  u = b3 u + (1-b3) g^3
    step = lr * m_hat / (sqrt(v_hat) + eps * cbrt(u_hat) + eps)
    with x_hat = x / (1 - b^t). With b3 close to 1 the cubic term is a slow,
    sign-carrying estimate of gradient skew; eps scales its influence.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.999987),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["u"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v, u = state["m"], state["v"], state["u"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                u.mul_(b3).add_(g.pow(3), alpha=1 - b3)
                m_hat = m / (1 - b1**t)
                v_hat = v / (1 - b2**t)
                u_hat = u / (1 - b3**t)
                cbrt_u = u_hat.sign() * u_hat.abs().pow(1.0 / 3.0)
                p.addcdiv_(m_hat, v_hat.sqrt().add_(cbrt_u, alpha=eps).add_(eps), value=-lr)
        return loss


@dataclass(frozen=True)
class OptimizerSpec:
    build: Callable[..., torch.optim.Optimizer]  # (params, lr, weight_decay, momentum, nesterov)
    # the config keys it reads, which a parameter group may set for itself (fused members)
    keys: tuple[str, ...] = ("lr", "weight_decay")


def _sgd(params, lr, weight_decay, momentum, nesterov):
    if nesterov and momentum <= 0:
        raise ConfigError("nesterov=true needs momentum > 0; set momentum=0.9 or nesterov=false")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, fused=True)


# SGD, Adam and AdamW take PyTorch's fused kernels (fused=True): one pass over each parameter,
# its gradient and its state per step instead of one pass per elementwise op, on the CPU as on
# CUDA. Same update, rounded differently in the last bits. An Adam-bound trial gains most
# (the measurements: benchmarks/README.md, loop overhead).
# RMSprop has no fused kernel; CubicAdam is this module's own.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(_sgd, keys=("lr", "weight_decay", "momentum", "nesterov")),
    "adam": OptimizerSpec(lambda params, lr, weight_decay, momentum, nesterov:
                          torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)),
    "adamw": OptimizerSpec(lambda params, lr, weight_decay, momentum, nesterov:
                           torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)),
    "rmsprop": OptimizerSpec(lambda params, lr, weight_decay, momentum, nesterov:
                             torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)),
    "cubic_adam": OptimizerSpec(lambda params, lr, weight_decay, momentum, nesterov:
                                CubicAdam(params, lr=lr, weight_decay=weight_decay)),
}


def make_optimizer(name: str, params, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0, nesterov: bool = False):
    """`params` as torch.optim takes them: tensors, or parameter groups whose own keys override these."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name].build(params, lr, weight_decay, momentum, nesterov)


def member_groups(name: str, members: list[dict], parameters_of) -> list[dict]:
    """torch.optim parameter groups for the members of one trial: one group per run of
    consecutive members with the same hyperparameters, over `parameters_of(first, end)`, the
    tensors that hold members first..end-1 (one member's or one stacked slice's), so every
    member is stepped with its own lr, weight decay and momentum by PyTorch's own optimizer."""
    keys = OPTIMIZERS[name].keys
    runs: list[list[int]] = []  # [first, end) per run
    for i, member in enumerate(members):
        if runs and all(member[k] == members[runs[-1][0]][k] for k in keys):
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [{"params": parameters_of(first, end), **{k: members[first][k] for k in keys}} for first, end in runs]


# --- weight initialisation -------------------------------------------------

def _xavier_normal(w):
    nn.init.xavier_normal_(w)


def _xavier_uniform(w):
    nn.init.xavier_uniform_(w)


def _he_normal(w):
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def _he_uniform(w):
    nn.init.kaiming_uniform_(w, nonlinearity="relu")


def _normal(w):
    # std 1 regardless of fan-in: the classic bad init whose exploding or
    # saturated activations studies want to show.
    nn.init.normal_(w, mean=0.0, std=1.0)


INITS: dict[str, Callable[[torch.Tensor], None] | None] = {
    "default": None,  # PyTorch's own per-layer default (Kaiming-uniform with a=sqrt(5))
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
    "he_normal": _he_normal,
    "he_uniform": _he_uniform,
    "normal": _normal,
    "auto": None,  # resolved per activation by `resolve_init`
}

_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def resolve_init(name: str, activation: str) -> str:
    """`auto` is He for rectifier-like activations and Xavier otherwise."""
    if name not in INITS:
        raise ConfigError(f"unknown init {name!r}; choose one of: {', '.join(INITS)}")
    if name == "auto":
        return "he_normal" if ACTIVATIONS[canonical_activation(activation)].relu_like else "xavier_normal"
    return name


def init_weights(model: nn.Module, name: str, activation: str) -> None:
    """Re-initialise the weights of every linear and conv layer; biases start at zero.

    Embeddings and BatchNorm keep their defaults (N(0, 1) rows; scale 1, shift 0).
    """
    init = INITS[resolve_init(name, activation)]
    if init is None:
        return
    for module in model.modules():
        if isinstance(module, _INIT_LAYERS):
            init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["CubicAdam", "OPTIMIZERS", "INITS", "make_optimizer", "member_groups", "init_weights", "resolve_init", "count_params"]
