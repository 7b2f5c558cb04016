import pytest
import torch

from eigenlens.linalg.streaming import FrequentDirections, Oja, RandomOrderTopEigenvector

F64 = torch.float64


def _stream(n, d, gap, seed=0):
    """Rows with covariance diag(1 + gap, 1, 0.8, ...) rotated by a random orthogonal matrix."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64)).Q
    scales = torch.cat([torch.tensor([1.0 + gap, 1.0]), torch.full((d - 2,), 0.8)]).to(F64).sqrt()
    X = (torch.randn(n, d, generator=g, dtype=F64) * scales) @ Q.T
    return X, Q[:, 0]


def _true_top(X):
    return torch.linalg.eigh(X.T @ X)[1][:, -1]


def _corr(u, v):
    return float((u @ v).abs() / (u.norm() * v.norm()))


@pytest.mark.parametrize("gap", [0.5, 2.0])
def test_oja_random_order(gap):
    X, _ = _stream(6000, 10, gap, seed=1)
    oja = Oja(10, generator=torch.Generator().manual_seed(0))
    for chunk in X.split(500):
        oja.partial_fit(chunk)
    target = 0.95 if gap == 0.5 else 0.99
    assert _corr(oja.vector, _true_top(X)) > target
    assert oja.rows_seen == 6000 and oja.memory_floats == 13
    # a run that sees only the first 50 rows is clearly worse (the test can fail)
    early = Oja(10, generator=torch.Generator().manual_seed(0)).partial_fit(X[:50])
    assert _corr(early.vector, _true_top(X)) < _corr(oja.vector, _true_top(X))


def test_oja_adversarial_order_with_gap():
    # adversarial order: rows sorted so that the stream first shows the *second* direction strongly
    X, _ = _stream(6000, 8, 2.0, seed=2)
    v2 = torch.linalg.eigh(X.T @ X)[1][:, -2]
    order = torch.argsort((X @ v2).abs(), descending=True)
    oja = Oja(8, generator=torch.Generator().manual_seed(0)).partial_fit(X[order])
    assert _corr(oja.vector, _true_top(X)) > 0.9


@pytest.mark.parametrize("gap", [0.5, 2.0])
def test_kacham_woodruff_random_order(gap):
    X, _ = _stream(6000, 10, gap, seed=3)
    X[17] *= 40  # a heavy row: must be kept exactly
    est = RandomOrderTopEigenvector(10, sample_rate=0.3, generator=torch.Generator().manual_seed(0))
    for chunk in X.split(1000):
        est.partial_fit(chunk)
    assert est.num_heavy >= 1 and est.num_sampled < 6000 * 0.4
    assert _corr(est.vector, _true_top(X)) > (0.95 if gap == 0.5 else 0.99)
    lam = float(torch.linalg.eigvalsh(X.T @ X)[-1])
    assert est.eigenvalue == pytest.approx(lam, rel=0.15)
    assert est.memory_floats == 100


def test_kacham_woodruff_adversarial_order():
    X, _ = _stream(6000, 8, 2.0, seed=4)
    order = torch.argsort(X.norm(dim=1))  # increasing norms: the heavy rows come last
    est = RandomOrderTopEigenvector(8, sample_rate=0.3).partial_fit(X[order])
    assert _corr(est.vector, _true_top(X)) > 0.95


def test_frequent_directions_guarantee():
    X, _ = _stream(3000, 20, 3.0, seed=5)
    ell, k = 8, 2
    fd = FrequentDirections(20, ell)
    for chunk in X.split(123):
        fd.partial_fit(chunk)
    B = fd.sketch
    assert B.shape[0] <= 2 * ell and fd.memory_floats == 2 * ell * 20
    E = X.T @ X - B.T @ B
    ev = torch.linalg.eigvalsh(E)
    assert float(ev.min()) >= -1e-8 * float(ev.abs().max())  # AᵀA − BᵀB is PSD
    s = torch.linalg.svdvals(X)
    tail = float((s[k:] ** 2).sum())
    assert float(ev.max()) <= tail / (ell - k) * (1 + 1e-10)
    assert float(ev.max()) <= fd.shrinkage * (1 + 1e-10)
    assert _corr(fd.vector, _true_top(X)) > 0.99


def test_bad_inputs():
    with pytest.raises(ValueError, match="d must be a positive int"):
        Oja(0)
    with pytest.raises(ValueError, match="lr must be"):
        Oja(3, lr=-1.0)
    with pytest.raises(ValueError, match=r"expected rows of shape \[k, 3\]"):
        Oja(3).partial_fit(torch.ones(2, 4, dtype=F64))
    bad = torch.ones(2, 3, dtype=F64)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        FrequentDirections(3, 2).partial_fit(bad)
    with pytest.raises(ValueError, match="sample_rate must be"):
        RandomOrderTopEigenvector(3, sample_rate=0.0)
    with pytest.raises(ValueError, match="ell must be"):
        FrequentDirections(3, 0)
