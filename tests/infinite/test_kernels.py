"""API, layers and guarantees of el.infinite.kernels / program."""

import math

import pytest
import torch
from torch import nn

import eigenlens as el

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)


def mlp(act=None, d=2, n=16):
    return nn.Sequential(nn.Linear(d, n), act or nn.ReLU(), nn.Linear(n, 1))


def test_one_layer_closed_form():
    """Linear-ReLU-Linear against the arc-cosine formula written out by hand."""
    k = el.infinite.kernels(mlp(), X, weight_std=1.0, bias_std=0.0)
    S = X @ X.T / 2
    q = S.diagonal()
    cos = (S / torch.sqrt(q[:, None] * q[None, :])).clamp(-1, 1)
    th = torch.arccos(cos)
    nngp = torch.sqrt(q[:, None] * q[None, :]) * (torch.sin(th) + (math.pi - th) * cos) / (2 * math.pi)
    ntk = nngp + (math.pi - th) / (2 * math.pi) * S
    assert torch.allclose(k.nngp, nngp, atol=1e-12)
    assert torch.allclose(k.ntk, ntk, atol=1e-12)


def test_x2_blocks_and_symmetry_agree():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, generator=g, dtype=torch.float64)
    net = mlp(nn.Tanh())
    full = el.infinite.kernels(net, x)
    blocked = el.infinite.kernels(net, x, block_size=2)
    cross = el.infinite.kernels(net, x[:4], x[4:])
    assert torch.allclose(full.nngp, blocked.nngp, atol=1e-14)
    assert torch.allclose(full.ntk, blocked.ntk, atol=1e-14)
    assert torch.allclose(full.nngp[:4, 4:], cross.nngp, atol=1e-12)
    assert torch.allclose(full.nngp, full.nngp.T, atol=1e-14)
    assert full.quadrature_error < 1e-8 and full.quadrature_degrees


def test_float32_close_to_float64():
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    net = mlp()
    a = el.infinite.kernels(net, x, dtype=torch.float32)
    b = el.infinite.kernels(net, x, dtype=torch.float64)
    assert a.nngp.dtype == torch.float32
    assert torch.allclose(a.nngp.double(), b.nngp, rtol=1e-5, atol=1e-6)


def test_reads_std_off_the_init_and_dict_overrides():
    net = mlp()
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[0].bias.fill_(0.2)
        net[2].weight.fill_(0.25)
        net[2].bias.fill_(0.0)
    prog = el.infinite.program(net, X)
    m0, m2 = prog["h1"], prog["h3"]
    assert math.isclose(m0.sigma_w2, 2 * 0.25) and math.isclose(m0.sigma_b2, 0.04, rel_tol=1e-6)
    assert math.isclose(m2.sigma_w2, 16 * 0.0625) and m2.sigma_b2 == 0.0
    prog = el.infinite.program(net, X, weight_std={"2": 3.0}, bias_std={"0": 0.0})
    assert math.isclose(prog["h3"].sigma_w2, 9.0) and prog["h1"].sigma_b2 == 0.0
    assert math.isclose(prog["h1"].sigma_w2, 0.5)
    a = el.infinite.kernels(net, X)
    b = el.infinite.kernels(net, X, weight_std={"0": math.sqrt(0.5), "2": 1.0}, bias_std={"0": 0.2, "2": 0.0})
    assert torch.allclose(a.nngp, b.nngp, atol=1e-14)


def test_leaves_the_model_untouched():
    net = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.GELU(), nn.Linear(8, 1))
    net.train()
    net[0].weight.grad = torch.ones_like(net[0].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    el.infinite.kernels(net, X.float())
    assert torch.equal(torch.get_rng_state(), rng)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(net[0].weight.grad, torch.ones_like(net[0].weight))
    bad = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    bad_state = {k: v.clone() for k, v in bad.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(ValueError):
        el.infinite.kernels(bad, X)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(bad_state[k], v) for k, v in bad.state_dict().items())


def test_standard_parameterization_ntk():
    """Standard parameterization: Θ = fan_in Σ⁰ + 1 for one Linear layer (every weight gradient counts)."""
    lin = nn.Linear(2, 1)
    k = el.infinite.kernels(lin, X, parameterization="standard", weight_std=1.0, bias_std=0.5)
    assert torch.allclose(k.ntk, X @ X.T + 1, atol=1e-14)
    assert torch.allclose(k.nngp, X @ X.T / 2 + 0.25, atol=1e-14)
    k = el.infinite.kernels(lin, X, weight_std=1.0, bias_std=0.5)
    assert torch.allclose(k.ntk, X @ X.T / 2 + 0.25, atol=1e-14)


def test_residual_scaling_and_product():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(2, 8), nn.Linear(2, 8), nn.Linear(8, 1)

        def forward(self, x):
            h = self.a(x)
            g = 0.5 * self.b(x) - h / 2
            return self.out(torch.tanh(h) * torch.sigmoid(g) + 2 * h)

    prog = el.infinite.program(Net(), X)
    text = str(prog)
    assert "Nonlin" in text and "LinComb" in text and "MatMul" in text
    k = el.infinite.kernels(Net(), X, weight_std=1.0, bias_std=0.0)
    # Monte Carlo over the Gaussian hidden units (exact finite-dim computation of the limit)
    g = torch.Generator().manual_seed(0)
    n = 400_000
    S = X @ X.T / 2
    L = torch.linalg.cholesky(S + 1e-12 * torch.eye(3, dtype=torch.float64))
    h = torch.randn(n, 3, generator=g, dtype=torch.float64) @ L.T
    b = torch.randn(n, 3, generator=g, dtype=torch.float64) @ L.T
    z = torch.tanh(h) * torch.sigmoid(0.5 * b - h / 2) + 2 * h
    mc = z.T @ z / n
    assert torch.allclose(k.nngp, mc, rtol=0.02, atol=0.01)
    assert not torch.allclose(k.nngp, 4 * S, rtol=0.02, atol=0.01)


def test_conv1d_stride_dilation_against_monte_carlo():
    """A strided, dilated Conv1d with padding: pixel-pair covariances vs a wide random network."""
    net = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4, 1))
    x = torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = el.infinite.kernels(net, x, weight_std=1.0, bias_std=0.3)
    width = 20000
    conv = nn.Conv1d(2, width, 3, stride=2, padding=2, dilation=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        conv.weight.normal_(0, 1 / math.sqrt(6), generator=g)
        conv.bias.normal_(0, 0.3, generator=g)
        z = torch.relu(conv(x)).flatten(1)
    mc = z @ z.T / z.shape[1] + 0.3**2  # readout: σ_w² = 1, σ_b² = 0.09
    assert torch.allclose(k.nngp, mc, rtol=0.03, atol=0.01)
    assert not torch.allclose(k.nngp, mc - 0.09, rtol=0.03, atol=0.01)


def test_program_prints_shared_weights():
    class RNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.rec, self.out = nn.Linear(3, 8), nn.Linear(8, 8), nn.Linear(8, 1)

        def forward(self, x):
            h = torch.tanh(self.inp(x[:, 0]))
            for t in range(1, 3):
                h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
            return self.out(h)

    prog = el.infinite.program(RNN(), torch.zeros(1, 3, 3))
    assert len(prog.weights["inp"]) == 3 and len(prog.weights["rec"]) == 2
    assert "(shared)" in str(prog) and "x[2]" in str(prog)


@pytest.mark.parametrize(
    "model,x,match",
    [
        (nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)), X, "BatchNorm1d"),
        (nn.Sequential(nn.Linear(2, 4), nn.Softmax(dim=1)), X, "not elementwise"),
        (nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4)), X, "elementwise_affine=True"),
        (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.LayerNorm(4, elementwise_affine=False)), X, "non-Gaussian"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1, padding_mode="circular")), torch.zeros(2, 1, 5, 5), "padding_mode"),
        (nn.Sequential(nn.Linear(3, 4)), X, "expects 3 inputs"),
        (nn.Sequential(nn.Linear(2, 4), nn.MaxPool1d(2)), X, "MaxPool1d"),
    ],
)
def test_unsupported_layers_are_named(model, x, match):
    with pytest.raises(ValueError, match=match) as err:
        el.infinite.kernels(model, x)
    assert "Supported:" in str(err.value) or "expects" in str(err.value)


def test_argument_errors():
    net = mlp()
    with pytest.raises(TypeError, match="nn.Module"):
        el.infinite.kernels(lambda x: x, X)
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        el.infinite.kernels(net, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="batch dimension"):
        el.infinite.program(net, torch.zeros(2))
    with pytest.raises(ValueError, match="x2 must have per-example shape"):
        el.infinite.kernels(net, X, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        el.infinite.kernels(net, torch.tensor([[math.nan, 0.0]]))
    with pytest.raises(ValueError, match="get must be"):
        el.infinite.kernels(net, X, get="gp")
    with pytest.raises(ValueError, match="parameterization must be"):
        el.infinite.kernels(net, X, parameterization="mup")
    with pytest.raises(ValueError, match="dtype must be"):
        el.infinite.kernels(net, X, dtype=torch.int64)
    with pytest.raises(ValueError, match="block_size must be"):
        el.infinite.kernels(net, X, block_size=0)
    with pytest.raises(ValueError, match="weight_std for '0' must be a finite float"):
        el.infinite.kernels(net, X, weight_std={"0": -1.0})
    with pytest.raises(ValueError, match="names modules \\['9'\\] that are not Linear/Conv"):
        el.infinite.kernels(net, X, bias_std={"9": 1.0})
    with pytest.raises(ValueError, match="quad_degree must be"):
        el.infinite.kernels(mlp(nn.Tanh()), X, quad_degree=0)
    with pytest.raises(ValueError, match="quad_tol must be"):
        el.infinite.kernels(mlp(nn.Tanh()), X, quad_tol=0.0)


def test_non_smooth_function_warns_and_reports_error():
    net = mlp(nn.Hardtanh())
    with pytest.warns(el.NumericalWarning, match="quadrature"):
        k = el.infinite.kernels(net, X, quad_tol=1e-12)
    assert k.quadrature_error > 1e-12
    d = k.to_dict()
    assert set(d) >= {"nngp", "ntk", "quadrature_error", "complete"}


def test_interrupt_keeps_finished_blocks(monkeypatch):
    """Ctrl-C during the pair blocks returns what was computed (NaN elsewhere) with a warning."""
    import eigenlens.infinite.limit as limit

    calls = {"n": 0}
    real = limit.Engine

    class Interrupting(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.pair:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise KeyboardInterrupt

    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    full = el.infinite.kernels(mlp(), x, weight_std=1.0, bias_std=0.1, block_size=2)
    monkeypatch.setattr(limit, "Engine", Interrupting)
    with pytest.warns(el.NumericalWarning, match="interrupted"):
        part = el.infinite.kernels(mlp(), x, weight_std=1.0, bias_std=0.1, block_size=2)
    assert not part.complete
    done = ~torch.isnan(part.nngp)
    assert done.sum() == 12 and done[:2, :4].all() and done[:4, :2].all()  # blocks (0,0), (0,1) + mirror
    assert torch.allclose(part.nngp[done], full.nngp[done], atol=1e-14)



@pytest.mark.parametrize(
    "act,nngp_fn,dot_fn",
    [
        ("square", lambda q1, q2, c: q1 * q2 + 2 * c**2, lambda q1, q2, c: 4 * c),
        (
            "sin",
            lambda q1, q2, c: torch.exp(-(q1 + q2) / 2) * torch.sinh(c),
            lambda q1, q2, c: torch.exp(-(q1 + q2) / 2) * torch.cosh(c),
        ),
    ],
)
def test_numerical_path_against_exact_gaussian_integrals(act, nngp_fn, dot_fn):
    """x² and sin have exact Gaussian expectations: E[u²v²] = q1q2 + 2c², E[sin u sin v] = e^{-(q1+q2)/2} sinh c."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.out = nn.Linear(2, 8), nn.Linear(8, 1)

        def forward(self, x):
            h = self.a(x)
            return self.out(torch.sin(h) if act == "sin" else h**2)

    x = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [2.0, -1.0], [1.0, 0.5]], dtype=torch.float64)
    k = el.infinite.kernels(Net(), x, weight_std=1.0, bias_std=0.0)
    S = x @ x.T / 2
    q = S.diagonal()
    q1, q2 = q[:, None].expand_as(S), q[None, :].expand_as(S)
    nngp = nngp_fn(q1, q2, S)
    assert torch.allclose(k.nngp, nngp, rtol=1e-9, atol=1e-12)
    assert torch.allclose(k.ntk, nngp + dot_fn(q1, q2, S) * S, rtol=1e-9, atol=1e-12)
    assert k.quadrature_error <= 1e-9
