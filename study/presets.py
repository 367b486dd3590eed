"""STUDIES: name -> Study. A study is data: which trainable(s), which axes, how many seeds.

Some levels set several keys at once (an optimizer with its learning rate, a
"regularization" level with weight decay or dropout): those axes are listed in
`bundles`, label -> the config keys that label stands for. The label itself is
kept as a column of the results so analysis can group by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from trainables.errors import ConfigError
from trainables.registry import TRAINABLES, get_spec

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
    bundles: Mapping[str, Mapping[str, Mapping[str, object]]] = field(default_factory=dict)
    metric: str = "val_acc"
    mode: str = "max"
    search: str = "grid"  # "grid": every axis combination x seeds; "optuna": adaptive sampling, one seed each
    # An Optuna search's space: config key -> (distribution, *arguments), see study.spaces.DISTRIBUTIONS
    space: Mapping[str, tuple] = field(default_factory=dict)

    def trainables(self) -> list[str]:
        return list(self.axes.get("trainable", ())) or [self.fixed["trainable"]]

    def datasets(self) -> list[str]:
        return sorted({TRAINABLES[t].dataset for t in self.trainables()})

    def expand(self, config: Mapping) -> dict:
        """The trial config `fit` takes: bundle labels replaced by the keys they stand for."""
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
                "bundles": {k: {l: dict(v) for l, v in b.items()} for k, b in self.bundles.items()},
                "metric": self.metric, "mode": self.mode, "search": self.search,
                "space": {k: list(v) for k, v in self.space.items()}}


def _study(name, description, fixed, axes, seeds, smoke_axes, bundles=None) -> Study:
    return Study(name, description, _frozen(fixed), _frozen({k: tuple(v) for k, v in axes.items()}), seeds,
                 _frozen({k: tuple(v) for k, v in smoke_axes.items()}),
                 _frozen({k: _frozen({l: _frozen(v) for l, v in b.items()}) for k, b in (bundles or {}).items()}))


OPTIMIZER_LEVELS = {
    "sgd": {"optimizer": "sgd", "lr": 0.1},
    "adam": {"optimizer": "adam", "lr": 1e-3},
    "rmsprop": {"optimizer": "rmsprop", "lr": 1e-3},
    "cubic_adam": {"optimizer": "cubic_adam", "lr": 1e-3},
}

STUDIES: dict[str, Study] = {
    "mnist1d_grid": _study(
        "mnist1d_grid",
        "Activation x batchnorm on MNIST-1D (1-D CNN, Adam lr 1e-2): the embedded default, minutes on a laptop.",
        fixed={"trainable": "mnist1d_cnn", "epochs": 30},
        axes={"activation": ["relu", "leaky_relu", "elu", "gelu", "silu", "mish", "tanh", "sigmoid"],
              "batchnorm": [False, True]},
        seeds=3,
        smoke_axes={"activation": ["relu", "gelu"], "batchnorm": [False, True]},
    ),
    "stl10_grid": _study(
        "stl10_grid",
        "Activation x batchnorm on STL-10, six-conv CNN, SGD momentum 0.9, weight decay 5e-4, batch 64, 30 epochs.",
        fixed={"trainable": "stl10_conv6", "epochs": 30, "optimizer": "sgd", "momentum": 0.9,
               "weight_decay": 5e-4, "batch_size": 64},
        axes={"activation": ["relu", "leaky_relu", "mish", "elu", "gelu"], "batchnorm": [True, False]},
        seeds=10,
        smoke_axes={"activation": ["relu", "mish"], "batchnorm": [True, False]},
    ),
    "cifar10_grid": _study(
        "cifar10_grid",
        "Activation x batch size x learning rate on CIFAR-10, LeNet-5, SGD, 25 epochs.",
        fixed={"trainable": "cifar10_lenet", "epochs": 25, "optimizer": "sgd"},
        axes={"activation": ["relu", "mish", "elu", "gelu"], "batch_size": [24, 40, 64, 128],
              "lr": [1e-1, 1e-2, 1e-3, 1e-4]},
        seeds=1,
        smoke_axes={"activation": ["relu", "gelu"], "batch_size": [24, 128], "lr": [1e-1]},
    ),
    "twitter_pos_grid": _study(
        "twitter_pos_grid",
        "Activation x learning rate on Twitter POS tagging, 2-layer window MLP, Adam, dropout 0.2.",
        fixed={"trainable": "twitter_pos_mlp", "optimizer": "adam", "dropout": 0.2, "epochs": 30},
        axes={"activation": ["relu", "prelu", "elu", "silu", "mish", "gelu"], "lr": [1e-2, 1e-3, 1e-4, 1e-5]},
        seeds=3,
        smoke_axes={"activation": ["relu", "prelu"], "lr": [1e-3]},
    ),
    "mnist_regularization": _study(
        "mnist_regularization",
        "Dropout x weight decay x init x optimizer on MNIST, MLP 784-512-1024-128-10, 10 epochs.",
        fixed={"trainable": "mnist_mlp", "hidden": [512, 1024, 128], "epochs": 10, "batch_size": 128},
        axes={"regularization": ["none", "dropout"], "weight_decay": [0.0, 5e-4],
              "init": ["xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "normal", "auto"],
              "optimizer": ["sgd", "rmsprop", "adam"]},
        seeds=1,
        smoke_axes={"regularization": ["none", "dropout"], "init": ["he_normal", "normal"], "optimizer": ["adam"]},
        bundles={
            # keep probabilities 0.8 / 0.5 / 0.5 per hidden layer (Srivastava et al.), as drop probabilities
            "regularization": {"none": {"dropout": 0.0}, "dropout": {"dropout": [0.2, 0.5, 0.5]}},
            "optimizer": {"sgd": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
                          "rmsprop": {"optimizer": "rmsprop", "lr": 1e-3},
                          "adam": {"optimizer": "adam", "lr": 1e-3}},
        },
    ),
    "mnist_depth": _study(
        "mnist_depth",
        "Depth (5 x 64 vs 10 x 48 units) x saturating vs rectifying activations on MNIST, SGD momentum 0.9, "
        "lr 0.01, with first/last layer gradient norms each epoch (vanishing gradients).",
        fixed={"trainable": "mnist_mlp", "optimizer": "sgd", "momentum": 0.9, "lr": 0.01, "epochs": 10,
               "grad_norms": True},
        axes={"depth": [5, 10], "activation": ["sigmoid", "tanh", "relu", "leaky_relu"]},
        seeds=3,
        smoke_axes={"depth": [5, 10], "activation": ["sigmoid", "relu"]},
        bundles={"depth": {5: {"depth": 5, "width": 64}, 10: {"depth": 10, "width": 48}}},
    ),
    "optimizer_benchmark": _study(
        "optimizer_benchmark",
        "SGD (lr 0.1), Adam, RMSprop, CubicAdam (lr 1e-3) x regularization (none, L2, dropout 0.3) on "
        "Fashion-MNIST and MNIST, MLP 784-128-128-10, batch 128, 10 epochs.",
        fixed={"hidden": [128, 128], "epochs": 10, "batch_size": 128},
        axes={"trainable": ["fashion_mnist_mlp", "mnist_mlp"], "optimizer": list(OPTIMIZER_LEVELS),
              "regularization": ["none", "l2", "dropout"]},
        seeds=10,
        smoke_axes={"trainable": ["fashion_mnist_mlp", "mnist_mlp"], "optimizer": ["sgd", "cubic_adam"],
                    "regularization": ["none"]},
        bundles={
            "optimizer": OPTIMIZER_LEVELS,
            "regularization": {"none": {"weight_decay": 0.0, "dropout": 0.0},
                               "l2": {"weight_decay": 5e-4, "dropout": 0.0},
                               "dropout": {"weight_decay": 0.0, "dropout": 0.3}},
        },
    ),
    "lr_sensitivity": _study(
        "lr_sensitivity",
        "Learning rate 1e-5..10 x weight decay 0..10 on MNIST, MLP 784-200-100-10, SGD momentum 0.9: "
        "divergence at one end, underfitting at the other (diverged trials are results).",
        fixed={"trainable": "mnist_mlp", "hidden": [200, 100], "optimizer": "sgd", "momentum": 0.9, "epochs": 10},
        axes={"lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], "weight_decay": [0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0]},
        seeds=1,
        smoke_axes={"lr": [1e-2, 10.0], "weight_decay": [0.0, 10.0]},
    ),
}

# Optuna: log scales for the rates, a bounded dropout, categorical ablations.
OPTUNA_ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid")
OPTUNA_SPACE = {
    "lr": ("loguniform", 1e-5, 1.0),
    "weight_decay": ("loguniform", 1e-6, 1e-1),
    "dropout": ("uniform", 0.0, 0.5),
    "activation": ("choice", OPTUNA_ACTIVATIONS),
    "batchnorm": ("choice", (True, False)),
}


def optuna_study(trainable: str) -> Study:
    """The Optuna preset for one trainable (python -m study.optuna TRAINABLE)."""
    get_spec(trainable)
    study = _study(f"optuna_{trainable}", f"Optuna search over lr, weight decay, dropout, activation and batchnorm "
                   f"for {trainable}.", fixed={"trainable": trainable}, axes={}, seeds=1, smoke_axes={})
    return replace(study, search="optuna", space=_frozen(OPTUNA_SPACE))


# Presets made per trainable: name -> (description, factory); the entry module takes the
# trainable as its first argument.
PER_TRAINABLE = {"optuna": ("Optuna search (OptunaSearch under a ConcurrencyLimiter) for one trainable.", optuna_study)}


def get_study(preset: str, trainable: str | None = None) -> Study:
    """A preset by name; those in PER_TRAINABLE for `trainable`."""
    return PER_TRAINABLE[preset][1](trainable) if preset in PER_TRAINABLE else STUDIES[preset]

