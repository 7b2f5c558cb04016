"""Test matrices with prescribed spectra (float64 construction, seeded)."""

import torch

F64 = torch.float64


def prescribed(eigenvalues, seed=0, dtype=F64):
    """Q diag(eigenvalues) Qᵀ with a seeded random orthogonal Q (built in float64), as a dense tensor."""
    d = torch.as_tensor(eigenvalues, dtype=F64)
    n = d.numel()
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64))
    A = (Q * d) @ Q.T
    return ((A + A.T) / 2).to(dtype)


def random_hermitian(n, seed=0):
    """A dense complex128 Hermitian ``(X + Xᴴ) / 2`` with standard complex Gaussian ``X`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.complex(torch.randn(n, n, generator=g, dtype=F64), torch.randn(n, n, generator=g, dtype=F64))
    return (X + X.mH) / 2
