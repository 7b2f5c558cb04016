import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import scipy.sparse as sp
import torch

from eigenlens.linalg.sketch import (
    KINDS,
    SketchOperator,
    dct_ortho,
    fold,
    fwht_ortho,
    idct_ortho,
    sketch,
    splitmix64,
)
from tests.operator_harness import OperatorChecks

F64 = torch.float64


def _orthonormal(n, d, seed=0, coherent=False):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=F64)).Q
    return U


def _kw(kind, n):
    if kind == "importance":
        return {"probabilities": torch.linspace(1.0, 2.0, n, dtype=F64)}
    return {}


# ------------------------------------------------------------------ transforms
def test_dct_matches_scipy_and_inverts():
    x = torch.randn(37, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    ref = scipy.fft.dct(x.numpy(), axis=0, norm="ortho")
    np.testing.assert_allclose(dct_ortho(x).numpy(), ref, atol=1e-13)
    np.testing.assert_allclose(idct_ortho(dct_ortho(x)).numpy(), x.numpy(), atol=1e-13)
    np.testing.assert_allclose(dct_ortho(x[:, 0]).numpy(), ref[:, 0], atol=1e-13)


def test_fwht_matches_hadamard():
    x = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    H = scipy.linalg.hadamard(32) / math.sqrt(32)
    np.testing.assert_allclose(fwht_ortho(x).numpy(), H @ x.numpy(), atol=1e-13)
    with pytest.raises(ValueError, match="power of two"):
        fwht_ortho(torch.zeros(12, 1, dtype=F64))


def test_splitmix64_reference_value():
    # first output of SplitMix64 seeded with 0 (the published reference sequence)
    assert splitmix64(0) == 0xE220A8397B1DCDAF


# ------------------------------------------------------------------ the operator against its dense truth
class _SketchCase(OperatorChecks):
    kind = "gaussian"

    def make(self):
        n = 150
        S = sketch(self.kind, 24, n, seed=5, block_size=64, **_kw(self.kind, n))
        # the dense truth: the sketch applied to the identity through the block path (the adjoint, to_dense and
        # block products are separate code paths checked against it)
        D = S.apply(torch.eye(n, dtype=F64))
        return S, D


@pytest.mark.parametrize("kind", KINDS)
class TestSketchOperator(_SketchCase):
    @pytest.fixture(autouse=True)
    def _set_kind(self, kind):
        self.kind = kind


@pytest.mark.parametrize("kind", KINDS)
def test_unbiased_gram(kind):
    """E[SᵀS] = I: the average of SᵀS over 40 seeds is I up to the Monte-Carlo error."""
    n, m = 30, 12
    acc = torch.zeros(n, n, dtype=F64)
    reps = 40
    for s in range(reps):
        D = sketch(kind, m, n, seed=s, block_size=16, **_kw(kind, n)).to_dense()
        acc += D.T @ D
    acc /= reps
    # the diagonal mean has std ≲ 0.02 (a wrong scaling, e.g. 1/m instead of 1/√m, is off by ≥ 0.5)
    assert abs(float(acc.diagonal().mean()) - 1) < 0.1
    # off-diagonal entries have std ≤ 1/√(m·reps) ≈ 0.046: 7 sigma
    off = acc - torch.diag(acc.diagonal())
    assert float(off.abs().max()) < 0.32


# ------------------------------------------------------------------ subspace embedding within the bounds
def _distortion(S, U):
    s = torch.linalg.svdvals(S.apply(U))
    return float(s.min()), float(s.max())


def _chernoff_eps(L, d, delta):
    """ε such that the matrix Chernoff bound (Tropp 2012, Thm 1.1) gives failure probability ≤ δ."""

    def fail(eps):
        lo = d * (math.exp(-eps) / (1 - eps) ** (1 - eps)) ** (1 / L)
        hi = d * (math.exp(eps) / (1 + eps) ** (1 + eps)) ** (1 / L)
        return lo + hi

    grid = np.linspace(1e-3, 0.999, 2000)
    ok = [e for e in grid if fail(e) <= delta]
    return ok[0] if ok else 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_embedding_within_davidson_szarek(seed):
    n, d, m = 2000, 10, 200
    U = _orthonormal(n, d, seed=10 + seed)
    lo, hi = _distortion(sketch("gaussian", m, n, seed=seed), U)
    t = 3.0  # failure probability ≤ 2 exp(-t²/2) ≈ 2.2%
    eps = math.sqrt(d / m) + t / math.sqrt(m)
    assert 1 - eps <= lo and hi <= 1 + eps
    # and the bound is not vacuous: a sketch 10x smaller would break it
    assert eps < 0.5


@pytest.mark.parametrize("kind", ["rademacher", "sparse_sign"])
def test_subgaussian_and_sparse_sign_embedding(kind):
    # sub-Gaussian (Vershynin 2012, Thm 5.39) and OSNAP with k=8 nonzeros per column (Cohen 2016) behave like
    # Gaussian sketches; we check the Gaussian bound with t = 4
    n, d, m = 4000, 10, 300
    U = _orthonormal(n, d, seed=3)
    for seed in range(3):
        lo, hi = _distortion(sketch(kind, m, n, seed=seed, block_size=1024), U)
        eps = math.sqrt(d / m) + 4.0 / math.sqrt(m)
        assert 1 - eps <= lo and hi <= 1 + eps, (lo, hi, eps)


def test_countsketch_embedding_within_second_moment_bound():
    # Nelson & Nguyen (arXiv 1211.1002): E‖UᵀSᵀSU − I‖_F² ≤ 2d²/m; Markov with δ = 0.05
    n, d, m = 4000, 8, 2000
    U = _orthonormal(n, d, seed=4)
    for seed in range(3):
        S = sketch("countsketch", m, n, seed=seed, block_size=1024)
        SU = S.apply(U)
        dev = torch.linalg.matrix_norm(SU.T @ SU - torch.eye(d, dtype=F64), ord=2)
        assert dev <= math.sqrt(2 * d * d / (0.05 * m))
    # every column of a CountSketch has exactly one ±1
    D = sketch("countsketch", 20, 100, seed=1).to_dense()
    assert torch.equal((D != 0).sum(dim=0), torch.ones(100, dtype=torch.int64))
    assert set(D[D != 0].tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("kind", ["srht", "srct"])
def test_trig_sketch_within_tropp_bound(kind):
    # Tropp (arXiv 1011.1595, Thm 3.1): m ≥ 4(√d + √(8 log(dn)))² log d gives σ(SU) ∈ [√0.40, √1.48] w.p. ≥ 1 − O(1/d)
    n, d = 4096, 8
    m = math.ceil(4 * (math.sqrt(d) + math.sqrt(8 * math.log(d * n))) ** 2 * math.log(d))
    assert m <= n
    U = _orthonormal(n, d, seed=5)
    for seed in range(2):
        lo, hi = _distortion(sketch(kind, m, n, seed=seed), U)
        assert math.sqrt(0.40) <= lo and hi <= math.sqrt(1.48)


def test_sparse_sign_columns_have_k_distinct_nonzeros():
    S = sketch("sparse_sign", 30, 500, seed=7, nnz=8, block_size=128)
    D = S.to_dense()
    assert torch.equal((D != 0).sum(dim=0), torch.full((500,), 8, dtype=torch.int64))
    np.testing.assert_allclose(D[D != 0].abs().numpy(), 1 / math.sqrt(8))
    # nnz is capped by m
    assert sketch("sparse_sign", 3, 10, seed=0, nnz=8).nnz == 3


@pytest.mark.parametrize("kind", ["uniform", "importance"])
def test_row_sampling_within_matrix_chernoff(kind):
    n, d, m = 3000, 6, 1500
    U = _orthonormal(n, d, seed=8)
    lev = (U**2).sum(dim=1)
    if kind == "uniform":
        S = sketch("uniform", m, n, seed=0)
        L = n * float(lev.max()) / m
    else:
        S = sketch("importance", m, n, seed=0, probabilities=lev)
        L = d / m  # leverage-score sampling: every term has norm exactly d/m
    eps = _chernoff_eps(L, d, delta=0.01)
    s = torch.linalg.svdvals(S.apply(U)) ** 2
    assert 1 - eps <= float(s.min()) and float(s.max()) <= 1 + eps
    assert eps < 0.6  # a meaningful bound


# ------------------------------------------------------------------ counter-based determinism
@pytest.mark.parametrize("kind", KINDS)
def test_blockwise_streamed_equals_in_memory_bit_for_bit(kind):
    n, d, bs = 1000, 4, 128
    A = torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(0))
    S = sketch(kind, 40, n, seed=11, block_size=bs, **_kw(kind, n))
    full = S.apply(A)
    # streamed in shards of whole blocks, by a *different* operator object rebuilt from the seed
    S2 = sketch(kind, 40, n, seed=11, block_size=bs, **_kw(kind, n))
    parts = []
    for r0, r1 in [(0, 256), (256, 640), (640, 1000)]:
        parts.extend(S2.partials(A[r0:r1], row_offset=r0))
    parts.sort(key=lambda t: t[0])
    streamed = fold((P for _, P in parts), (40, d), F64)
    assert torch.equal(full, streamed)
    # a misaligned shard is refused with a clear message
    with pytest.raises(ValueError, match="multiples of the sketch block_size"):
        list(S2.partials(A[100:300], row_offset=100))


def test_same_seed_same_sketch_and_generator_semantics():
    A = torch.randn(300, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    a = sketch("sparse_sign", 20, 300).apply(A)
    b = sketch("sparse_sign", 20, 300).apply(A)
    assert torch.equal(a, b)  # generator=None: a fresh generator seeded 0
    c = sketch("sparse_sign", 20, 300, generator=torch.Generator().manual_seed(1)).apply(A)
    assert not torch.equal(a, c)
    assert not torch.equal(sketch("gaussian", 5, 9, seed=1).to_dense(), sketch("gaussian", 5, 9, seed=2).to_dense())


def test_global_rng_untouched():
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (checking the legacy global state is untouched)
    for kind in KINDS:
        sketch(kind, 10, 50, **_kw(kind, 50)).apply(torch.ones(50, 2, dtype=F64))
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


# ------------------------------------------------------------------ inputs
@pytest.mark.parametrize("kind", KINDS)
def test_numpy_scipy_and_torch_sparse_inputs(kind):
    n = 200
    As = sp.random(n, 7, density=0.2, format="csr", random_state=1)
    dense = torch.from_numpy(As.toarray())
    S = sketch(kind, 30, n, seed=2, block_size=64, **_kw(kind, n))
    ref = S.apply(dense)
    torch.testing.assert_close(S.apply(As), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S.apply(As.toarray()), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S.apply(dense.to_sparse()), ref, rtol=1e-12, atol=1e-12)
    v = S.apply(dense[:, 0])
    assert v.shape == (30,)
    torch.testing.assert_close(v, ref[:, 0])


def test_sparse_input_stays_sparse_for_sparse_sketch():
    # a 4·10^4 x 2·10^4 sparse matrix is not densified; the sparse-sign sketch handles it
    n, d = 40_000, 20_000  # dense A would take 6.4 GB
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, n, 3000), rng.integers(0, d, 3000)
    A = sp.csr_matrix((np.ones(3000), (rows, cols)), shape=(n, d))
    SA = sketch("sparse_sign", 16, n, seed=0).apply(A)
    assert SA.shape == (16, d)
    # spot-check one column against the explicit sparse S
    Ssp = sketch("sparse_sign", 16, n, seed=0).to_scipy_sparse()
    j = int(cols[0])
    np.testing.assert_allclose(SA[:, j].numpy(), (Ssp @ A[:, j]).toarray()[:, 0], atol=1e-12)
    S = sketch("countsketch", 16, n, seed=0).to_scipy_sparse()
    assert S.nnz == n


def test_float32_input_keeps_dtype():
    A = torch.randn(100, 3)
    out = sketch("srct", 20, 100, seed=0).apply(A)
    assert out.dtype == torch.float32


# ------------------------------------------------------------------ bad input
def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown kind 'hadamard'"):
        sketch("hadamard", 3, 10)
    with pytest.raises(ValueError, match="m must be a positive int"):
        sketch("gaussian", 0, 10)
    with pytest.raises(ValueError, match="m <= n is needed"):
        sketch("srht", 20, 10)
    with pytest.raises(ValueError, match="either seed= or generator="):
        sketch("gaussian", 3, 10, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed must be an int"):
        sketch("gaussian", 3, 10, seed=1.5)
    with pytest.raises(ValueError, match="needs probabilities="):
        sketch("importance", 3, 10)
    with pytest.raises(ValueError, match="length n=10"):
        sketch("importance", 3, 10, probabilities=np.ones(9))
    with pytest.raises(ValueError, match="nonnegative"):
        sketch("importance", 3, 10, probabilities=-np.ones(10))
    with pytest.raises(ValueError, match="only used by kind='importance'"):
        sketch("gaussian", 3, 10, probabilities=np.ones(10))
    S = sketch("gaussian", 3, 10)
    with pytest.raises(ValueError, match="A needs 10 rows"):
        S.apply(torch.ones(9, 2, dtype=F64))
    with pytest.raises(TypeError, match="expected a torch.Tensor, numpy.ndarray or scipy.sparse"):
        S.apply([[1.0] * 10])
    bad = torch.ones(10, 2, dtype=F64)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        S.apply(bad)
    with pytest.raises(ValueError, match="to_dense"):
        sketch("gaussian", 3, 10).to_scipy_sparse()
    assert isinstance(S, SketchOperator) and "gaussian" in repr(S)


@pytest.mark.parametrize("kind", ["sparse_sign", "countsketch"])
def test_sparse_block_products_on_threads_equal_the_serial_ones(kind):
    # with more than one intra-op thread the per-block SciPy products run on a thread pool
    g = torch.Generator().manual_seed(2)
    A = torch.randn(3000, 7, generator=g, dtype=torch.float64)
    S = sketch(kind, 50, 3000, seed=4, block_size=256)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = S.apply(A)
        torch.set_num_threads(3)
        pooled = S.apply(A)
        pooled_f32 = S.apply(A.float())
    finally:
        torch.set_num_threads(old)
    assert torch.equal(serial, pooled)
    ref = torch.from_numpy(S.to_scipy_sparse() @ A.numpy())
    torch.testing.assert_close(serial, ref, rtol=1e-12, atol=1e-12)
    assert pooled_f32.dtype == torch.float32
    torch.testing.assert_close(pooled_f32, ref.float(), rtol=1e-4, atol=1e-4)
