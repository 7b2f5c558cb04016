"""SpectralCallback: Hessian λ_max vs dense truth, warm start, records, overhead, model untouched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eigenlens.train import SpectralCallback

D64 = torch.float64


def _setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=D64)
    y = torch.randint(0, 2, (20,), generator=torch.Generator().manual_seed(2))
    return net, X, y


def _dense_hessian(net, X, y):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            parts[n] = theta[i : i + k].reshape(s)
            i += k
        return nn.functional.cross_entropy(torch.func.functional_call(net, parts, (X,)), y)

    return torch.func.hessian(loss)(flat)


def test_hessian_top_eigenvalues_and_warm_start():
    net, X, y = _setup()
    cb = SpectralCallback(net, inputs=X[:4], loss_fn=nn.CrossEntropyLoss(), data=(X, y), every=1, hessian_k=2,
                          hessian_tol=1e-8)
    r0 = cb(0)
    exact = torch.linalg.eigvalsh(_dense_hessian(net, X, y)).flip(0)[:2]
    torch.testing.assert_close(r0.hessian_eigenvalues, exact, rtol=1e-6, atol=1e-9)
    r1 = cb(1)  # same model: the warm start begins at the answer
    torch.testing.assert_close(r1.hessian_eigenvalues, exact, rtol=1e-6, atol=1e-9)
    assert r1.hessian_matvecs < r0.hessian_matvecs


def test_records_alignment_spectrum_overhead_and_model_untouched():
    net, X, y = _setup()
    net.train()
    net(X).sum().backward()
    before = [p.detach().clone() for p in net.parameters()]
    grads = [p.grad.clone() for p in net.parameters()]
    rng = torch.get_rng_state()
    cb = SpectralCallback(net, inputs=X[:4], loss_fn=nn.CrossEntropyLoss(), data=(X, y), every=3, jacobian_k=2)
    for step in range(7):
        cb(step)
    assert [r.step for r in cb.records] == [0, 3, 6]
    r = cb.records[0]
    assert -1 <= r.jacobian_alignment <= 1 and -1 <= r.centroid_alignment <= 1
    J = torch.stack([torch.func.jacrev(net)(X[i]).detach() for i in range(4)])
    top = torch.linalg.svdvals(J).flatten().sort(descending=True).values[:2]
    torch.testing.assert_close(r.jacobian_singular_values, top, rtol=1e-3, atol=1e-6)
    assert math.isfinite(cb.overhead) and cb.overhead > 0
    df = cb.to_pandas()
    assert list(df["step"]) == [0, 3, 6] and "hessian_top" in df.columns
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


def test_errors():
    net, X, y = _setup()
    with pytest.raises(ValueError, match="every"):
        SpectralCallback(net, every=0)
    with pytest.raises(ValueError, match="loss_fn and data go together"):
        SpectralCallback(net, loss_fn=nn.MSELoss())
    with pytest.raises(TypeError, match="nn.Module"):
        SpectralCallback(lambda t: t)
    with pytest.raises(ValueError, match="hessian_k"):
        SpectralCallback(net, hessian_k=0)
    with pytest.raises(TypeError, match="inputs"):
        SpectralCallback(net, inputs=[1.0])
