"""The free-probability Jacobian law vs closed forms (Marchenko–Pastur, Fuss–Catalan) and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from eigenlens.infinite.jacobian_law import (
    JacobianSpec,
    jacobian_spectrum_law,
    mean_field_fixed_point,
    wasserstein1,
)

D64 = torch.float64


def _fuss_catalan(L, k):
    return math.comb((L + 1) * k, k) / (L * k + 1)


def test_single_gaussian_layer_is_marchenko_pastur():
    law = jacobian_spectrum_law(JacobianSpec(depth=1, nonlinearity="linear", weight_variance=2.0), num_points=200)
    np.testing.assert_allclose(law.moments.numpy(), [2.0, 8.0, 40.0, 224.0], rtol=1e-10)  # 2^k Catalan
    assert law.upper_edge == pytest.approx(8.0, rel=1e-8)
    g, d = law.grid.numpy(), law.density.numpy()
    m = (g > 0.05) & (g < 7.9)
    exact = np.sqrt(g[m] * (8 - g[m])) / (2 * np.pi * 2.0 * g[m])
    np.testing.assert_allclose(d[m], exact, rtol=1e-4)
    assert law.cdf(torch.tensor([8.5])).item() == 1.0
    assert law.cdf(torch.tensor([4.0])).item() == pytest.approx(0.5 + 1 / np.pi, abs=2e-3)  # MP(1) CDF at its mean


@pytest.mark.parametrize("L", [2, 5])
def test_deep_linear_gaussian_is_fuss_catalan(L):
    law = jacobian_spectrum_law(JacobianSpec(depth=L, nonlinearity="linear"), num_points=200)
    np.testing.assert_allclose(law.moments.numpy(), [_fuss_catalan(L, k) for k in range(1, 5)], rtol=1e-9)
    assert law.upper_edge == pytest.approx((L + 1) ** (L + 1) / L**L, rel=1e-6)
    assert law.mean_error < 2e-3  # the solved density reproduces m_1


def test_orthogonal_linear_is_a_point_mass():
    law = jacobian_spectrum_law(JacobianSpec(depth=3, nonlinearity="linear", weights="orthogonal", weight_variance=1.5))
    assert law.mean == pytest.approx(1.5**3) and law.var == pytest.approx(0.0, abs=1e-9)
    assert wasserstein1(law, torch.full((10,), 1.5**3)) < 1e-6


def test_moment_identities_nonlinear():
    # m1 = ∏ σ_w² μ1, normalised variance adds: L (μ2/μ1² − 1 + [Gaussian])
    sw2, sb2, L = 1.3, 0.1, 6
    q = mean_field_fixed_point("tanh", sw2, sb2)
    z, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    d2 = (1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2
    mu1, mu2 = w @ d2, w @ d2**2
    for kind, extra in (("gaussian", 1.0), ("orthogonal", 0.0)):
        law = jacobian_spectrum_law(JacobianSpec(L, "tanh", sw2, sb2, weights=kind), num_points=120)
        assert law.mean == pytest.approx((sw2 * mu1) ** L, rel=1e-9)
        # S(y) = (1/m1)(1 − (m2/m1² − 1) y + …) and S_J = ∏ S: normalised variances add exactly
        assert law.var / law.mean**2 == pytest.approx(L * (mu2 / mu1**2 - 1 + extra), rel=1e-8)
        assert law.q == pytest.approx([q] * L)
        assert law.chi[0] == pytest.approx(sw2 * mu1)


def test_mean_field_fixed_point_closed_forms():
    assert mean_field_fixed_point("linear", 0.5, 1.0) == pytest.approx(2.0)
    assert mean_field_fixed_point("tanh", 0.9, 0.0) == 0.0  # ordered phase without bias collapses
    q = mean_field_fixed_point("tanh", 2.0, 0.3)
    z, w = np.polynomial.hermite_e.hermegauss(120)
    assert 2.0 * (w / w.sum()) @ np.tanh(np.sqrt(q) * z) ** 2 + 0.3 == pytest.approx(q, rel=1e-10)
    with pytest.raises(ValueError, match="diverges"):
        mean_field_fixed_point("relu", 2.5, 0.1)


def _mc_free(L, N, kind, sw2, d_sampler, seeds):
    """JJᵀ with D² drawn independently of W from the exact law of φ'(h)² (the freeness assumption)."""
    ev = []
    for s in range(seeds):
        g = torch.Generator().manual_seed(s)
        J = torch.eye(N, dtype=D64)
        for _ in range(L):
            if kind == "gaussian":
                W = torch.randn(N, N, generator=g, dtype=D64) * math.sqrt(sw2 / N)
            else:
                Q, R = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=D64))
                W = Q * torch.sign(torch.diagonal(R)) * math.sqrt(sw2)
            J = d_sampler(g, N)[:, None] * (W @ J)
        ev.append(torch.linalg.eigvalsh(J @ J.T))
    return torch.cat(ev)


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_law_vs_monte_carlo_free_factors(kind):
    sw2, sb2, L, N = 1.3, 0.1, 4, 300
    q = mean_field_fixed_point("tanh", sw2, sb2)
    law = jacobian_spectrum_law(JacobianSpec(L, "tanh", sw2, sb2, weights=kind), num_points=120)

    def d(g, n):
        # stratified draws of h ~ N(0, q*) in random order: the empirical law of D² matches the limit to O(1/N²)
        z = torch.special.ndtri((torch.arange(n, dtype=D64) + 0.5) / n)[torch.randperm(n, generator=g)]
        return 1 - torch.tanh(math.sqrt(q) * z) ** 2

    ev = _mc_free(L, N, kind, sw2, d, seeds=2)
    assert float(ev.mean()) == pytest.approx(law.mean, rel=0.01)
    assert float((ev**2).mean()) == pytest.approx(float(law.moments[1]), rel=0.05)
    w1 = wasserstein1(law, ev)
    assert w1 < 0.03 * law.mean
    # the other weight kind is a different law: the distance must see it
    other = jacobian_spectrum_law(
        JacobianSpec(L, "tanh", sw2, sb2, weights="orthogonal" if kind == "gaussian" else "gaussian"), num_points=120
    )
    assert wasserstein1(other, ev) > 3 * w1


def test_law_vs_real_network_monte_carlo():
    """A real tanh network (D depends on W through h) at the fixed point: moments within MC error."""
    sw2, sb2, L, N = 1.2, 0.05, 3, 400
    torch.manual_seed(0)
    layers = []
    for _ in range(L):
        lin = nn.Linear(N, N).double()
        nn.init.normal_(lin.weight, std=math.sqrt(sw2 / N))
        nn.init.normal_(lin.bias, std=math.sqrt(sb2))
        layers += [lin, nn.Tanh()]
    net = nn.Sequential(*layers)
    law = jacobian_spectrum_law(net, num_points=150)
    assert law.weights == ["gaussian"] * L
    q = law.q[0]
    x = torch.randn(N, generator=torch.Generator().manual_seed(1), dtype=D64)
    sw2_read = float(N * net[0].weight.detach().pow(2).mean())
    x = x / x.norm() * math.sqrt(N * (q - float(net[0].bias.detach().pow(2).mean())) / sw2_read)
    J = torch.func.jacrev(net)(x).detach()
    ev = torch.linalg.eigvalsh(J @ J.T)
    assert float(ev.mean()) == pytest.approx(law.mean, rel=0.08)
    assert wasserstein1(law, ev) < 0.1 * law.mean


def test_model_reading_orthogonal_and_relu_atom():
    torch.manual_seed(0)
    lin = nn.Linear(32, 32).double()
    nn.init.orthogonal_(lin.weight, gain=1.1)
    nn.init.zeros_(lin.bias)
    law = jacobian_spectrum_law(nn.Sequential(lin, nn.Tanh()), num_points=64)
    assert law.weights == ["orthogonal"]
    law = jacobian_spectrum_law(JacobianSpec(3, "relu", 2.0, 0.0, input_second_moment=1.0), num_points=100)
    assert law.atom == pytest.approx(0.5)
    assert law.mean == pytest.approx(1.0, rel=1e-9)  # critical ReLU: σ_w² E[φ'²] = 2 · 1/2
    assert float(law.cdf(torch.tensor([0.0]))[0]) == pytest.approx(0.5)


def test_quantile_inverts_cdf():
    law = jacobian_spectrum_law(JacobianSpec(2, "linear"), num_points=150)
    u = torch.tensor([0.2, 0.5, 0.9], dtype=D64)
    torch.testing.assert_close(law.cdf(law.quantile(u)), u, rtol=0, atol=2e-3)


def test_errors():
    with pytest.raises(ValueError, match="depth"):
        jacobian_spectrum_law(JacobianSpec(depth=0))
    with pytest.raises(ValueError, match="nonlinearity"):
        jacobian_spectrum_law(JacobianSpec(depth=2, nonlinearity="swishy"))
    with pytest.raises(ValueError, match="weights"):
        jacobian_spectrum_law(JacobianSpec(depth=2, weights="unitary"))
    with pytest.raises(ValueError, match="weight_variance"):
        jacobian_spectrum_law(JacobianSpec(depth=2, weight_variance=0.0))
    with pytest.raises(TypeError, match="JacobianSpec"):
        jacobian_spectrum_law("tanh")
    with pytest.raises(ValueError, match="square"):
        jacobian_spectrum_law(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    with pytest.raises(ValueError, match="elementwise activation"):
        jacobian_spectrum_law(nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=-1)))
    with pytest.raises(ValueError, match="got Conv1d"):
        jacobian_spectrum_law(nn.Sequential(nn.Conv1d(1, 1, 3)))
    law = jacobian_spectrum_law(JacobianSpec(1, "linear"), num_points=32)
    with pytest.raises(ValueError, match="non-negative"):
        wasserstein1(law, torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        wasserstein1(law, torch.tensor([]))


def _real_tanh_spectra(N, L, kind, sw2, sb2, q, nets, seed):
    """Eigenvalues of JJᵀ of ``nets`` real tanh networks (one input each at q*), J = ∏ D^l W^l in float64."""
    out = []
    for s in range(nets):
        g = torch.Generator().manual_seed(seed + s)
        x = torch.randn(N, generator=g, dtype=D64)
        x = x / x.norm() * math.sqrt(N * (q - sb2) / sw2)  # q¹ = σ_w²‖x‖²/N + σ_b² = q*
        J = None
        for _ in range(L):
            A = torch.randn(N, N, generator=g, dtype=D64)
            if kind == "orthogonal":
                Q, R = torch.linalg.qr(A)
                W = Q * torch.sign(torch.diagonal(R)) * math.sqrt(sw2)
            else:
                W = A * math.sqrt(sw2 / N)
            h = W @ x + torch.randn(N, generator=g, dtype=D64) * math.sqrt(sb2)
            J = (1 - torch.tanh(h) ** 2)[:, None] * (W if J is None else W @ J)
            x = torch.tanh(h)
        out.append(torch.linalg.eigvalsh(J @ J.T))
    return out


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_real_network_distance_shrinks_with_width(kind):
    """Critical tanh (χ = 1), depth 4: a real network's spectrum is closer to the law at N = 256 than at 64."""
    sw2, sb2, L = 1.761, 0.05, 4  # σ_w² critical for σ_b² = 0.05 (χ = 1.000)
    q = mean_field_fixed_point("tanh", sw2, sb2)
    law = jacobian_spectrum_law(JacobianSpec(L, "tanh", sw2, sb2, weights=kind), num_points=120)
    assert law.mean == pytest.approx(1.0, abs=1e-3)
    w1 = {}
    for N, nets in ((64, 16), (256, 4)):
        w1[N] = float(np.mean([wasserstein1(law, ev) for ev in _real_tanh_spectra(N, L, kind, sw2, sb2, q, nets, 0)]))
    # W1/m1 at seed 0: gaussian 0.26 -> 0.05, orthogonal 0.13 -> 0.05;
    # over 10 seeds: 0.19-0.26 -> 0.05-0.15 and 0.10-0.17 -> 0.02-0.11
    assert w1[256] < 0.6 * w1[64]
    assert w1[256] < 0.1 * law.mean
