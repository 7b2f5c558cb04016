"""One block-wise engine for row-partitioned matrices: in memory, on Dask arrays, on torch.distributed shards.

Sketching is linear, ``S·A = Σ_b S_b·A_b`` over row blocks ``A_b``, and so are ``Aᵀ·U = Σ_b A_bᵀ·U_b`` and
the squared norms of tall vectors. The solvers of :mod:`eigenlens.linalg.lstsq` and
:mod:`eigenlens.linalg.lowrank` are written once against the small *row-block backend* interface below:

* tall ("row") vectors ``U [n, k]`` live where their rows live (a tensor in memory, a Dask array chunked
  by blocks, or the local shard of each rank);
* every reduction over rows is the left fold, in block order, of per-block partial results
  (:func:`eigenlens.linalg.sketch.fold`);
* small ``d × k`` quantities are replicated and computed identically everywhere.

Because the per-block partials and the fold order do not depend on where a block lives, the in-memory,
Dask and torch.distributed computations give the same bits (same seed, same number of intra-op threads;
LAPACK's blocked QR may round differently with a different thread count; the Dask kernels copy each block
into aligned memory because MKL's kernels may depend on alignment). On torch.distributed the
partials are placed in a zero-filled ``[num_blocks, …]`` buffer and summed with ``all_reduce`` (each slot is
nonzero on exactly one rank, so the sum is exact), then folded on every rank. The tall QR is a
one-level TSQR (Demmel, Grigori, Hoemmen, Langou, arXiv 0808.2664): QR of each block, QR of the stacked
``R`` factors in block order. LSQR's step ``U ← A Z − α U`` with ``‖U‖²`` and ``Aᴴ U``
(:meth:`RowBlocks.update_rmatmat`) reads each block once: the per-block kernel :func:`fused_block` (the
same function on every backend) works through cache-sized sub-blocks of the block.

Entry points: :func:`row_blocks` (wrap a matrix), :func:`shard_rows` (block-aligned row ranges for
ranks), :func:`torch_distributed_rows` (this rank's shard), :func:`dask_rows` (a Dask array).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens.linalg.operator import LinearOperator
from eigenlens.linalg.sketch import DEFAULT_BLOCK_SIZE, SketchOperator, fold

__all__ = [
    "RowBlocks",
    "OperatorRows",
    "LocalRows",
    "TorchDistributedRows",
    "DaskRows",
    "row_blocks",
    "shard_rows",
    "torch_distributed_rows",
    "dask_rows",
]


class RowBlocks:
    """Interface of a row-partitioned ``n × d`` matrix ``A`` (see the module docstring).

    Attributes:
        shape: ``(n, d)``; dtype; device; block_size (rows per block, a multiple-of-blocks sharding unit).
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    block_size: int

    # tall vectors ------------------------------------------------------------------
    def matmat(self, V: Tensor) -> Any:
        """``A @ V`` for replicated ``V [d, k]``: a row vector ``[n, k]``."""
        raise NotImplementedError

    def rmatmat(self, U: Any) -> Tensor:
        """``Aᵀ @ U`` for a row vector ``U [n, k]``: replicated ``[d, k]``."""
        raise NotImplementedError

    def sketch(self, S: SketchOperator) -> Tensor:
        """``S @ A``: replicated ``[m, d]``."""
        raise NotImplementedError

    def rows(self, x: Any) -> Any:
        """A row vector from a user's right-hand side ``x [n]`` or ``[n, k]`` (aligned with ``A``'s rows)."""
        raise NotImplementedError

    def sketch_rows(self, S: SketchOperator, U: Any) -> Tensor:
        """``S @ U`` for a row vector ``U``: replicated ``[m, k]``."""
        raise NotImplementedError

    def axpby(self, a: float, X: Any, b: float, Y: Any) -> Any:
        """``a·X + b·Y`` for row vectors."""
        raise NotImplementedError

    def sqnorms(self, U: Any) -> Tensor:
        """Column-wise ``‖U[:, j]‖²`` (fold of per-block partial sums): replicated ``[k]``."""
        raise NotImplementedError

    def rmul(self, U: Any, W: Tensor) -> Any:
        """``U @ W`` for a row vector ``U [n, k]`` and replicated ``W [k, l]``."""
        raise NotImplementedError

    def inner(self, U: Any, W: Any) -> Tensor:
        """``Uᴴ W`` for row vectors ``U [n, k]``, ``W [n, l]`` (fold of per-block products): replicated ``[k, l]``."""
        raise NotImplementedError

    def tsqr(self, Y: Any) -> tuple[Any, Tensor]:
        """Thin QR ``Y = Q R`` of a tall row vector (TSQR): ``(Q [n, k] row vector, R [k, k] replicated)``."""
        raise NotImplementedError

    def fro_norm(self) -> float:
        """``‖A‖_F`` (fold of per-block sums of squares)."""
        raise NotImplementedError

    def gather(self, U: Any) -> Tensor:
        """The rows of ``U`` held here, as a torch tensor (all rows in memory/Dask; the shard on a rank)."""
        raise NotImplementedError

    def update_rmatmat(
        self, Z: Tensor, alpha: float, U: Any, *, fro: bool = False
    ) -> tuple[Any, Tensor, Tensor, Tensor | None]:
        """``U ← A Z − α U``, then ``‖U[:, j]‖²`` and ``Aᴴ U`` (and ``‖A‖_F²``) from the same read of ``A``.

        The step of LSQR (Paige & Saunders 1982) and of residual certificates: one pass over ``A`` instead of
        the three of ``matmat``, ``sqnorms`` and ``rmatmat``. The explicit backends run :func:`fused_block` on
        every row block (its partials folded in block order, so all of them give the same bits); this default
        composes the unfused methods (matrix-free operators, sparse matrices).

        Args:
            Z: replicated ``[d, k]``.
            alpha: the scalar ``α``.
            U: row vector ``[n, k]``; overwritten where the backend holds it as a tensor — use the return value.
            fro: also return ``‖A‖_F²`` (float64 ``[1]``).

        Returns:
            ``(U_new [n, k] row vector, ‖U_new[:, j]‖² [k] (real), Aᴴ U_new [d, k], ‖A‖_F² [1] or None)``.
        """
        U = self.axpby(1.0, self.matmat(Z), -alpha, U)
        f2 = torch.tensor([self.fro_norm() ** 2], dtype=torch.float64) if fro else None
        return U, self.sqnorms(U), self.rmatmat(U), f2


class OperatorRows(RowBlocks):
    """A matrix-free :class:`LinearOperator` (one block; no bit-for-bit guarantee beyond one process)."""

    def __init__(self, op: LinearOperator) -> None:
        self.op = op
        self.shape = op.shape
        self.dtype = op.dtype
        self.device = op.device
        self.block_size = max(1, op.shape[0])

    def matmat(self, V: Tensor) -> Tensor:
        return self.op @ V

    def rmatmat(self, U: Tensor) -> Tensor:
        return self.op.T @ U

    def sketch(self, S: SketchOperator) -> Tensor:
        # S·A = (Aᵀ·Sᵀ)ᵀ, Sᵀ applied in m-column chunks
        m = S.shape[0]
        cols = []
        for s in range(0, m, 256):
            E = torch.zeros(m, min(256, m - s), dtype=self.dtype, device=self.device)
            E[torch.arange(s, s + E.shape[1]), torch.arange(E.shape[1])] = 1
            cols.append(self.op.T @ S._adjoint(E))
        return torch.cat(cols, dim=1).T.contiguous()

    def rows(self, x: Any) -> Tensor:
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        return x[:, None] if x.ndim == 1 else x

    def sketch_rows(self, S: SketchOperator, U: Tensor) -> Tensor:
        return S.apply(U)

    def axpby(self, a: float, X: Tensor, b: float, Y: Tensor) -> Tensor:
        return a * X + b * Y

    def sqnorms(self, U: Tensor) -> Tensor:
        return (U * U.conj()).real.sum(dim=0)

    def rmul(self, U: Tensor, W: Tensor) -> Tensor:
        return U @ W

    def inner(self, U: Tensor, W: Tensor) -> Tensor:
        return U.mH @ W

    def tsqr(self, Y: Tensor) -> tuple[Tensor, Tensor]:
        Q, R = torch.linalg.qr(Y)
        return Q, R

    def fro_norm(self) -> float:
        n, d = self.shape
        if d <= 64:
            return float(torch.linalg.matrix_norm(self.op.to_dense(max_elements=max(n * d, 1))))
        from eigenlens.linalg.random import gaussian

        # Hutchinson estimate of ‖A‖_F² with 32 probes (fixed seed): adequate for a tolerance scale
        Z = gaussian(d, 32, generator=torch.Generator().manual_seed(0), dtype=self.dtype, device=self.device)
        return float(torch.sqrt(self.sqnorms(self.op @ Z).mean()))

    def gather(self, U: Tensor) -> Tensor:
        return U


class LocalRows(RowBlocks):
    """An explicit matrix held here: the whole ``A`` (in memory) or a block-aligned row shard of it.

    Args:
        A: ``[n_local, d]`` torch tensor (dense), NumPy array or SciPy sparse matrix.
        block_size: rows per block; must equal the sketches' ``block_size`` for bit-for-bit results.
        row_offset: global index of the first row (a multiple of ``block_size``).
        n: global number of rows (default ``row_offset + n_local``).
    """

    def __init__(self, A: Any, *, block_size: int = DEFAULT_BLOCK_SIZE, row_offset: int = 0, n: int | None = None):
        import scipy.sparse as sp

        self.sparse = sp.issparse(A)
        if self.sparse:
            A = sp.csr_matrix(A)
            if not np.issubdtype(A.dtype, np.floating):
                A = A.astype(np.float64)
            self.dtype = torch.from_numpy(np.zeros(0, dtype=A.dtype)).dtype
            self.device = torch.device("cpu")
        else:
            if isinstance(A, np.ndarray):
                A = torch.from_numpy(np.ascontiguousarray(A))
            if not isinstance(A, Tensor):
                raise TypeError(
                    f"expected a torch.Tensor, numpy.ndarray or scipy.sparse matrix, got {type(A).__name__}"
                )
            if A.layout != torch.strided:
                A = A.to_dense()
            if not (A.dtype.is_floating_point or A.dtype.is_complex):
                A = A.to(torch.float64)
            self.dtype, self.device = A.dtype, A.device
        if A.ndim != 2:
            raise ValueError(f"expected a 2-D matrix A [n, d], got shape {tuple(A.shape)}")
        self.A = A
        self.block_size = int(block_size)
        self.row_offset = int(row_offset)
        n_local = A.shape[0]
        self.n_local = n_local
        n = self.row_offset + n_local if n is None else int(n)
        self.shape = (n, A.shape[1])
        if self.row_offset % self.block_size or (self.row_offset + n_local != n and n_local % self.block_size):
            raise ValueError(
                f"a row shard must start and end at multiples of block_size={self.block_size} (or end at row n={n}); "
                f"got rows [{self.row_offset}, {self.row_offset + n_local}). Use shard_rows(n, world_size) to split"
            )
        self.num_blocks = max(1, -(-n // self.block_size))
        first = self.row_offset // self.block_size
        self.local_blocks = list(range(first, first + -(-n_local // self.block_size))) if n_local else []

    # ------------------------------------------------------------ block helpers
    def _slices(self) -> list[tuple[int, slice]]:
        out = []
        for b in self.local_blocks:
            s = b * self.block_size - self.row_offset
            out.append((b, slice(s, min(self.n_local, s + self.block_size))))
        return out

    def _Ab(self, sl: slice) -> Tensor:
        if self.sparse:
            return self.A[sl]
        return self.A[sl]

    def reduce(self, partials: list[tuple[int, Tensor]], shape: tuple[int, ...]) -> Tensor:
        """Fold of per-block partials (global block order); overridden on torch.distributed."""
        partials = sorted(partials, key=lambda t: t[0])
        return fold((P for _, P in partials), shape, self.dtype if not partials else partials[0][1].dtype, self.device)

    # ------------------------------------------------------------ interface
    def matmat(self, V: Tensor) -> Tensor:
        outs = []
        for _, sl in self._slices():
            Ab = self._Ab(sl)
            if self.sparse:
                outs.append(torch.from_numpy(np.asarray(Ab @ V.cpu().numpy())).to(V.dtype))
            else:
                outs.append(Ab @ V)
        return torch.cat(outs, dim=0) if outs else torch.zeros(0, V.shape[1], dtype=V.dtype, device=V.device)

    def rmatmat(self, U: Tensor) -> Tensor:
        parts = []
        for b, sl in self._slices():
            Ab = self._Ab(sl)
            if self.sparse:
                P = torch.from_numpy(np.asarray(Ab.T @ U[sl].cpu().numpy())).to(U.dtype)
            else:
                P = Ab.mT.conj() @ U[sl]
            parts.append((b, P))
        return self.reduce(parts, (self.shape[1], U.shape[1]))

    def sketch(self, S: SketchOperator) -> Tensor:
        self._check_sketch(S)
        parts = list(S.partials(self.A, self.row_offset, dtype=self.dtype))
        return self.reduce(parts, (S.shape[0], self.shape[1]))

    def _check_sketch(self, S: SketchOperator) -> None:
        if S.shape[1] != self.shape[0]:
            raise ValueError(f"the sketch has shape {S.shape}, but A has {self.shape[0]} rows")
        n = self.shape[0]
        if S.block_size != self.block_size and not (S.block_size >= n and self.block_size >= n):
            raise ValueError(
                f"the sketch's block_size={S.block_size} differs from the row blocks' block_size={self.block_size}; "
                "build both with the same block_size"
            )

    def rows(self, x: Any) -> Tensor:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        x = x.to(dtype=self.dtype, device=self.device)
        x = x[:, None] if x.ndim == 1 else x
        if x.shape[0] == self.shape[0] and self.n_local != self.shape[0]:
            x = x[self.row_offset : self.row_offset + self.n_local]
        return x

    def sketch_rows(self, S: SketchOperator, U: Tensor) -> Tensor:
        self._check_sketch(S)
        parts = list(S.partials(U, self.row_offset, dtype=U.dtype))
        return self.reduce(parts, (S.shape[0], U.shape[1]))

    def axpby(self, a: float, X: Tensor, b: float, Y: Tensor) -> Tensor:
        return a * X + b * Y

    def sqnorms(self, U: Tensor) -> Tensor:
        parts = [(b, (U[sl] * U[sl].conj()).real.sum(dim=0)) for b, sl in self._slices()]
        real = torch.empty((), dtype=U.dtype).real.dtype
        out = self.reduce(parts, (U.shape[1],))
        return out.to(real)

    def rmul(self, U: Tensor, W: Tensor) -> Tensor:
        outs = [U[sl] @ W for _, sl in self._slices()]
        return torch.cat(outs, dim=0) if outs else torch.zeros(0, W.shape[1], dtype=W.dtype, device=W.device)

    def inner(self, U: Tensor, W: Tensor) -> Tensor:
        parts = [(b, U[sl].mH @ W[sl]) for b, sl in self._slices()]
        return self.reduce(parts, (U.shape[1], W.shape[1]))

    def tsqr(self, Y: Tensor) -> tuple[Tensor, Tensor]:
        k = Y.shape[1]
        local = {}
        parts = []
        for b, sl in self._slices():
            Qb, Rb = torch.linalg.qr(Y[sl])
            local[b] = Qb
            Rpad = torch.zeros(k, k, dtype=Y.dtype, device=Y.device)
            Rpad[: Rb.shape[0]] = Rb
            parts.append((b, Rpad))
        Rs = self.stack(parts, (k, k))  # [num_blocks, k, k], replicated
        Q2, R = torch.linalg.qr(Rs.reshape(-1, k))
        Q2 = Q2.reshape(self.num_blocks, k, k)
        outs = [local[b] @ Q2[b, : local[b].shape[1]] for b, _ in self._slices()]
        Q = torch.cat(outs, dim=0) if outs else torch.zeros(0, k, dtype=Y.dtype, device=Y.device)
        return Q, R

    def stack(self, parts: list[tuple[int, Tensor]], shape: tuple[int, ...]) -> Tensor:
        """``[num_blocks, *shape]`` with every block's partial in its slot (replicated)."""
        dt = parts[0][1].dtype if parts else self.dtype
        out = torch.zeros((self.num_blocks, *shape), dtype=dt, device=self.device)
        for b, P in parts:
            out[b] = P
        return out

    def fro_norm(self) -> float:
        parts = []
        for b, sl in self._slices():
            Ab = self._Ab(sl)
            if self.sparse:
                v = torch.tensor([float(abs(Ab.multiply(Ab.conj())).sum())], dtype=torch.float64)
            else:
                v = (Ab * Ab.conj()).real.sum().reshape(1).to(torch.float64)
            parts.append((b, v))
        return float(torch.sqrt(self.reduce(parts, (1,))[0]))

    def update_rmatmat(
        self, Z: Tensor, alpha: float, U: Tensor, *, fro: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        if self.sparse:
            return super().update_rmatmat(Z, alpha, U, fro=fro)
        if not U.is_contiguous():
            U = U.contiguous()
        Z = Z.to(dtype=self.dtype, device=self.device).contiguous()
        d, k = self.shape[1], U.shape[1]
        gs, f2 = [], []
        for b, sl in self._slices():
            s_b, g_b, f_b = fused_block(self.A[sl], Z, alpha, U[sl], fro)
            # Aᴴu and ‖u‖² packed in one partial: one reduction (one all_reduce on torch.distributed); the fold
            # is elementwise, so the bits are those of two separate folds
            gs.append((b, torch.cat([g_b.reshape(-1), s_b.to(g_b.dtype)])))
            if fro:
                f2.append((b, f_b))
        red = self.reduce(gs, (d * k + k,))
        real = torch.empty((), dtype=self.dtype).real.dtype
        out_f = self.reduce(f2, (1,)).to(torch.float64) if fro else None
        return U, red[d * k :].real.to(real), red[: d * k].reshape(d, k), out_f

    def gather(self, U: Tensor) -> Tensor:
        return U


class TorchDistributedRows(LocalRows):
    """This rank's block-aligned row shard of ``A`` in a ``torch.distributed`` process group.

    Reductions place the local block partials into a zero ``[num_blocks, …]`` buffer, ``all_reduce`` it
    (exact: one nonzero per slot) and fold it in block order, so every rank obtains the in-memory bits.
    """

    def __init__(self, A: Any, *, n: int, row_offset: int, block_size: int = DEFAULT_BLOCK_SIZE, group: Any = None):
        super().__init__(A, block_size=block_size, row_offset=row_offset, n=n)
        self.group = group

    def stack(self, parts: list[tuple[int, Tensor]], shape: tuple[int, ...]) -> Tensor:
        import torch.distributed as dist

        out = super().stack(parts, shape)
        # agree on the dtype across ranks (a rank without blocks uses self.dtype)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def reduce(self, partials: list[tuple[int, Tensor]], shape: tuple[int, ...]) -> Tensor:
        stacked = self.stack(partials, shape)
        return fold(list(stacked), shape, stacked.dtype, self.device)


class DaskRows(RowBlocks):
    """A Dask array ``A [n, d]`` rechunked to ``block_size`` rows per chunk; row vectors are Dask arrays.

    Every per-block partial is computed on the workers (one task per block); the small partials come back
    and are folded here in block order.
    """

    def __init__(self, A: Any, *, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        import dask
        import dask.array as da

        if A.ndim != 2:
            raise ValueError(f"expected a 2-D Dask array, got shape {A.shape}")
        self.block_size = int(block_size)
        self.A = A.rechunk((self.block_size, A.shape[1])).persist()
        self.shape = tuple(int(s) for s in A.shape)
        self.dtype = torch.from_numpy(np.zeros(0, dtype=np.result_type(A.dtype, np.float32))).dtype
        self.device = torch.device("cpu")
        self.num_blocks = len(self.A.chunks[0])
        self._da, self._dask = da, dask

    def _np_dtype(self) -> np.dtype:
        return torch.empty(0, dtype=self.dtype).numpy().dtype

    def _blocks(self, X: Any) -> list[Any]:
        X = X.rechunk((self.block_size, X.shape[1]))
        return list(X.to_delayed().ravel())

    def _partials(self, fn: Any, *args: Any) -> list[np.ndarray]:
        """Run ``fn(block_0_of_each_arg…, b)`` for every block ``b`` on the workers; return the results in order."""
        tasks = [self._dask.delayed(fn)(*blocks, b) for b, blocks in enumerate(zip(*args))]
        return list(self._dask.compute(*tasks))

    def _fold(self, parts: list[np.ndarray], shape: tuple[int, ...]) -> Tensor:
        return fold((torch.from_numpy(np.ascontiguousarray(p)) for p in parts), shape, self.dtype)

    def _from_blocks(self, fn: Any, args: list[list[Any]], k: int, dtype: np.dtype) -> Any:
        rows = [r1 - r0 for r0, r1 in (self._range(b) for b in range(self.num_blocks))]
        tasks = [self._dask.delayed(fn)(*blocks, b) for b, blocks in enumerate(zip(*args))]
        arrs = [self._da.from_delayed(t, shape=(r, k), dtype=dtype) for t, r in zip(tasks, rows)]
        return self._da.concatenate(arrs, axis=0).persist()

    def _range(self, b: int) -> tuple[int, int]:
        r0 = b * self.block_size
        return r0, min(self.shape[0], r0 + self.block_size)

    def matmat(self, V: Tensor) -> Any:
        Vn = V.cpu().numpy()
        return self._from_blocks(_np_matmul_b, [self._blocks(self.A), [Vn] * self.num_blocks], V.shape[1],
                                 self._np_dtype())

    def rmatmat(self, U: Any) -> Tensor:
        parts = self._partials(_np_rmatmul, self._blocks(self.A), self._blocks(U))
        return self._fold(parts, (self.shape[1], U.shape[1]))

    def sketch(self, S: SketchOperator) -> Tensor:
        return self.sketch_rows(S, self.A)

    def sketch_rows(self, S: SketchOperator, U: Any) -> Tensor:
        if S.block_size != self.block_size:
            raise ValueError(
                f"the sketch's block_size={S.block_size} differs from the Dask blocks' block_size={self.block_size}"
            )
        if S.shape[1] != self.shape[0]:
            raise ValueError(f"the sketch has shape {S.shape}, but A has {self.shape[0]} rows")
        parts = self._partials(_np_sketch_block, self._blocks(U), [S] * self.num_blocks)
        return self._fold(parts, (S.shape[0], U.shape[1]))

    def rows(self, x: Any) -> Any:
        if isinstance(x, Tensor):
            x = x.cpu().numpy()
        if not hasattr(x, "to_delayed"):
            x = self._da.from_array(np.asarray(x, dtype=self._np_dtype()))
        x = x.astype(self._np_dtype())
        if x.ndim == 1:
            x = x[:, None]
        return x.rechunk((self.block_size, x.shape[1])).persist()

    def axpby(self, a: float, X: Any, b: float, Y: Any) -> Any:
        return (a * X + b * Y).persist()

    def sqnorms(self, U: Any) -> Tensor:
        parts = self._partials(_np_sqnorm, self._blocks(U))
        return self._fold(parts, (U.shape[1],))

    def rmul(self, U: Any, W: Tensor) -> Any:
        Wn = W.cpu().numpy()
        return self._from_blocks(_np_matmul_b, [self._blocks(U), [Wn] * self.num_blocks], W.shape[1], U.dtype)

    def inner(self, U: Any, W: Any) -> Tensor:
        parts = self._partials(_np_inner, self._blocks(U), self._blocks(W))
        return self._fold(parts, (U.shape[1], W.shape[1]))

    def tsqr(self, Y: Any) -> tuple[Any, Tensor]:
        k = Y.shape[1]
        blocks = self._blocks(Y)
        Rs = torch.from_numpy(np.stack(self._partials(_np_block_r, blocks)))
        Q2, R = torch.linalg.qr(Rs.reshape(-1, k))
        Q2n = Q2.reshape(self.num_blocks, k, k).numpy()
        Q = self._from_blocks(_np_block_q, [blocks, [Q2n] * self.num_blocks], k, Y.dtype)
        return Q, R

    def fro_norm(self) -> float:
        parts = self._partials(_np_frosq, self._blocks(self.A))
        return float(torch.sqrt(fold((torch.from_numpy(p) for p in parts), (1,), torch.float64)[0]))

    def update_rmatmat(
        self, Z: Tensor, alpha: float, U: Any, *, fro: bool = False
    ) -> tuple[Any, Tensor, Tensor, Tensor | None]:
        dask, da = self._dask, self._da
        Zn = Z.to(self.dtype).cpu().numpy()
        k = U.shape[1]
        fn = dask.delayed(_np_fused, nout=4)
        tasks = [fn(a, u, Zn, float(alpha), fro, b)
                 for b, (a, u) in enumerate(zip(self._blocks(self.A), self._blocks(U)))]
        tasks = list(dask.persist(*tasks))  # one kernel run per block; the pieces below index into its result
        rows = [r1 - r0 for r0, r1 in (self._range(b) for b in range(self.num_blocks))]
        Unew = da.concatenate([da.from_delayed(t[0], shape=(r, k), dtype=self._np_dtype())
                               for t, r in zip(tasks, rows)], axis=0).persist()
        parts = dask.compute(*[(t[1], t[2], t[3]) for t in tasks])
        real = torch.empty((), dtype=self.dtype).real.dtype
        sq = self._fold([p[0] for p in parts], (k,)).to(real)
        g = self._fold([p[1] for p in parts], (self.shape[1], k))
        f2 = fold((torch.from_numpy(p[2]) for p in parts), (1,), torch.float64) if fro else None
        return Unew, sq, g, f2

    def gather(self, U: Any) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(U.compute())))


# -------------------------------------------------------------------- the fused LSQR step of one block
#: Bytes of ``A`` per sub-block of :func:`fused_block` (a per-core L2 cache; 0.4–1.6 MB measured equally fast).
FUSED_SUBBLOCK_BYTES = 2**20


def fused_subblock_rows(d: int, itemsize: int) -> int:
    """Rows per cache-resident sub-block of :func:`fused_block` (``d`` columns of ``itemsize`` bytes).

    A multiple of 64 near :data:`FUSED_SUBBLOCK_BYTES`, so the sub-blocks of an aligned block stay 64-byte
    aligned; it depends only on ``d`` and the dtype, so every backend cuts a block the same way.
    """
    return max(64, (FUSED_SUBBLOCK_BYTES // max(1, d * itemsize)) // 64 * 64)


def fused_block_numpy(a: Tensor) -> bool:
    """Whether :func:`fused_block` runs its NumPy kernel on ``a`` (CPU, real float32/float64)."""
    return a.device.type == "cpu" and a.dtype in (torch.float64, torch.float32)


def fused_block(
    a: Tensor, Z: Tensor, alpha: float, u: Tensor, fro: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The per-block work of :meth:`RowBlocks.update_rmatmat` (the same function on every backend).

    Over cache-sized sub-blocks ``a_s`` (:func:`fused_subblock_rows` rows) of the block ``a [n_b, d]``:
    ``u_s ← a_s Z − α u_s`` in place (rounded as ``u_s·(−α) + a_s Z``), then ``Σ ‖u_s‖²`` and
    ``Σ a_sᴴ u_s`` accumulated in sub-block order while ``a_s`` is still in cache, so ``A`` is read from
    memory once per LSQR step instead of twice. On the CPU (real float32/float64) each sub-block is first
    streamed by a cheap reduction (``‖a_s‖_F²`` when ``fro``, else a sum), which pulls it into cache faster
    than the matrix–vector products' own loads (measured: 25–27 ms instead of 45 ms per pass over a
    200,000 × 200 matrix with one thread, 65 ms unfused), and the products are NumPy's BLAS calls (for
    ``gemv`` the BLAS threads split the output vector, so the bits do not depend on their number).

    Args:
        a: ``[n_b, d]`` dense block (strided, row-major).
        Z: ``[d, k]``.
        alpha: the scalar ``α``.
        u: ``[n_b, k]`` contiguous; overwritten with ``a Z − α u``.
        fro: also return ``‖a‖_F²``.

    Returns:
        ``(‖u[:, j]‖² [k] real, aᴴ u [d, k], ‖a‖_F² float64 [1] or None)``.
    """
    nb, d = a.shape
    k = u.shape[1]
    real = torch.empty((), dtype=a.dtype).real.dtype
    if fused_block_numpy(a):
        sub = fused_subblock_rows(d, a.element_size())
        an, zn, un = a.detach().numpy(), Z.detach().numpy(), u.detach().numpy()
        sq = np.zeros(k, dtype=an.dtype)
        g = np.zeros((d, k), dtype=an.dtype)
        f2 = 0.0
        for r0 in range(0, nb, sub):
            a_s, u_s = an[r0 : r0 + sub], un[r0 : r0 + sub]
            if fro:  # NumPy's own (single-threaded) loop: the same bits for any BLAS thread count
                f2 += float(np.einsum("ij,ij->", a_s, a_s))
            else:
                a_s.sum()  # streams the sub-block into cache (result unused)
            if k == 1:  # 1-D views, so NumPy calls gemv (an [n, 1] operand would go through gemm)
                u1 = u_s[:, 0]
                t = a_s @ zn[:, 0]
                u1 *= -alpha
                u1 += t
                sq[0] += np.dot(u1, u1)
                g[:, 0] += u1 @ a_s
            else:
                t = a_s @ zn
                u_s *= -alpha
                u_s += t
                sq += np.einsum("ij,ij->j", u_s, u_s)
                g += a_s.T @ u_s
        f2_t = torch.tensor([f2], dtype=torch.float64) if fro else None
        return torch.from_numpy(sq), torch.from_numpy(g), f2_t
    # other devices and complex dtypes: torch, one sub-block on accelerators
    sub = nb if a.device.type != "cpu" else fused_subblock_rows(d, a.element_size())
    sq_t = torch.zeros(k, dtype=real, device=a.device)
    g_t = torch.zeros(d, k, dtype=a.dtype, device=a.device)
    f2_t = torch.zeros(1, dtype=torch.float64, device=a.device) if fro else None
    for r0 in range(0, nb, sub):
        a_s, u_s = a[r0 : r0 + sub], u[r0 : r0 + sub]
        if f2_t is not None:
            f2_t += (a_s * a_s.conj()).real.sum().to(torch.float64)
        u_s.mul_(-alpha).add_(a_s @ Z)
        sq_t += (u_s * u_s.conj()).real.sum(dim=0)
        g_t += a_s.mT.conj() @ u_s
    return sq_t, g_t, f2_t


# -------------------------------------------------------------------- block kernels (run on Dask workers)
def _t(a: np.ndarray) -> Tensor:
    # a copy into torch's (64-byte aligned) allocator: MKL may pick different kernels, and round differently,
    # for arrays of other alignment (e.g. deserialised on a worker)
    return torch.tensor(np.asarray(a))


def _np_matmul_b(a: np.ndarray, V: np.ndarray, b: int) -> np.ndarray:
    return (_t(a) @ _t(V)).numpy()


def _np_rmatmul(a: np.ndarray, u: np.ndarray, b: int) -> np.ndarray:
    return (_t(a).mT.conj() @ _t(u)).numpy()


def _np_inner(u: np.ndarray, w: np.ndarray, b: int) -> np.ndarray:
    return (_t(u).mH @ _t(w)).numpy()


def _np_sketch_block(u: np.ndarray, S: SketchOperator, b: int) -> np.ndarray:
    return S.block_product(b, _t(u)).numpy()


def _np_sqnorm(u: np.ndarray, b: int) -> np.ndarray:
    U = _t(u)
    return (U * U.conj()).real.sum(dim=0).numpy()


def _np_frosq(a: np.ndarray, b: int) -> np.ndarray:
    A = _t(a)
    return (A * A.conj()).real.sum().reshape(1).to(torch.float64).numpy()


def _np_fused(a: np.ndarray, u: np.ndarray, Z: np.ndarray, alpha: float, fro: bool, b: int) -> tuple[Any, ...]:
    U = _t(u)
    sq, g, f2 = fused_block(_t(a), _t(Z), alpha, U, fro)
    return U.numpy(), sq.numpy(), g.numpy(), (f2.numpy() if f2 is not None else None)


def _np_block_r(y: np.ndarray, b: int) -> np.ndarray:
    k = y.shape[1]
    _, R = torch.linalg.qr(_t(y))
    out = np.zeros((k, k), dtype=y.dtype)
    out[: R.shape[0]] = R.numpy()
    return out


def _np_block_q(y: np.ndarray, Q2: np.ndarray, b: int) -> np.ndarray:
    Qb, _ = torch.linalg.qr(_t(y))
    return (Qb @ _t(Q2[b, : Qb.shape[1]])).numpy()


# -------------------------------------------------------------------- constructors
def row_blocks(A: Any, *, block_size: int = DEFAULT_BLOCK_SIZE) -> RowBlocks:
    """Wrap ``A`` in the backend that fits it.

    ``RowBlocks`` → itself; Dask array → :class:`DaskRows`; :class:`LinearOperator` → :class:`OperatorRows`;
    torch tensor / NumPy array / SciPy sparse → :class:`LocalRows`.
    """
    if isinstance(A, RowBlocks):
        return A
    if type(A).__module__.startswith("dask"):
        return DaskRows(A, block_size=block_size)
    if isinstance(A, LinearOperator):
        return OperatorRows(A)
    return LocalRows(A, block_size=block_size)


def shard_rows(n: int, world_size: int, rank: int, *, block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[int, int]:
    """Block-aligned row range ``[r0, r1)`` of ``rank`` among ``world_size`` (whole blocks, as even as possible).

    Example:
        >>> shard_rows(100, 2, 1, block_size=16)
        (64, 100)
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    nb = max(1, -(-n // block_size))
    per, extra = divmod(nb, world_size)
    b0 = rank * per + min(rank, extra)
    b1 = b0 + per + (1 if rank < extra else 0)
    return min(n, b0 * block_size), min(n, b1 * block_size)


def torch_distributed_rows(
    A_local: Any, *, n: int, row_offset: int, block_size: int = DEFAULT_BLOCK_SIZE, group: Any = None
) -> TorchDistributedRows:
    """This rank's row shard ``A[row_offset : row_offset + len(A_local)]`` of a global ``n × d`` matrix.

    Pass the result to :func:`~eigenlens.linalg.lstsq.lstsq`, :func:`~eigenlens.linalg.lowrank.randomized_svd`
    or use ``.sketch(S)``; every rank must make the same calls (collective ``all_reduce``).
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("torch_distributed_rows: torch.distributed is not initialised; call init_process_group first")
    return TorchDistributedRows(A_local, n=n, row_offset=row_offset, block_size=block_size, group=group)


def dask_rows(A: Any, *, block_size: int = DEFAULT_BLOCK_SIZE) -> DaskRows:
    """Wrap a Dask array (rechunked to ``block_size`` rows per chunk; needs ``dask[array]``)."""
    try:
        import dask.array  # noqa: F401
    except ImportError as err:  # pragma: no cover
        raise ImportError('dask_rows needs Dask: pip install "eigenlens[dask]"') from err
    return DaskRows(A, block_size=block_size)
