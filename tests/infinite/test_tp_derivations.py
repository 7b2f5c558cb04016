"""Tensor Programs re-derivations (Yang, arXiv 1902.04760; Netsor⊤ master theorem, arXiv 2009.10685):
semicircle and Marchenko–Pastur moments from straight-line programs with one / two Gaussian matrices, and
the infinite-width kernel of a program that has them as its limit.

A linear program's vectors are linear combinations Z = Σ_j C_j ζ_j of base Gaussians ζ (the input and one
Ẑ per matrix multiplication). The master theorem: Z^{Mx} = Ẑ^{Mx} + c_M Σ_y Z^y ∂Z^x/∂Ẑ^{Mᵀy}, where the sum
runs over earlier vectors y whose product Mᵀy appears in the program, Cov(Ẑ^{Mx}, Ẑ^{My}) = v_M E[Z^x Z^y],
and for an a×b matrix with entry variance s: v_M = b·s, c_M = b·s as well (the number of summed terms times
the entry variance), Ẑ's of different matrices (also M and Mᵀ) independent.
"""

import math

import pytest
import torch
from torch import nn

import eigenlens as el


class LinearProgram:
    def __init__(self):
        self.cov = torch.zeros(0, 0, dtype=torch.float64)  # covariance of the base Gaussians
        self.owner = []  # matrix that created each base (None for inputs)
        self.vectors = []  # (coefficients over bases, matrix used to produce it or None, argument index)
        self.uses = []  # (matrix name, argument vector index, base index of its Ẑ)

    def _grow(self):
        n = self.cov.shape[0]
        c = torch.zeros(n + 1, n + 1, dtype=torch.float64)
        c[:n, :n] = self.cov
        self.cov = c
        return n

    def coeffs(self, i):
        c = self.vectors[i]
        return torch.cat([c, torch.zeros(self.cov.shape[0] - len(c), dtype=torch.float64)])

    def inner(self, i, j):
        return float(self.coeffs(i) @ self.cov @ self.coeffs(j))

    def input(self, variance=1.0):
        b = self._grow()
        self.cov[b, b] = variance
        self.owner.append(None)
        self.vectors.append(torch.nn.functional.one_hot(torch.tensor(b), b + 1).double())
        return len(self.vectors) - 1

    def matmul(self, M, x, factor, transpose_of):
        """Z^{Mx}; `factor` = fan-in × entry variance of M; `transpose_of` = the name of Mᵀ's uses."""
        b = self._grow()
        self.owner.append(M)
        # Ẑ covariance with earlier Ẑ of the same matrix
        for (name, y, base) in self.uses:
            if name == M:
                v = factor * self.inner(x, y)
                self.cov[b, base] = self.cov[base, b] = v
        self.cov[b, b] = factor * self.inner(x, x)
        z = torch.nn.functional.one_hot(torch.tensor(b), b + 1).double()
        cx = self.coeffs(x)
        for (name, y, base) in self.uses:
            if name == transpose_of and base < len(cx):
                z = z + factor * cx[base] * torch.cat([self.coeffs(y), torch.zeros(0, dtype=torch.float64)])[: b + 1]
        self.uses.append((M, x, b))
        self.vectors.append(z)
        return len(self.vectors) - 1


def catalan(k):
    return math.comb(2 * k, k) // (k + 1)


def mp_moment(k, gamma):
    return sum(gamma**r / (r + 1) * math.comb(k, r) * math.comb(k - 1, r) for r in range(k))


@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_semicircle_moments_from_one_symmetric_matrix(sigma):
    """<x, W^k x>/n for a symmetric W (entry variance σ²/n) -> σ^k Catalan(k/2), 0 for odd k."""
    prog = LinearProgram()
    x = prog.input()
    ys = [x]
    for _ in range(8):
        ys.append(prog.matmul("W", ys[-1], sigma**2, transpose_of="W"))
    moments = [prog.inner(x, y) for y in ys]
    for k, m in enumerate(moments):
        expected = sigma**k * catalan(k // 2) if k % 2 == 0 else 0.0
        assert m == pytest.approx(expected, abs=1e-12)
    # and el.rmt.semicircle agrees (its variance is σ²)
    law = el.rmt.semicircle(variance=sigma**2)
    lo, hi = law.support
    xs = torch.linspace(lo, hi, 20001, dtype=torch.float64)
    pdf = torch.as_tensor(law.pdf(xs), dtype=torch.float64)
    m4 = float(torch.trapezoid(xs**4 * pdf, xs))
    assert m4 == pytest.approx(moments[4], rel=1e-3)


@pytest.mark.parametrize("gamma", [0.25, 1.0, 2.0])
def test_marchenko_pastur_moments_from_a_matrix_and_its_transpose(gamma):
    """A is n×p with entry variance 1/n, v ∈ R^p: <v, (AᵀA)^k v>/p -> MP moments with ratio γ = p/n."""
    prog = LinearProgram()
    v = prog.input()
    vs = [v]
    for _ in range(5):
        u = prog.matmul("A", vs[-1], gamma, transpose_of="At")  # p terms × 1/n
        vs.append(prog.matmul("At", u, 1.0, transpose_of="A"))  # n terms × 1/n
    for k in range(1, 6):
        assert prog.inner(v, vs[k]) == pytest.approx(mp_moment(k, gamma), rel=1e-12)
    # against a finite random matrix (the test can fail: a wrong recursion is far off)
    g = torch.Generator().manual_seed(0)
    n = 600
    p = int(gamma * n)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    small = X.T @ X / n if p <= n else X @ X.T / n  # same nonzero spectrum, the smaller side
    ev = torch.linalg.eigvalsh(small)
    for k in range(1, 5):
        assert float((ev**k).sum()) / p == pytest.approx(mp_moment(k, gamma), rel=0.05)


def test_gradient_independence_program_kernel_matches_two_matrix_limit():
    """Programs with independent Gaussian matrices and no transposes need no correction terms: the engine gives
    C(W₃W₂W₁x, ·) = σ₁²σ₂²σ₃² <x, x'>/d and Θ = Σ_l Σ³ (every layer's weights contribute equally here)."""
    net = nn.Sequential(nn.Linear(5, 64, bias=False), nn.Linear(64, 64, bias=False), nn.Linear(64, 1, bias=False))
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = el.infinite.kernels(net, x, weight_std={"0": 1.0, "1": 0.5, "2": 2.0})
    assert torch.allclose(k.nngp, 0.25 * 4.0 * x @ x.T / 5, atol=1e-14)
    # NTK: Θ = Σ³ + σ₃²(Σ² + σ₂² Σ¹) = 3 Σ³
    s1 = x @ x.T / 5
    assert torch.allclose(k.ntk, 4.0 * 0.25 * s1 + 4.0 * (0.25 * s1 + 0.25 * s1), atol=1e-14)
