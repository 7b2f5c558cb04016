"""curvature_summary against dense eigendecompositions of tiny float64 problems."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import eigenlens as el
from eigenlens.diagnostics.curvature import _bulk_edge, adam_preconditioner, curvature_summary
from eigenlens.nn._model import rng_guard

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def problem(width=8, n=60, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with rng_guard():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, classes)).to(DT)
    X = torch.randn(n, 5, generator=g, dtype=DT)
    y = torch.randint(0, classes, (n,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model, nn.CrossEntropyLoss(), X, y, opt


def dense_hessian(model, loss, X, y):
    return el.hessian(model, loss, (X, y)).to_dense()


@pytest.fixture(scope="module")
def summary_and_truth():
    model, loss, X, y, opt = problem()
    data = [(X[i : i + 25], y[i : i + 25]) for i in range(0, 60, 25)]  # 25, 25, 10
    s = curvature_summary(model, loss, data, k=3, optimizer=opt, trace_matvecs=30, density_probes=6,
                          density_matvecs=30, batch_sizes=[10, 30, 60], batch_size_repeats=2, tol=1e-9)
    H = dense_hessian(model, loss, X, y)
    return s, H, (model, loss, X, y, opt)


def test_top_and_bottom_eigenvalues_match_eigvalsh(summary_and_truth):
    s, H, _ = summary_and_truth
    ev = np.linalg.eigvalsh(H.numpy())
    P = H.shape[0]
    assert s.num_params == P and s.num_examples == 60 and s.num_classes == 3
    kk = len(s.top_eigenvalues)
    assert kk == 4  # max(k, C + 1)
    np.testing.assert_allclose(s.top_eigenvalues, ev[::-1][:kk], rtol=1e-7, atol=1e-9 * abs(ev).max())
    np.testing.assert_allclose(s.bottom_eigenvalues, ev[:3], rtol=1e-6, atol=1e-8 * abs(ev).max())
    assert max(s.top_residuals) < 1e-7 * abs(ev).max() and s.eigsh_converged
    assert s.lambda_max == s.top_eigenvalues[0]


def test_trace_and_density_within_their_errors(summary_and_truth):
    s, H, _ = summary_and_truth
    exact = float(torch.trace(H))
    assert 0 < s.trace_stderr and abs(s.trace - exact) <= 4 * s.trace_stderr
    est = s.density.trace_function(lambda x: x)  # the SLQ measure's mean, times dim
    assert abs(est.value - exact) <= 4 * est.stderr + 1e-9
    sq = s.density.trace_function(lambda x: x**2)
    assert abs(sq.value - float((H * H).sum())) <= 4 * sq.stderr + 1e-9
    lo, hi = s.density.support
    ev = np.linalg.eigvalsh(H.numpy())
    assert ev[0] - 1e-8 <= lo and hi <= ev[-1] + 1e-8


def test_learning_rate_advice(summary_and_truth):
    s, H, (model, loss, X, y, opt) = summary_and_truth
    assert s.momentum == 0.9  # Adam's beta1
    assert s.lr_max_gd == pytest.approx(2 / s.lambda_max, rel=1e-12)
    assert s.lr_max_heavy_ball == pytest.approx(2 * 1.9 / s.lambda_max, rel=1e-12)
    D, b1 = adam_preconditioner(opt, list(model.parameters()))
    d = 1 / D.sqrt()
    exact = float(np.linalg.eigvalsh((d[:, None] * H * d[None, :]).numpy())[-1])
    assert s.adam_sharpness == pytest.approx(exact, rel=1e-4)
    assert s.lr_max_adam == pytest.approx((2 + 2 * b1) / ((1 - b1) * exact), rel=1e-4)
    # the preconditioner is Adam's own: sqrt of the bias-corrected second moment plus eps
    st = opt.state[model[0].weight]
    v_hat = st["exp_avg_sq"] / (1 - 0.999 ** float(st["step"]))
    torch.testing.assert_close(D[:40], (v_hat.sqrt() + 1e-8).reshape(-1))


def test_batch_size_scaling(summary_and_truth):
    s, H, _ = summary_and_truth
    bs = s.batch_size_scaling
    assert bs.batch_sizes == [10, 30, 60]
    assert bs.lambda_max[-1] == pytest.approx(s.lambda_max, rel=1e-3)  # B = N is the full Hessian (tol 1e-4)
    lr = np.array(bs.lr_max_sgd)
    np.testing.assert_allclose(lr, 2 / np.array(bs.lambda_max))
    slope = np.polyfit(np.log(bs.batch_sizes), np.log(lr), 1)[0]
    assert bs.exponent_sgd == pytest.approx(slope, rel=1e-9) and bs.exponent_adam == pytest.approx(slope / 2)
    assert bs.theory_exponent_sgd == 1.0 and bs.theory_exponent_adam == 0.5
    np.testing.assert_allclose(bs.recommended_lr_sgd, 0.5 * lr)
    ref = bs.adam_reference_lr
    assert ref == pytest.approx(0.5 * s.lr_max_adam)
    np.testing.assert_allclose(bs.recommended_lr_adam, ref * (np.array(bs.batch_sizes) / 60.0) ** bs.exponent_adam)


def test_bulk_edge_and_outliers_on_a_known_spectrum():
    g = torch.Generator().manual_seed(0)
    bulk = torch.rand(600, generator=g, dtype=DT)  # bulk on [0, 1]
    spikes = torch.tensor([5.0, 8.0, 12.0], dtype=DT)
    lam = torch.cat([bulk, spikes])
    Q, _ = torch.linalg.qr(torch.randn(603, 603, generator=g, dtype=DT))
    A = el.aslinearoperator((Q * lam) @ Q.T, symmetric=True)
    dens = el.spectral_density(A, num_probes=8, num_matvecs=40)
    edge = _bulk_edge(dens, [12.0, 8.0, 5.0, 1.0])
    assert 0.8 < edge < 2.0
    assert [x for x in [12.0, 8.0, 5.0, 0.99] if x > edge] == [12.0, 8.0, 5.0]


def test_outliers_are_the_top_eigenvalues_above_the_edge(summary_and_truth):
    s, _, _ = summary_and_truth
    assert s.outliers == [x for x in s.top_eigenvalues if x > s.bulk_edge]
    assert s.num_outliers == len(s.outliers)
    if len(s.outliers) == len(s.top_eigenvalues):
        assert any("lower bound" in n for n in s.notes)
    else:
        assert any("vs C = 3 classes" in n for n in s.notes)


def test_report_json_and_plot(summary_and_truth, tmp_path):
    s, _, _ = summary_and_truth
    text = str(s)
    for key in ("top eigenvalues", "bottom eigenvalues", "trace", "GD stable lr", "heavy-ball", "Adam", "B^"):
        assert key in text
    d = json.loads(s.to_json())
    assert d["top_eigenvalues"] == s.top_eigenvalues and d["num_outliers"] == s.num_outliers
    assert len(d["density"]["pdf"]) == 256 and d["batch_size_scaling"]["batch_sizes"] == [10, 30, 60]
    s.plot(str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 1000


def test_model_untouched_and_reproducible():
    model, loss, X, y, opt = problem(seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    model.train()
    rng = torch.get_rng_state()
    kw = dict(k=2, bottom=False, trace_matvecs=12, density_probes=2, density_matvecs=10, batch_sizes=[20, 60])
    a = curvature_summary(model, loss, (X, y), **kw)
    b = curvature_summary(model, loss, (X, y), **kw)
    assert a.top_eigenvalues == b.top_eigenvalues and a.trace == b.trace
    assert a.batch_size_scaling.lambda_max == b.batch_size_scaling.lambda_max
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), grads))
    assert model.training and torch.equal(torch.get_rng_state(), rng)


def test_ctrl_c_returns_what_was_computed(monkeypatch):
    model, loss, X, y, _ = problem(seed=2)
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(el, "trace", boom, raising=False)
    s = curvature_summary(model, loss, (X, y), k=2, bottom=False, density_matvecs=10)
    assert s.interrupted and s.top_eigenvalues is not None and s.trace is None and s.density is None
    assert "interrupted" in str(s)


def test_ggn_operator_and_errors():
    model, loss, X, y, opt = problem(seed=3)
    s = curvature_summary(model, loss, (X, y), operator="ggn", k=2, bottom=False, trace=False, density=False)
    G = el.ggn(model, loss, (X, y)).to_dense()
    assert s.top_eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]), rel=1e-6)
    with pytest.raises(ValueError, match="operator must be one of.*got 'hess'"):
        curvature_summary(model, loss, (X, y), operator="hess")
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        curvature_summary(model, loss, (X, y), k=0)
    with pytest.raises(ValueError, match="batch_sizes must be positive"):
        curvature_summary(model, loss, (X, y), batch_sizes=[0, 8])
    with pytest.raises(ValueError, match="the largest, 100, exceeds the 60 examples"):
        curvature_summary(model, loss, (X, y), k=1, bottom=False, trace=False, density=False, batch_sizes=[100])
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    with pytest.raises(TypeError, match="expected an Adam-family optimizer"):
        adam_preconditioner(sgd, list(model.parameters()))
    fresh = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="take at least one optimizer step"):
        adam_preconditioner(fresh, list(model.parameters()))
    s2 = curvature_summary(model, loss, (X, y), k=1, bottom=False, trace=False, density=False, optimizer=sgd)
    assert s2.momentum == 0.5 and s2.lr_max_heavy_ball == pytest.approx(3.0 / s2.lambda_max)
    assert s2.adam_sharpness is None and not math.isnan(s2.lr_max_gd)
