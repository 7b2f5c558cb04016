"""A reusable check-list for LinearOperators (in the spirit of GPyTorch's linear_operator test cases).

A concrete test subclasses :class:`OperatorChecks` and implements ``make()`` returning
``(operator, dense_truth)``; it inherits every check of products, adjoints and conversions.
"""

from __future__ import annotations

import numpy as np
import torch


class OperatorChecks:
    rtol = 1e-10
    atol = 1e-12

    def make(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self, a, b):
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=self.rtol, atol=self.atol * scale)

    def _gen(self):
        return torch.Generator().manual_seed(1234)

    def test_vector_product(self):
        op, A = self.make()
        x = torch.randn(A.shape[1], generator=self._gen(), dtype=A.dtype)
        y = op @ x
        assert y.shape == (A.shape[0],)
        self._close(y, A @ x)

    def test_block_product(self):
        op, A = self.make()
        X = torch.randn(A.shape[1], 3, generator=self._gen(), dtype=A.dtype)
        self._close(op @ X, A @ X)

    def test_adjoint_product(self):
        op, A = self.make()
        Y = torch.randn(A.shape[0], 2, generator=self._gen(), dtype=A.dtype)
        self._close(op.T @ Y, A.mH @ Y)
        self._close(op.T @ Y[:, 0], A.mH @ Y[:, 0])

    def test_to_dense(self):
        op, A = self.make()
        self._close(op.to_dense(), A)

    def test_to_scipy(self):
        op, A = self.make()
        S = op.to_scipy()
        X = np.random.default_rng(0).standard_normal((A.shape[1], 2))
        np.testing.assert_allclose(S @ X, A.numpy() @ X, rtol=1e-9, atol=1e-12)
        y = np.random.default_rng(1).standard_normal(A.shape[0])
        np.testing.assert_allclose(S.rmatvec(y), A.numpy().T @ y, rtol=1e-9, atol=1e-12)

    def test_tags_consistent(self):
        op, A = self.make()
        if op.is_symmetric:
            self._close(A, A.mH)
        if op.is_psd:
            assert float(torch.linalg.eigvalsh(A).min()) >= -1e-8 * max(1.0, float(A.abs().max()))
