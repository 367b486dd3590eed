import math

import pytest
import torch
from torch import nn

from common.errors import ConfigError
from trainables.optim import INITS, OPTIMIZERS, CubicAdam, init_weights, make_optimizer, resolve_init

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


def test_cubic_adam_follows_its_formula():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5))
    lr, (b1, b2, b3), eps, wd = 0.01, (0.9, 0.999, 0.999987), 1e-8, 0.1
    opt = CubicAdam([p], lr=lr, eps=eps, weight_decay=wd)
    x = p.detach().clone().double()
    m = v = u = torch.zeros(5, dtype=torch.float64)
    for t in range(1, 4):
        grad = torch.randn(5)
        p.grad = grad.clone()
        opt.step()
        g = grad.double() + wd * x
        m, v, u = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2, b3 * u + (1 - b3) * g**3
        m_hat, v_hat, u_hat = m / (1 - b1**t), v / (1 - b2**t), u / (1 - b3**t)
        x = x - lr * m_hat / (v_hat.sqrt() + eps * torch.sign(u_hat) * u_hat.abs() ** (1 / 3) + eps)
        torch.testing.assert_close(p.detach().double(), x, rtol=1e-5, atol=1e-6)


def test_cubic_adam_is_a_torch_optimizer_with_state_dict():
    p = nn.Parameter(torch.ones(3))
    opt = CubicAdam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()
    assert isinstance(opt, torch.optim.Optimizer) and state["state"][0]["step"] == 1
    restored = CubicAdam([nn.Parameter(p.detach().clone())], lr=0.1)
    restored.load_state_dict(state)
    assert torch.equal(restored.state_dict()["state"][0]["u"], state["state"][0]["u"])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_weight_decay_shrinks_weights_with_zero_gradient(name):
    p = nn.Parameter(torch.full((4,), 2.0))
    opt = make_optimizer(name, [p], lr=0.1, weight_decay=0.5, momentum=0.9 if name == "sgd" else 0.0)
    p.grad = torch.zeros(4)
    opt.step()
    assert (p.detach() < 2.0).all()


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    def after_one_step(name):
        p = nn.Parameter(torch.full((1,), 2.0))
        opt = make_optimizer(name, [p], lr=0.1, weight_decay=0.5)
        p.grad = torch.zeros(1)
        opt.step()
        return p.item()

    assert after_one_step("adamw") == pytest.approx(2.0 * (1 - 0.1 * 0.5))  # p -= lr * wd * p
    assert after_one_step("adam") == pytest.approx(2.0 - 0.1, rel=1e-4)  # L2 grad normalised by Adam: one lr step


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match="momentum"):
        make_optimizer("sgd", [nn.Parameter(torch.ones(1))], lr=0.1, nesterov=True)
    opt = make_optimizer("sgd", [nn.Parameter(torch.ones(1))], lr=0.1, momentum=0.9, nesterov=True)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ConfigError, match="cubic_adam"):
        make_optimizer("lion", [nn.Parameter(torch.ones(1))], lr=0.1)


def _weights(name, activation="relu", fan_in=400, fan_out=300):
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, fan_out)
    init_weights(layer, name, activation)
    return layer


@pytest.mark.parametrize("name, expected_std", [
    ("he_normal", math.sqrt(2 / 400)),
    ("he_uniform", math.sqrt(2 / 400)),
    ("xavier_normal", math.sqrt(2 / 700)),
    ("xavier_uniform", math.sqrt(2 / 700)),
    ("normal", 1.0),
])
def test_init_standard_deviations(name, expected_std):
    layer = _weights(name)
    assert layer.weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert torch.count_nonzero(layer.bias) == 0


def test_default_init_keeps_pytorch_default_and_auto_follows_activation():
    torch.manual_seed(0)
    reference = nn.Linear(400, 300)
    assert torch.equal(_weights("default").weight, reference.weight)
    assert resolve_init("auto", "relu") == "he_normal"
    assert resolve_init("auto", "mish") == "he_normal"
    assert resolve_init("auto", "tanh") == "xavier_normal"
    assert resolve_init("auto", "sigmoid") == "xavier_normal"
    assert set(INITS) == {"default", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "normal", "auto"}
    with pytest.raises(ConfigError, match="he_uniform"):
        resolve_init("orthogonal", "relu")
