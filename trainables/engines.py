"""Model engines: the models the one epoch loop (trainables.loop.fit) trains.

An engine holds K >= 1 replicates of one configuration, replicate r built and
initialised from seed `seeds[r]`, and gives the loop one interface whatever K is:

    seeds                  one per replicate (a single-seed trial has one)
    n_params               parameters of one replicate
    parameters()           the tensors the optimizer steps
    train() / eval()       the mode for the batches that follow (dropout, BatchNorm)
    train_logits(x)        x: (K, batch, ...), each replicate its own batch -> (K * batch, classes)
    eval_logits(x)         x: (batch, ...), the same inputs for every replicate -> (K * batch, classes)
    grad_norms()           (K, 2): gradient norms of the first and last weight layer (config `grad_norms`)
    state() / load_state() the model part of a checkpoint

`SingleModel` is one plain module (with `compile` and `channels_last`);
`StackedModel` runs K copies as one batched computation (config `replicates`):
`torch.func.stack_module_state` stacks the K models' parameters and buffers along
a new leading dimension and `vmap` runs the one model definition over them, so
every model in the registry (convolutions, BatchNorm, dropout, embeddings) is
batched without a rewrite. The optimizers here are elementwise, so one optimizer
over the stacked tensors is K independent optimizers; each replicate's loss
reaches only its own slice.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trainables import data as datasets
from trainables.optim import count_params, init_weights
from trainables.registry import get_spec


def build_model(cfg: dict, splits: datasets.Splits, seed: int, dev: torch.device) -> nn.Module:
    """The model as seed `seed` initialises it: the same draws whether or not seeds are batched."""
    torch.manual_seed(seed)
    model = get_spec(cfg["trainable"]).build(cfg, splits)
    init_weights(model, cfg["init"], cfg["activation"])
    model.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    return model


def weight_layer_names(model: nn.Module) -> list[str]:
    """The linear and conv layers, first to last (gradient norms watch the first and the last)."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def watched_weights(model: nn.Module, grad_norms: bool) -> list[str]:
    layers = weight_layer_names(model)
    return [f"{layers[0]}.weight", f"{layers[-1]}.weight"] if grad_norms else []


def has_image_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def make_engine(cfg: dict, splits: datasets.Splits, dev: torch.device):
    """The engine for a resolved config: seeds seed .. seed+K-1, K = `replicates`."""
    seeds = [cfg["seed"] + r for r in range(cfg["replicates"])]
    models = [build_model(cfg, splits, seed, dev) for seed in seeds]
    if len(models) == 1:
        return SingleModel(models[0], seeds[0], compile=cfg["compile"],
                           channels_last=cfg["channels_last"] and splits.train_x.dim() == 4,
                           grad_norms=cfg["grad_norms"])
    # On a CPU, 2-D convolutions run one replicate at a time (see StackedModel).
    chunk_size = 1 if dev.type == "cpu" and has_image_convolutions(models[0]) else None
    return StackedModel(models, seeds, chunk_size=chunk_size, grad_norms=cfg["grad_norms"])


class SingleModel:
    """One model, one seed: K = 1."""

    def __init__(self, model: nn.Module, seed: int, *, compile: bool = False, channels_last: bool = False,
                 grad_norms: bool = False):
        self.seeds = [seed]
        self.model = model
        self.n_params = count_params(model)
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # `net` runs the batches; `model` (same parameters) is what checkpoints save, so a
        # compiled trial's state loads into an uncompiled one and back.
        self.net = torch.compile(model) if compile else model
        self.watched = [model.get_parameter(name) for name in watched_weights(model, grad_norms)]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def train(self) -> None:
        self.net.train()

    def eval(self) -> None:
        self.net.eval()

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x[0]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def grad_norms(self) -> torch.Tensor:
        return torch.stack([w.grad.norm() for w in self.watched]).unsqueeze(0)

    def state(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])


class StackedModel:
    """K copies of one architecture as stacked parameters and buffers, run with vmap.

    `chunk_size=1` makes vmap run the model one replicate at a time (still one call, one
    optimizer step). make_engine asks for it on a CPU for models with 2-D convolutions:
    unchunked, vmap turns K convolutions into one grouped convolution, and oneDNN's is
    slow for image convolutions; the 1-D CNN's small convolutions and MLPs' matrix
    products batch well unchunked. On a GPU the grouped form is kept (cuDNN). The
    measurements behind this are in benchmarks/README.md (seed batching).
    """

    def __init__(self, models: list[nn.Module], seeds: list[int] | None = None, *, chunk_size: int | None = None,
                 grad_norms: bool = False):
        self.seeds = list(seeds) if seeds is not None else list(range(len(models)))
        self.n_params = count_params(models[0])
        self.watched = watched_weights(models[0], grad_norms)
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
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture only; weights live in the stacks

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        # "different": each replicate draws its own dropout masks
        self._own_input = vmap(one, randomness="different", chunk_size=chunk_size)
        self._shared_input = vmap(one, in_dims=(0, 0, None), randomness="different", chunk_size=chunk_size)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self) -> None:
        self.base.train()

    def eval(self) -> None:
        self.base.eval()

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._own_input(self.params, self.buffers, x).flatten(0, 1)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared_input(self.params, self.buffers, x).flatten(0, 1)

    def grad_norms(self) -> torch.Tensor:
        return torch.stack([self.params[name].grad.flatten(1).norm(dim=1) for name in self.watched], 1)

    def state(self) -> dict:
        return {"params": {name: p.detach() for name, p in self.params.items()}, "buffers": dict(self.buffers)}

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
            for name, value in state["buffers"].items():
                self.buffers[name].copy_(value)
