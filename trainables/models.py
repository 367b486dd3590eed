"""The benchmark models. Ablations are arguments: every builder takes
`activation=`, `batchnorm=` and `dropout=`, so one function covers every
combination a study asks for.

Layer order everywhere is affine -> [BatchNorm] -> activation -> [Dropout], the
order of the batchnorm paper and of the reference setups these studies repeat.
Dropout is PyTorch's inverted dropout (`nn.Dropout` scales at train time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.errors import ConfigError
from trainables.activations import make_activation


def _dropouts(dropout: float | Sequence[float], n_layers: int) -> list[float]:
    """One drop probability per hidden layer: a single number applies to all."""
    if isinstance(dropout, (int, float)):
        return [float(dropout)] * n_layers
    if len(dropout) != n_layers:
        raise ConfigError(
            f"dropout lists {len(dropout)} probabilities for {n_layers} hidden layers; "
            f"give one number or exactly {n_layers}"
        )
    return [float(p) for p in dropout]


def _dense_block(n_in: int, n_out: int, activation: str, batchnorm: bool, p: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(make_activation(activation))
    if p > 0:
        layers.append(nn.Dropout(p))
    return layers


def _conv_block(conv: nn.Module, n_out: int, activation: str, batchnorm: bool, dims: int = 2) -> list[nn.Module]:
    layers: list[nn.Module] = [conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(n_out) if dims == 2 else nn.BatchNorm1d(n_out))
    layers.append(make_activation(activation))
    return layers


def mlp(
    in_features: int,
    hidden: Sequence[int],
    num_classes: int,
    *,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float | Sequence[float] = 0.0,
) -> nn.Sequential:
    """Fully connected net, e.g. 784-512-1024-128-10 or ten layers of 48 units."""
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [in_features, *hidden]
    for n_in, n_out, p in zip(sizes, sizes[1:], _dropouts(dropout, len(hidden))):
        layers += _dense_block(n_in, n_out, activation, batchnorm, p)
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)


def lenet5(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """LeNet-5 for 32x32 inputs: conv 3->6 k5, pool, conv 6->16 k5, pool, 400->120->84->10."""
    p1, p2 = _dropouts(dropout, 2)
    return nn.Sequential(
        *_conv_block(nn.Conv2d(in_channels, 6, 5), 6, activation, batchnorm),
        nn.MaxPool2d(2),
        *_conv_block(nn.Conv2d(6, 16, 5), 16, activation, batchnorm),
        nn.MaxPool2d(2),
        nn.Flatten(),
        *_dense_block(16 * 5 * 5, 120, activation, batchnorm, p1),
        *_dense_block(120, 84, activation, batchnorm, p2),
        nn.Linear(84, num_classes),
    )


def conv6(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float | Sequence[float] = 0.0,
) -> nn.Sequential:
    """Six-conv CNN for STL-10 (96x96).

    conv 3->32 k5; two blocks of [conv k3 adding 32 channels, conv k3 keeping
    them]; a last conv to 128 channels; global average pool; linear 128->10.
    The first conv of each stage has stride 2 (96 -> 48 -> 24 -> 12 -> 6), so
    the net stays cheap on 96x96 inputs while its receptive field covers the image.
    """
    convs = [  # (in, out, kernel, stride)
        (in_channels, 32, 5, 2),
        (32, 64, 3, 2),
        (64, 64, 3, 1),
        (64, 96, 3, 2),
        (96, 96, 3, 1),
        (96, 128, 3, 2),
    ]
    layers: list[nn.Module] = []
    for n_in, n_out, k, s in convs:
        layers += _conv_block(nn.Conv2d(n_in, n_out, k, stride=s, padding=k // 2), n_out, activation, batchnorm)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    (p,) = _dropouts(dropout, 1)  # one dropout, before the head: a number or a list of one
    if p > 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(128, num_classes))
    return nn.Sequential(*layers)


def cnn1d(
    *,
    length: int = 40,
    channels: int = 25,
    num_classes: int = 10,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float | Sequence[float] = 0.0,
) -> nn.Sequential:
    """The MNIST-1D paper's ConvBase: three stride-2 1-D convs of 25 channels and a linear head."""
    specs = [(1, 5), (channels, 3), (channels, 3)]  # (in channels, kernel); stride 2, padding 1
    layers: list[nn.Module] = [nn.Unflatten(1, (1, length))]
    out_len = length
    for n_in, k in specs:
        layers += _conv_block(nn.Conv1d(n_in, channels, k, stride=2, padding=1), channels, activation, batchnorm, dims=1)
        out_len = (out_len + 2 - k) // 2 + 1
    layers.append(nn.Flatten())
    (p,) = _dropouts(dropout, 1)  # one dropout, before the head: a number or a list of one
    if p > 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(channels * out_len, num_classes))
    return nn.Sequential(*layers)


class WindowMLP(nn.Module):
    """POS tagger on a window of word ids: embed each word, concatenate, two hidden layers."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 25,
        *,
        window: int = 3,
        embedding_dim: int = 50,
        hidden: int = 256,
        activation: str = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
        embeddings: torch.Tensor | None = None,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(embeddings)
        p1, p2 = _dropouts(dropout, 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            *_dense_block(window * embedding_dim, hidden, activation, batchnorm, p1),
            *_dense_block(hidden, hidden, activation, batchnorm, p2),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, word_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(word_ids))


def window_mlp(vocab_size: int, num_classes: int = 25, **kwargs) -> WindowMLP:
    return WindowMLP(vocab_size, num_classes, **kwargs)
