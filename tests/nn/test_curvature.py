"""Hessian / GGN / Fisher operators against dense float64 truth on tiny models (uneven batches)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import eigenlens as el
from eigenlens.nn._model import NondeterministicModelError, NonFiniteError
from tests.nn._curvature_zoo import DT, Dense, make, split
from tests.operator_harness import OperatorChecks

ZOO = ["mlp", "mlp_mse", "cnn", "layernorm", "batchnorm_eval", "transformer", "dict", "tuple"]
SIZES = [4, 4, 2]  # N = 10 in three batches, the last one smaller


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def problem(name):
    model, loss, X, y = make(name)
    return model, loss, X, y, Dense(model, loss, X, y)


@functools.cache
def truth(name, kind):
    *_, d = problem(name)
    return {"hessian": d.hessian, "ggn": d.ggn, "fisher": d.fisher}[kind]()


def build(name, kind, **kw):
    model, loss, X, y, _ = problem(name)
    data = split(X, y, SIZES)
    return {"hessian": el.hessian, "ggn": el.ggn, "fisher": el.fisher}[kind](model, loss, data, **kw)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---------------------------------------------------------------------------- every model, every operator
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher"])
def test_operator_matches_dense_truth(name, kind):
    op = build(name, kind)
    A = truth(name, kind)
    assert op.shape == A.shape and op.dtype == DT
    assert op.num_examples == 10
    assert rel(op.to_dense(), A) < 1e-10
    V = torch.randn(A.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    assert rel(op @ V, A @ V) < 1e-10
    assert rel(op @ V[:, 0], A @ V[:, 0]) < 1e-10
    assert op.is_symmetric and op.is_psd == (kind != "hessian")


class TestHessianHarness(OperatorChecks):
    rtol = 1e-9

    def make(self):
        return build("cnn", "hessian"), truth("cnn", "hessian")


class TestGGNHarness(OperatorChecks):
    rtol = 1e-9

    def make(self):
        return build("dict", "ggn"), truth("dict", "ggn")


class TestFisherHarness(OperatorChecks):
    rtol = 1e-9

    def make(self):
        return build("layernorm", "fisher"), truth("layernorm", "fisher")


def test_batching_does_not_change_the_operator():
    model, loss, X, y, _ = problem("mlp")
    one = el.hessian(model, loss, (X, y)).to_dense()
    for sizes in ([10], [3, 3, 3, 1], [1] * 10):
        assert rel(el.hessian(model, loss, split(X, y, sizes)).to_dense(), one) < 1e-12


def test_ggn_equals_hessian_for_linear_model_with_mse():
    # f linear in θ => the Hessian is exactly J^T H_loss J
    torch.manual_seed(0)
    model = nn.Linear(5, 3).to(DT)
    X, y = torch.randn(7, 5, dtype=DT), torch.randn(7, 3, dtype=DT)
    H = el.hessian(model, nn.MSELoss(), (X, y)).to_dense()
    G = el.ggn(model, F.mse_loss, (X, y)).to_dense()
    assert rel(G, H) < 1e-12
    A = torch.cat([X, torch.ones(7, 1, dtype=DT)], 1)  # closed form: (2/(N·O)) (I_O ⊗ AᵀA) in row-major order
    closed = torch.zeros(18, 18, dtype=DT)
    for o in range(3):
        idx = list(range(o * 5, o * 5 + 5)) + [15 + o]
        closed[np.ix_(idx, idx)] = 2.0 / (7 * 3) * (A.T @ A)
    assert rel(H, closed) < 1e-12


def test_generic_loss_uses_autodiff_output_hessian():
    model, _, X, y, _ = problem("mlp")

    def ce(o, t):  # unknown callable: output Hessian by forward-over-reverse
        return F.cross_entropy(o, t)

    G = el.ggn(model, ce, split(X, y, SIZES))
    assert G.kind is None
    assert rel(G.to_dense(), truth("mlp", "ggn")) < 1e-10


# ---------------------------------------------------------------------------- parameter subsets
@pytest.mark.parametrize(
    "params, names",
    [
        ("2.*", ["2.weight", "2.bias"]),
        (["0.weight", "2.bias"], ["0.weight", "2.bias"]),
        ("*.bias", ["0.bias", "2.bias"]),
    ],
)
def test_parameter_subsets_are_principal_submatrices(params, names):
    model, loss, X, y, d = problem("mlp")
    full = truth("mlp", "hessian")
    offsets, start = {}, 0
    for n, p in model.named_parameters():
        offsets[n] = list(range(start, start + p.numel()))
        start += p.numel()
    idx = sum((offsets[n] for n in names), [])
    for kind in ("hessian", "ggn"):
        op = build("mlp", kind, params=params)
        assert op.functional.names == names
        ref = (full if kind == "hessian" else truth("mlp", "ggn"))[np.ix_(idx, idx)]
        assert rel(op.to_dense(), ref) < 1e-10


def test_parameter_objects_select_by_identity():
    model, *_ = problem("mlp")
    op = build("mlp", "hessian", params=[model[2].weight])
    assert op.functional.names == ["2.weight"] and op.shape == (18, 18)


# ---------------------------------------------------------------------------- dtype, MC Fisher
def test_float64_evaluation_of_a_float32_model():
    model, loss, X, y, _ = problem("cnn")
    m32 = make("cnn")[0].float()
    data32 = [(a.float(), b) for a, b in split(X, y, SIZES)]
    H32 = el.hessian(m32, loss, data32)
    H64 = el.hessian(m32, loss, data32, dtype=torch.float64)
    assert H32.dtype == torch.float32 and H64.dtype == torch.float64
    ref = truth("cnn", "hessian")
    assert rel(H64.to_dense(), ref) < 1e-6  # only the float32 rounding of the parameters/data remains
    assert rel(H32.to_dense().double(), ref) < 1e-3
    assert next(m32.parameters()).dtype == torch.float32


@pytest.mark.parametrize("name", ["mlp", "mlp_mse"])
def test_mc_fisher_is_the_fisher_of_its_sampled_targets(name):
    model, loss, X, y, d = problem(name)
    Fm = el.fisher(model, loss, (X, y), kind="mc", generator=torch.Generator().manual_seed(3))
    y_hat = Fm.sampled_targets[0][0]
    assert rel(Fm.to_dense(), d.fisher(y_hat)) < 1e-10
    again = el.fisher(model, loss, (X, y), kind="mc", generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.sampled_targets[0], Fm.sampled_targets[0])
    default = el.fisher(model, loss, (X, y), kind="mc")  # generator=None: seeded, reproducible
    assert torch.equal(default.sampled_targets[0], el.fisher(model, loss, (X, y), kind="mc").sampled_targets[0])


@pytest.mark.parametrize("name", ["mlp", "mlp_mse"])
def test_mc_fisher_converges_to_the_ggn(name):
    model, loss, X, y, _ = problem(name)
    Fm = el.fisher(model, loss, split(X, y, SIZES), kind="mc", mc_samples=3000)
    G = truth(name, "ggn")
    err = float(torch.linalg.matrix_norm(Fm.to_dense() - G) / torch.linalg.matrix_norm(G))
    assert err < 0.06  # Monte Carlo error ~ 1/sqrt(3000) per entry; a wrong variance/likelihood gives O(1)


# ---------------------------------------------------------------------------- one vmapped pass per batch
class CountingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.b(torch.tanh(self.a(x)))


def test_k_vectors_cost_one_forward_per_batch():
    torch.manual_seed(0)
    net = CountingNet().to(DT)
    X, y = torch.randn(9, 3, dtype=DT), torch.randint(0, 2, (9,))
    H = el.hessian(net, nn.CrossEntropyLoss(), split(X, y, [4, 4, 1]), check_deterministic=False)
    net.calls = 0
    H @ torch.randn(H.shape[0], 7, dtype=DT)
    assert net.calls == 3


# ---------------------------------------------------------------------------- the model is never changed
def _state(model):
    return (
        [p.detach().clone() for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        torch.get_rng_state(),
    )


def _assert_same(model, before):
    after = _state(model)
    for a, b in zip(after[0], before[0]):
        assert torch.equal(a, b)
    for a, b in zip(after[1], before[1]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert after[2] == before[2] and after[3] == before[3]
    assert torch.equal(after[4], before[4])


def test_model_untouched_by_all_operators():
    model, loss, X, y = make("batchnorm_eval")
    model[0].weight.requires_grad_(False)
    loss(model(X), y).backward()  # some .grad present, one None
    before = _state(model)
    for op in (
        el.hessian(model, loss, (X, y), params="*"),
        el.ggn(model, loss, (X, y)),
        el.fisher(model, loss, (X, y)),
        el.fisher(model, loss, (X, y), kind="mc"),
    ):
        op @ torch.ones(op.shape[0], 2, dtype=DT)
    _assert_same(model, before)


def test_model_untouched_when_a_product_raises():
    model, loss, X, y = make("mlp")
    Xbad = X.clone()
    Xbad[7, 0] = float("nan")
    before = _state(model)
    H = el.hessian(model, loss, split(Xbad, y, SIZES))
    with pytest.raises(NonFiniteError, match=r"batch 1 \(size 4\).*NaN"):
        H @ torch.ones(H.shape[0], dtype=DT)
    with pytest.raises(FloatingPointError):  # also catchable as the base operator's error type
        H @ torch.ones(H.shape[0], dtype=DT)
    _assert_same(model, before)


# ---------------------------------------------------------------------------- the determinism probe
def test_probe_fires_on_dropout():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2)).to(DT)
    X, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    with pytest.raises(NondeterministicModelError, match=r"dropout 1 .*training mode.*model\.eval\(\)"):
        el.hessian(model, nn.CrossEntropyLoss(), (X, y))
    model.eval()
    assert el.hessian(model, nn.CrossEntropyLoss(), (X, y)).shape == (26, 26)


def test_probe_fires_on_train_mode_batchnorm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).to(DT)
    X, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    with pytest.raises(NondeterministicModelError, match=r"batch norm 1 \(BatchNorm1d\) is in training mode"):
        el.ggn(model, nn.CrossEntropyLoss(), (X, y))
    assert model.training


class StatefulLayer(nn.Module):
    """A forward that drifts from call to call: no static scan knows it, only the dynamic probe can catch it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(x) * (1.0 + 0.01 * self.calls)


def test_dynamic_probe_fires_on_unknown_nondeterminism():
    model = StatefulLayer().to(DT)
    X, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    H = el.ggn(model, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(NondeterministicModelError, match="two different products.*no known cause"):
        H @ torch.ones(H.shape[0], dtype=DT)


def test_random_ops_inside_the_forward_are_named():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x + torch.randn_like(x))

    model = Noisy().to(DT)
    X, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    H = el.hessian(model, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(NondeterministicModelError, match=r"draws random numbers.*\(batch 0\).*model\.eval\(\)"):
        H @ torch.ones(H.shape[0], dtype=DT)


def test_probe_fires_on_a_reshuffling_loader():
    model, loss, X, y = make("mlp")
    ds = torch.utils.data.TensorDataset(X, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
    H = el.hessian(model, loss, loader)
    with pytest.raises(NondeterministicModelError, match="shuffled DataLoader.*shuffle=False"):
        H @ torch.ones(H.shape[0], dtype=DT)
    fixed = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False)
    H2 = el.hessian(model, loss, fixed)
    assert rel(H2 @ torch.ones(H2.shape[0], dtype=DT), truth("mlp", "hessian") @ torch.ones(51, dtype=DT)) < 1e-10


def test_check_deterministic_false_allows_stochastic_models():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2)).to(DT)
    X, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    H = el.hessian(model, nn.CrossEntropyLoss(), (X, y), check_deterministic=False)
    rng = torch.get_rng_state()
    assert torch.isfinite(H @ torch.ones(26, dtype=DT)).all()
    assert torch.equal(torch.get_rng_state(), rng)


def test_transformer_eval_falls_back_to_reverse_mode_jvp():
    model, loss, X, y, _ = problem("transformer")
    model.eval()
    try:
        G = el.ggn(model, loss, (X, y))
        assert rel(G.to_dense(), truth("transformer", "ggn")) < 1e-10
        assert G.mode == "reverse"  # the fused eval-mode encoder kernel has no forward-mode derivative
    finally:
        model.train()


# ---------------------------------------------------------------------------- errors: expected / got / fix
def test_errors():
    model, loss, X, y = make("mlp")
    with pytest.raises(ValueError, match=r"'nope\.\*' matches no parameter name; available: 0\.weight, 0\.bias"):
        el.hessian(model, loss, (X, y), params="nope.*")
    with pytest.raises(ValueError, match=r"reduction='mean'.*got reduction='sum'"):
        el.hessian(model, nn.CrossEntropyLoss(reduction="sum"), (X, y))
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        el.hessian(model, "ce", (X, y))
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        el.hessian(lambda x: x, loss, (X, y))
    with pytest.raises(TypeError, match="one-shot iterator"):
        el.hessian(model, loss, ((X[i : i + 2], y[i : i + 2]) for i in range(0, 10, 2)))
    with pytest.raises(TypeError, match=r"batch 0 should be an \(inputs, targets\) pair"):
        el.hessian(model, loss, [(X, y, y)])
    with pytest.raises(ValueError, match="no batch found"):
        el.hessian(model, loss, [])
    with pytest.raises(TypeError, match=r"data: expected an \(inputs, targets\) pair"):
        el.hessian(model, loss, X)
    with pytest.raises(ValueError, match="kind must be 'empirical' or 'mc', got 'true'"):
        el.fisher(model, loss, (X, y), kind="true")
    with pytest.raises(ValueError, match="kind='mc'.*needs a likelihood.*use kind='empirical'"):
        el.fisher(model, lambda o, t: F.cross_entropy(o, t), (X, y), kind="mc")
    with pytest.raises(ValueError, match="mc_samples must be a positive int"):
        el.fisher(model, loss, (X, y), kind="mc", mc_samples=0)
    with pytest.raises(TypeError, match="dtype: expected a floating torch.dtype"):
        el.hessian(model, loss, (X, y), dtype=torch.int64)
    H = el.hessian(model, loss, (X, y))
    with pytest.raises(TypeError, match="dtype mismatch"):
        H @ torch.ones(51)


def test_tied_parameters_counted_once():
    torch.manual_seed(0)
    emb = nn.Linear(3, 3, bias=False)
    model = nn.Sequential(emb, nn.Tanh(), emb).to(DT)
    X, y = torch.randn(5, 3, dtype=DT), torch.randn(5, 3, dtype=DT)
    H = el.hessian(model, nn.MSELoss(), (X, y))
    assert H.shape == (9, 9)
    W = emb.weight.detach()
    ref = torch.autograd.functional.hessian(
        lambda w: F.mse_loss(torch.tanh(X @ w.reshape(3, 3).T) @ w.reshape(3, 3).T, y), W.reshape(-1)
    )
    assert rel(H.to_dense(), ref) < 1e-10
