import pytest
import torch
from torch import nn

from common.errors import ConfigError
from trainables import models
from trainables.activations import ACTIVATIONS, ALIASES, make_activation

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


def test_activation_names_match_the_contract():
    assert set(ACTIVATIONS) == {"relu", "leaky_relu", "prelu", "elu", "celu", "selu", "gelu", "gelu_tanh",
                                "silu", "mish", "sigmoid", "tanh", "softplus"}
    assert ALIASES == {"swish": "silu"}
    assert isinstance(make_activation("swish"), nn.SiLU)
    assert make_activation("gelu_tanh").approximate == "tanh"


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_is_a_fresh_module(name):
    a, b = make_activation(name), make_activation(name)
    assert a is not b
    x = torch.linspace(-3, 3, 7)
    assert torch.isfinite(a(x)).all()


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown activation 'relu6'.*leaky_relu.*swish"):
        make_activation("relu6")


def test_prelu_slopes_are_separate_per_layer():
    model = models.mlp(10, [8, 8, 8], 3, activation="prelu")
    slopes = [m.weight for m in model.modules() if isinstance(m, nn.PReLU)]
    assert len(slopes) == 3
    assert len({id(p) for p in slopes}) == 3
    with torch.no_grad():
        slopes[0].fill_(0.5)
    assert slopes[1].item() == pytest.approx(0.25)  # untouched: PyTorch's initial slope


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_lenet5_has_the_classic_shape():
    model = models.lenet5(activation="relu")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 6, (5, 5)), (6, 16, (5, 5))]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(400, 120), (120, 84), (84, 10)]
    assert sum(p.numel() for p in model.parameters()) == 62006  # LeNet-5 on 32x32x3, as usually quoted
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_conv6_layers_and_batchnorm_after_every_conv():
    model = models.conv6(activation="mish", batchnorm=True, dropout=0.3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (3, 32, 5), (32, 64, 3), (64, 64, 3), (64, 96, 3), (96, 96, 3), (96, 128, 3)]
    assert _count(model, nn.BatchNorm2d) == 6
    assert _count(model, nn.Mish) == 6
    assert _count(model, nn.Linear) == 1
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 10)
    assert _count(models.conv6(batchnorm=False), nn.BatchNorm2d) == 0


@pytest.mark.parametrize("hidden", [[512, 1024, 128], [128, 128], [200, 100], [64] * 5, [48] * 10])
def test_mlp_hidden_sizes(hidden):
    model = models.mlp(784, hidden, 10, activation="tanh", batchnorm=True, dropout=0.2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in linears] == [*hidden, 10]
    assert _count(model, nn.BatchNorm1d) == len(hidden)
    assert _count(model, nn.Dropout) == len(hidden)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_mlp_per_layer_dropout_and_inverted_scaling():
    model = models.mlp(10, [16, 16], 2, dropout=[0.5, 0.2])
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.2]
    with pytest.raises(ConfigError, match="2 hidden layers"):
        models.mlp(10, [16, 16], 2, dropout=[0.5])
    drop = nn.Dropout(0.5).train()
    out = drop(torch.ones(10000))
    assert set(out.unique().tolist()) <= {0.0, 2.0}  # survivors scaled by 1/(1-p) at train time


def test_cnn1d_matches_the_mnist1d_baseline():
    model = models.cnn1d(length=40, channels=25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 3 and all(c.out_channels == 25 for c in convs)
    assert model[-1].in_features == 125  # 25 channels x length 5, as in the paper's ConvBase
    assert model(torch.zeros(3, 40)).shape == (3, 10)


def test_window_mlp_shapes_and_pretrained_embeddings():
    vectors = torch.randn(30, 50)
    model = models.window_mlp(30, 25, embeddings=vectors, dropout=0.2, batchnorm=True)
    assert torch.equal(model.embedding.weight.detach(), vectors)
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in hidden] == [(150, 256), (256, 256), (256, 25)]
    assert model(torch.randint(0, 30, (5, 3))).shape == (5, 25)
