"""GrokAlign metrics vs closed forms on linear models; penalty values and gradients vs dense/finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eigenlens.train import GrokAlign, centroid_alignment, grokalign_penalty, jacobian_alignment, jacobian_frobenius

D64 = torch.float64


def _gen(s=0):
    return torch.Generator().manual_seed(s)


def _linear(d_in=4, d_out=3, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out, bias=bias).double()


def _mlp(seed=0, act=nn.Tanh, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6, bias=bias), act(), nn.Linear(6, 3, bias=bias)).double()


def _x(B=5, d=4, seed=1):
    return torch.randn(B, d, generator=_gen(seed), dtype=D64)


def _cos(a, b):
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_jacobian_alignment_linear_closed_form():
    lin, x = _linear(), _x()
    W, b = lin.weight.detach(), lin.bias.detach()
    expected = _cos(x @ W.T, x @ W.T + b)  # J x = W x, f(x) = W x + b
    torch.testing.assert_close(jacobian_alignment(lin, x), expected, rtol=1e-12, atol=1e-12)
    assert float(expected.min()) < 0.99  # the bias makes it informative: a wrong J x would fail


def test_jacobian_alignment_bias_free_relu_is_one():
    net, x = _mlp(act=nn.ReLU, bias=False), _x()
    torch.testing.assert_close(jacobian_alignment(net, x), torch.ones(5, dtype=D64), rtol=1e-12, atol=1e-12)


def test_centroid_alignment_linear_and_mlp():
    lin, x = _linear(), _x()
    mu = lin.weight.detach().sum(0).expand(5, 4)  # Jᵀ 1 = Wᵀ 1
    cos, cen = centroid_alignment(lin, x, return_centroids=True)
    torch.testing.assert_close(cen, mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cos, _cos(mu, x), rtol=1e-12, atol=1e-12)
    net = _mlp()
    rows = torch.stack([torch.func.jacrev(net)(x[i]).detach().sum(0) for i in range(5)])
    torch.testing.assert_close(centroid_alignment(net, x), _cos(rows, x), rtol=1e-12, atol=1e-12)


def test_rank_one_aligned_jacobian_has_centroid_alignment_one():
    # f(x) = u (aᵀx) with a = x0-direction: J = u aᵀ is aligned with x0
    x0 = _x(1)
    net = nn.Linear(4, 3, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([1.0, 2.0, 3.0], dtype=D64)[:, None] * x0)
    assert float(centroid_alignment(net, x0)[0]) == pytest.approx(1.0, abs=1e-12)


def test_frobenius_estimate_unbiased():
    net, x = _mlp(), _x()
    exact = torch.stack([torch.func.jacrev(net)(x[i]).detach().pow(2).sum() for i in range(5)])
    est = jacobian_frobenius(net, x, num_probes=4000, generator=_gen(3))
    torch.testing.assert_close(est, exact, rtol=0.05, atol=0)
    lin = _linear()  # Rademacher on a linear map: E‖Wv‖² = ‖W‖_F²
    est = jacobian_frobenius(lin, x, num_probes=2000, generator=_gen(4))
    torch.testing.assert_close(est, lin.weight.detach().pow(2).sum().expand(5), rtol=0.05, atol=0)


def test_penalty_value_with_explicit_probes():
    net, x = _mlp(), _x()
    v = torch.randn(5, 4, generator=_gen(7), dtype=D64)
    Jv = torch.stack([torch.func.jacrev(net)(x[i]).detach() @ v[i] for i in range(5)])
    sq = Jv.pow(2).sum(1)
    pen, out = grokalign_penalty(net, x, probes=v, return_outputs=True)
    assert float(pen) == pytest.approx(float((sq + 1e-12).sqrt().mean()), rel=1e-12)
    torch.testing.assert_close(out.detach(), net(x).detach())
    assert float(grokalign_penalty(net, x, probes=v, squared=True)) == pytest.approx(float(sq.mean()), rel=1e-12)


def test_penalty_squared_unbiased_over_probes():
    net, x = _mlp(), _x()
    exact = torch.stack([torch.func.jacrev(net)(x[i]).detach().pow(2).sum() for i in range(5)]).mean()
    big = x.repeat(400, 1)  # 400 independent probes per example in one JVP
    assert float(grokalign_penalty(net, big, generator=_gen(11), squared=True)) == pytest.approx(float(exact), rel=0.06)


@pytest.mark.parametrize("squared", [False, True])
def test_penalty_gradient_vs_finite_differences(squared):
    net, x = _mlp(), _x()
    v = torch.randn(5, 4, generator=_gen(2), dtype=D64)
    params = dict(net.named_parameters())
    pen = grokalign_penalty(net, x, probes=v, squared=squared)
    grads = torch.autograd.grad(pen, list(params.values()), allow_unused=True)  # the output bias drops out
    h = 1e-6
    for (name, p), g in zip(params.items(), grads):
        g = torch.zeros_like(p) if g is None else g
        for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[idx] += h
                up = float(grokalign_penalty(net, x, probes=v, squared=squared))
                p[idx] -= 2 * h
                down = float(grokalign_penalty(net, x, probes=v, squared=squared))
                p[idx] += h
            assert float(g[idx]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8), name


def test_grokalign_class_varies_probes_and_is_reproducible():
    net, x = _mlp(), _x()
    reg = GrokAlign(weight=0.5, generator=_gen(0))
    a, b = float(reg(net, x)), float(reg(net, x))
    assert a != b  # fresh probes each step
    reg2 = GrokAlign(weight=0.5, generator=_gen(0))
    assert float(reg2(net, x)) == a
    assert a == pytest.approx(0.5 * float(grokalign_penalty(net, x, generator=_gen(0))), rel=1e-12)
    # the default generator is seeded: identical calls give identical results
    assert float(grokalign_penalty(net, x)) == float(grokalign_penalty(net, x))


def test_penalty_trains_a_loop():
    net, x = _mlp(), _x()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    reg = GrokAlign(weight=1.0, squared=True, generator=_gen(1))
    before = float(jacobian_frobenius(net, x, num_probes=256).mean())
    for _ in range(60):
        opt.zero_grad()
        reg(net, x).backward()
        opt.step()
    assert float(jacobian_frobenius(net, x, num_probes=256).mean()) < 0.5 * before


def _snapshot(model):
    return (
        [p.detach().clone() for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
        torch.get_rng_state(),
    )


def _assert_same(model, snap):
    vals, grads, modes, rng = snap
    for p, v, g in zip(model.parameters(), vals, grads):
        assert torch.equal(p.detach(), v)
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_measurements_leave_model_untouched():
    net, x = _mlp(), _x()
    net(x).sum().backward()
    net.eval()
    snap = _snapshot(net)
    jacobian_alignment(net, x)
    centroid_alignment(net, x)
    jacobian_frobenius(net, x, num_probes=3)
    grokalign_penalty(net, x)  # builds a graph but touches neither .grad nor the RNG
    _assert_same(net, snap)
    with pytest.raises(ValueError):
        jacobian_alignment(lambda t: t.sum(), x)
    _assert_same(net, snap)


def test_errors():
    net, x = _mlp(), _x()
    with pytest.raises(TypeError, match="floating inputs"):
        jacobian_alignment(net, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="inputs must be a tensor"):
        centroid_alignment(net, [1.0, 2.0])
    with pytest.raises(ValueError, match="non-empty batch"):
        jacobian_alignment(net, torch.zeros(0, 4, dtype=D64))
    with pytest.raises(ValueError, match="probes must have the inputs' shape"):
        grokalign_penalty(net, x, probes=torch.zeros(3, 4, dtype=D64))
    with pytest.raises(ValueError, match="distribution"):
        grokalign_penalty(net, x, distribution="uniform")
    with pytest.raises(ValueError, match="num_probes"):
        jacobian_frobenius(net, x, num_probes=0)
    with pytest.raises(ValueError, match="weight"):
        GrokAlign(weight=-1.0)
    with pytest.raises(ValueError, match="batch dimension first"):
        jacobian_alignment(lambda t: t.sum(), x)
    with pytest.raises(TypeError, match="one tensor"):
        grokalign_penalty(lambda t: (t, t), x)
