import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import aslinearoperator as scipy_aslinop

import eigenlens as el
from tests.operator_harness import OperatorChecks

F64 = torch.float64


def _rand(m, n, seed=0):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=F64)


class TestDense(OperatorChecks):
    def make(self):
        A = _rand(7, 5)
        return el.aslinearoperator(A), A


class TestDenseSymmetric(OperatorChecks):
    def make(self):
        A = _rand(6, 6)
        A = A + A.T
        op = el.aslinearoperator(A)
        assert op.is_symmetric
        return op, A


class TestNumpy(OperatorChecks):
    def make(self):
        A = np.random.default_rng(1).standard_normal((4, 6))
        return el.aslinearoperator(A), torch.as_tensor(A)


class TestScipySparse(OperatorChecks):
    def make(self):
        M = sp.random(8, 5, density=0.4, random_state=2, format="csr")
        return el.aslinearoperator(M), torch.as_tensor(M.toarray())


class TestScipySparseSymmetric(OperatorChecks):
    def make(self):
        M = sp.random(7, 7, density=0.5, random_state=5, format="csr")
        M = M + M.T
        op = el.aslinearoperator(M)
        assert isinstance(op, el.SparseMatrixOperator) and op.is_symmetric and op.dtype == F64
        return op, torch.as_tensor(M.toarray())


def test_scipy_sparse_complex_hermitian_products():
    M = sp.random(7, 5, density=0.5, random_state=5, format="csr") * (1 + 2j)
    op = el.aslinearoperator(M)
    D = torch.as_tensor(M.toarray())
    X = torch.randn(5, 2, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    Y = torch.randn(7, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(op @ X, D @ X)
    torch.testing.assert_close(op.T @ Y, D.mH @ Y)
    H = el.aslinearoperator(M @ M.conj().T)
    assert H.is_symmetric and H.dtype == torch.complex128


class TestTorchSparseCoo(OperatorChecks):
    def make(self):
        M = sp.random(6, 9, density=0.4, random_state=6, format="coo")
        idx = torch.as_tensor(np.vstack([M.row, M.col]), dtype=torch.int64)
        T = torch.sparse_coo_tensor(idx, torch.as_tensor(M.data), M.shape, check_invariants=True)
        op = el.aslinearoperator(T)
        assert op.A.layout == torch.sparse_csr  # converted once: CSR products are much faster than COO ones
        return op, torch.as_tensor(M.toarray())


def test_scipy_sparse_keeps_scipy_kernels_and_checks_symmetry():
    M = sp.random(30, 30, density=0.2, random_state=7, format="csc")
    S = M + M.T
    op = el.aslinearoperator(S, symmetric=True, dtype=torch.float32)
    assert isinstance(op, el.SparseMatrixOperator) and op.A.format == "csr" and op.dtype == torch.float32
    x = torch.randn(30, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op @ x, torch.as_tensor(S.toarray(), dtype=torch.float32) @ x)
    with pytest.raises(ValueError, match="sparse matrix is not symmetric"):
        el.aslinearoperator(M, symmetric=True)
    assert not el.aslinearoperator(M).is_symmetric
    with pytest.raises(ValueError, match="exceeds|max_elements|limit"):
        el.aslinearoperator(S).to_dense(max_elements=10)


class TestScipyLinearOperator(OperatorChecks):
    def make(self):
        A = np.random.default_rng(3).standard_normal((5, 3))
        return el.aslinearoperator(scipy_aslinop(A)), torch.as_tensor(A)


class TestCallable(OperatorChecks):
    def make(self):
        A = _rand(4, 6, seed=4)
        op = el.linear_operator(lambda X: A @ X, (4, 6), adjoint=lambda Y: A.T @ Y)
        return op, A


class TestComposite(OperatorChecks):
    def make(self):
        A, B, C = _rand(5, 5, 5), _rand(5, 5, 6), _rand(5, 3, 7)
        a, b, c = (el.aslinearoperator(M, symmetric=False) for M in (A, B, C))
        op = (2.0 * a - b / 4 + (-a)) @ c
        return op, (2.0 * A - B / 4 - A) @ C


class TestGram(OperatorChecks):
    def make(self):
        A = _rand(6, 4, seed=8)
        a = el.aslinearoperator(A)
        op = a.T @ a
        assert op.is_psd and op.is_symmetric
        return op, A.T @ A


class TestIdentity(OperatorChecks):
    def make(self):
        return el.IdentityOperator(4), torch.eye(4, dtype=F64)


def test_symmetric_detection_and_tags():
    A = _rand(4, 4)
    assert not el.aslinearoperator(A).is_symmetric
    S = el.aslinearoperator(A + A.T)
    assert S.is_symmetric and not S.is_psd
    P = el.aslinearoperator(A @ A.T, psd=True)
    assert P.is_psd and P.is_symmetric
    assert (S + P).is_symmetric and not (S + P).is_psd
    assert (P + P).is_psd and not (-1.0 * P).is_psd and (3 * P).is_psd
    assert not el.aslinearoperator(_rand(3, 4)).is_symmetric


def test_errors():
    A = _rand(4, 4)
    op = el.aslinearoperator(A)
    with pytest.raises(ValueError, match="not symmetric"):
        el.aslinearoperator(A, symmetric=True)
    with pytest.raises(ValueError, match="needs 4 rows"):
        op @ torch.ones(3, dtype=F64)
    with pytest.raises(TypeError, match="dtype mismatch.*cast"):
        op @ torch.ones(4, dtype=torch.float32)
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        op @ np.ones(4)
    with pytest.raises(ValueError, match="expected a vector"):
        op @ torch.ones(4, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match="inner dimensions"):
        el.aslinearoperator(_rand(3, 4)) @ el.aslinearoperator(_rand(3, 4))
    with pytest.raises(ValueError, match="shape mismatch"):
        el.aslinearoperator(_rand(3, 4)) + el.aslinearoperator(_rand(4, 3))
    with pytest.raises(ValueError, match="refuses an operator of shape \\(4, 4\\).*limit of 10"):
        el.linear_operator(lambda X: X, (4, 4)).to_dense(max_elements=10)
    with pytest.raises(TypeError, match="cannot make a linear operator from str"):
        el.aslinearoperator("A")
    with pytest.raises(ValueError, match="must be square"):
        el.linear_operator(lambda X: X, (3, 4), symmetric=True)


def test_nan_product_is_reported_with_call_number():
    calls = []

    def mm(X):
        calls.append(1)
        return X * (float("nan") if len(calls) == 2 else 1.0)

    op = el.linear_operator(mm, (3, 3), symmetric=True)
    op @ torch.ones(3, dtype=F64)
    with pytest.raises(FloatingPointError, match="call #2.*NaN or Inf"):
        op @ torch.ones(3, dtype=F64)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0, 3.0], True),
        ([1.0, float("nan"), 3.0], False),
        ([1.0, float("inf"), 3.0], False),
        ([float("inf"), float("-inf")], False),  # the sum is NaN
        ([1e308, 1e308, -1e308], True),  # finite entries whose sum overflows: the exact check decides
        ([], True),
    ],
)
def test_all_finite_matches_the_elementwise_check(values, expected):
    from eigenlens.linalg.operator import all_finite

    x = torch.tensor(values, dtype=F64)
    assert all_finite(x) is expected is bool(torch.isfinite(x).all())
    z = torch.complex(torch.zeros_like(x), x)  # the non-finite part in the imaginary component
    assert all_finite(z) is expected


def test_product_with_an_overflowing_sum_but_finite_entries_is_not_an_error():
    big = torch.full((4, 1), 1e308, dtype=F64)
    op = el.linear_operator(lambda X: X, (4, 4), symmetric=True)
    assert bool(torch.equal(op @ big, big))


def test_matvec_counter_and_rmatmul():
    A = _rand(3, 5)
    op = el.aslinearoperator(A)
    op @ _rand(5, 4)
    op.rmatmat(torch.ones(3, dtype=F64))
    assert op.num_matvecs == 5
    x = torch.ones(3, dtype=F64)
    torch.testing.assert_close(x @ op, x @ A)
    torch.testing.assert_close(_rand(2, 3) @ op, _rand(2, 3) @ A)
