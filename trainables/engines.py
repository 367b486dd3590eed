"""Model engines: the models the one epoch loop (trainables.loop.fit) trains.

An engine holds K >= 1 members of one architecture. Member r is one run of the study:
its own config (trainables.registry.member_configs: K seeds of one configuration, or K
fused configurations that differ in lr, weight decay, momentum, dropout, init, seed), its
model built and initialised from its own seed. The loop sees one interface whatever K is:
the `Engine` protocol below.

`SingleModel` is one plain module (with `compile` and `channels_last`);
`LoopedModels` runs K plain modules one after another in each step, where stacking
loses on a CPU (config `member_engine`, see `choose_engine`); `StackedModel` runs K
members as one batched computation:
`torch.func.stack_module_state` stacks the K models' parameters and buffers along
a new leading dimension and `vmap` runs the one model definition over them, so
every model in the registry (convolutions, BatchNorm, dropout, embeddings) is
batched without a rewrite. Each member's loss reaches only its own slice. The
optimizers here are elementwise, so PyTorch's own optimizer over a slice of the
stacks is that member's optimizer: members that share hyperparameters share a
parameter group over their slice, and members with their own lr or weight decay
get groups of their own (trainables.optim.member_groups).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trainables import data as datasets
from trainables.optim import count_params, init_weights
from trainables.registry import get_spec


class Engine(Protocol):
    """What the epoch loop (trainables.loop) asks of the K >= 1 members it trains."""

    kind: ClassVar[str]  # "single", "looped" or "stacked": a checkpoint's optimizer state has its layout
    seeds: list[int]  # one per member
    n_params: int  # parameters of one member

    def member_parameters(self, first: int, end: int) -> list[torch.Tensor]:
        """The tensors holding members first..end-1, for their optimizer group."""

    def zero_grad(self) -> None: ...

    def train(self) -> None:
        """Training mode for the batches that follow (dropout, BatchNorm)."""

    def eval(self) -> None: ...

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K * batch, ...), member r's own batch the r-th of K slices -> (K * batch, classes)."""

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, ...), the same inputs for every member -> (K * batch, classes)."""

    def member(self, r: int) -> Member:
        """Member r on its own (diagnostics, histograms)."""

    def state(self) -> dict:
        """The model part of a checkpoint (tensors by name)."""

    def load_state(self, state: dict) -> None: ...


@dataclass
class Member:
    """One member of an engine, run on its own: what its diagnostics (trainables.diagnostics) and
    histograms look at."""

    module: nn.Module  # the module whose submodules run in `forward` (forward hooks see its activations)
    forward: Callable[[torch.Tensor], torch.Tensor]  # (batch, ...) -> (batch, classes)
    params: dict[str, torch.Tensor]  # its parameters as `forward` uses them: gradients reach them
    grads: dict[str, torch.Tensor | None]  # the last training step's gradient of each (None before any)


def build_model(cfg: dict, splits: datasets.Splits, seed: int, dev: torch.device) -> nn.Module:
    """The model as seed `seed` initialises it: the same draws whether or not seeds are batched."""
    torch.manual_seed(seed)
    model = get_spec(cfg["trainable"]).build(cfg, splits)
    init_weights(model, cfg["init"], cfg["activation"])
    model.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    return model


def has_image_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


class MemberDropout(nn.Module):
    """Inverted dropout whose drop probability is a buffer: stacked, each member drops at its own
    rate (nn.Dropout's rate is a Python number, one for every member under vmap)."""

    def __init__(self, p: float):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p) / (1 - self.p)


def dropout_rates(member: dict) -> list[float]:
    """A member's drop probability per dropout layer of its trainable."""
    layers = get_spec(member["trainable"]).dropout_layers(member)
    rate = member["dropout"]
    return [float(p) for p in rate] if isinstance(rate, (list, tuple)) else [float(rate)] * layers


def build_members(members: list[dict], splits: datasets.Splits, dev: torch.device) -> list[nn.Module]:
    """Each member's model. Where members drop at different rates, every model is built with a
    dropout layer wherever any member has one (a builder leaves out a layer of rate 0, and stacked
    models must have one structure), and each layer becomes a MemberDropout at the member's rate."""
    rates = [dropout_rates(m) for m in members]
    if all(r == rates[0] for r in rates):
        return [build_model(m, splits, m["seed"], dev) for m in members]
    layers = [max(r[i] for r in rates) for i in range(len(rates[0]))]
    shape = layers[0] if len(layers) == 1 else layers  # a builder of one dropout layer takes a number
    models = []
    for member, own in zip(members, rates):
        model = build_model({**member, "dropout": shape}, splits, member["seed"], dev)
        own_rates = iter([p for p, widest in zip(own, layers) if widest > 0])  # the layers the model has
        for parent in list(model.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.Dropout):
                    setattr(parent, name, MemberDropout(next(own_rates)).to(dev))
        models.append(model)
    return models


# On a CPU, stacking K members beats looping them only for small MLPs from about 8 members, where
# per-op overhead outweighs the arithmetic; looping wins for larger MLPs, embeddings and any
# convolution (the measurements: benchmarks/README.md, "fused configurations").
STACK_FROM_ON_CPU = 8
STACK_AT_MOST_PARAMS_ON_CPU = 50_000


def stacks_well_on_cpu(model: nn.Module) -> bool:
    """A small MLP: linear layers only (no convolution, no embedding), few weights."""
    plain_mlp = not any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Embedding)) for m in model.modules())
    return plain_mlp and count_params(model) <= STACK_AT_MOST_PARAMS_ON_CPU


def choose_engine(members: list[dict], models: list[nn.Module], dev: torch.device) -> str:
    """`member_engine` "auto": on a CPU, stacked for small MLPs from 8 members and looped otherwise;
    on a GPU stacked (a GPU batches what a CPU cannot; unmeasured)."""
    chosen = members[0]["member_engine"]
    if chosen != "auto":
        return chosen
    if dev.type == "cpu" and (len(members) < STACK_FROM_ON_CPU or not stacks_well_on_cpu(models[0])):
        return "looped"
    return "stacked"


def make_engine(members: list[dict], splits: datasets.Splits, dev: torch.device, kind: str | None = None) -> Engine:
    """The engine for a trial's resolved member configs (trainables.registry.member_configs).
    `kind` (a checkpoint's "engine") overrides the choice: a resumed trial's optimizer state has
    the layout of the engine that saved it."""
    first = members[0]
    if len(members) == 1:
        return SingleModel(build_model(first, splits, first["seed"], dev), first["seed"], compile=first["compile"],
                           channels_last=first["channels_last"] and splits.train_x.dim() == 4)
    models = build_members(members, splits, dev)
    seeds = [m["seed"] for m in members]
    if (kind or choose_engine(members, models, dev)) == "looped":
        return LoopedModels(models, seeds)
    # A stacked trial on a CPU runs 2-D convolutions one member at a time (see StackedModel).
    chunk_size = 1 if dev.type == "cpu" and has_image_convolutions(models[0]) else None
    return StackedModel(models, seeds, chunk_size=chunk_size)


def plain_member(model: nn.Module) -> Member:
    params = dict(model.named_parameters())
    return Member(model, model, params, {name: p.grad for name, p in params.items()})


class SingleModel:
    """One model, one run: K = 1."""

    kind = "single"

    def __init__(self, model: nn.Module, seed: int, *, compile: bool = False, channels_last: bool = False):
        self.seeds = [seed]
        self.model = model
        self.n_params = count_params(model)
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # `net` runs the batches; `model` (same parameters) is what checkpoints save, so a
        # compiled trial's state loads into an uncompiled one and back.
        self.net = torch.compile(model) if compile else model
        self.parameters = list(model.parameters())  # listed once: model.parameters() walks the modules each call

    def member_parameters(self, first: int = 0, end: int = 1) -> list[torch.Tensor]:
        return list(self.parameters)

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def train(self) -> None:
        self.net.train()

    def eval(self) -> None:
        self.net.eval()

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def member(self, r: int = 0) -> Member:
        return plain_member(self.model)  # not the compiled net: hooks on the model's modules see every call

    def state(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])


class LoopedModels:
    """K members as K plain models, each step running one after another: forward, and one
    backward through the sum of their losses, then one optimizer step over every member's
    parameter group. Each member does the arithmetic of its run alone, so the trial is no slower
    than its members apart and still saves K-1 trials' start-up, data loading and Ray
    bookkeeping. Checkpoints hold the model state as StackedModel's (stacked along the member
    dimension), so either engine reads the other's weights."""

    kind = "looped"

    def __init__(self, models: list[nn.Module], seeds: list[int]):
        self.models = models
        self.seeds = list(seeds)
        self.n_params = count_params(models[0])
        self.parameters = [list(m.parameters()) for m in models]  # per member, listed once (as SingleModel's)

    def member_parameters(self, first: int, end: int) -> list[torch.Tensor]:
        return [p for params in self.parameters[first:end] for p in params]

    def zero_grad(self) -> None:
        for params in self.parameters:
            for p in params:
                p.grad = None

    def train(self) -> None:
        for model in self.models:
            model.train()

    def eval(self) -> None:
        for model in self.models:
            model.eval()

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(xr) for xr, model in zip(x.chunk(len(self.models)), self.models)])

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(x) for model in self.models])

    def member(self, r: int) -> Member:
        return plain_member(self.models[r])

    def state(self) -> dict:
        params = [dict(m.named_parameters()) for m in self.models]
        buffers = [dict(m.named_buffers()) for m in self.models]
        return {"params": {name: torch.stack([p[name].detach() for p in params]) for name in params[0]},
                "buffers": {name: torch.stack([b[name] for b in buffers]) for name in buffers[0]}}

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for r, model in enumerate(self.models):
                for name, value in state["params"].items():
                    model.get_parameter(name).copy_(value[r])
                for name, value in state["buffers"].items():
                    model.get_buffer(name).copy_(value[r])


class StackedModel:
    """K copies of one architecture as stacked parameters and buffers, run with vmap.

    The optimizer steps `member_parameters(a, b)`: slices a..b-1 of the stacks as tensors of
    their own that share the stacks' memory (detached, so torch.optim takes them as leaves),
    with gradients that are the same slices of the stacks' gradients. Those gradients are
    then allocated once and zeroed in place, so the slices stay theirs (one group over all
    members, as for one configuration's seeds, steps the stacks themselves, whose gradients are freed); an optimizer's step on a
    slice writes into the stacks that the next forward reads.

    `chunk_size=1` makes vmap run the model one member at a time (still one call, one
    optimizer step). make_engine asks for it on a CPU for models with 2-D convolutions:
    unchunked, vmap turns K convolutions into one grouped convolution, and oneDNN's is
    slow for image convolutions; the 1-D CNN's small convolutions and MLPs' matrix
    products batch well unchunked. On a GPU the grouped form is kept (cuDNN). The
    measurements behind this are in benchmarks/README.md (seed batching).
    """

    kind = "stacked"

    def __init__(self, models: list[nn.Module], seeds: list[int] | None = None, *, chunk_size: int | None = None):
        self.seeds = list(seeds) if seeds is not None else list(range(len(models)))
        self.n_params = count_params(models[0])
        self.params, self.buffers = stack_module_state(models)
        # Linear weights kept in transposed (column-major) storage: under vmap the weight
        # gradient comes out as input^T @ grad, which a row-major parameter must copy into
        # its own layout every step (about a quarter of a batched MNIST MLP step on a CPU); in this
        # layout it is taken as it is, and the forward's W^T is contiguous.
        for name, module in models[0].named_modules():
            if isinstance(module, nn.Linear):
                weight = self.params[f"{name}.weight"]
                self.params[f"{name}.weight"] = (
                    weight.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_())
        self.sliced = False  # whether an optimizer group holds a slice (then gradients stay, zeroed in place)
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture only; weights live in the stacks

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        # "different": each member draws its own dropout masks
        self._own_input = vmap(one, randomness="different", chunk_size=chunk_size)
        self._shared_input = vmap(one, in_dims=(0, 0, None), randomness="different", chunk_size=chunk_size)

    def member_parameters(self, first: int, end: int) -> list[torch.Tensor]:
        if first == 0 and end == len(self.seeds):  # one group for all (one configuration's seeds): the stacks themselves
            return list(self.params.values())
        self.sliced = True
        slices = []
        for p in self.params.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)  # kept and zeroed in place: the slices' gradients are views of it
            piece = p.detach()[first:end]
            piece.grad = p.grad[first:end]
            slices.append(piece)
        return slices

    def zero_grad(self) -> None:
        for p in self.params.values():
            if self.sliced:
                p.grad.zero_()
            else:
                p.grad = None

    def train(self) -> None:
        self.base.train()

    def eval(self) -> None:
        self.base.eval()

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        by_member = x.view(len(self.seeds), -1, *x.shape[1:])
        return self._own_input(self.params, self.buffers, by_member).flatten(0, 1)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared_input(self.params, self.buffers, x).flatten(0, 1)

    def member(self, r: int) -> Member:
        """Member r's slices of the stacks through the one architecture, outside vmap."""
        params = {name: p[r] for name, p in self.params.items()}  # views: gradients flow to the stacks
        buffers = {name: b[r] for name, b in self.buffers.items()}
        return Member(self.base, lambda x: functional_call(self.base, (params, buffers), (x,)), params,
                      {name: None if p.grad is None else p.grad[r] for name, p in self.params.items()})

    def state(self) -> dict:
        return {"params": {name: p.detach() for name, p in self.params.items()}, "buffers": dict(self.buffers)}

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
            for name, value in state["buffers"].items():
                self.buffers[name].copy_(value)
