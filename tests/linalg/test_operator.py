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


def test_matvec_counter_and_rmatmul():
    A = _rand(3, 5)
    op = el.aslinearoperator(A)
    op @ _rand(5, 4)
    op.rmatmat(torch.ones(3, dtype=F64))
    assert op.num_matvecs == 5
    x = torch.ones(3, dtype=F64)
    torch.testing.assert_close(x @ op, x @ A)
    torch.testing.assert_close(_rand(2, 3) @ op, _rand(2, 3) @ A)
