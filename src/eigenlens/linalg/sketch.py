"""Random sketching operators ``S`` (``m × n``, ``m ≪ n``) that compress the rows of a matrix: ``S·A``.

Every sketch is a :class:`~eigenlens.linalg.operator.LinearOperator` of shape ``(m, n)`` and can also be
applied with :meth:`SketchOperator.apply` to torch tensors (dense or sparse), NumPy arrays and SciPy
sparse matrices, without densifying sparse input (the trig transforms densify one row block at a time).

Kinds (``S·A`` has shape ``[m, d]`` for ``A`` of shape ``[n, d]``):

``"gaussian"``      iid ``N(0, 1/m)`` entries.
``"rademacher"``    iid ``±1/√m`` entries.
``"sparse_sign"``   ``k`` (default 8) nonzeros ``±1/√k`` per column at distinct random rows
                    (Meng–Mahoney / Nelson–Nguyen OSNAP; Martinsson & Tropp, arXiv 2002.01387 §9).
``"countsketch"``   one ``±1`` per column (Clarkson & Woodruff, arXiv 1207.6365).
``"srht"``/``"srct"`` block subsampled randomized Hadamard / cosine transform: for each row block of
                    length ``L``: random signs, the orthonormal Walsh–Hadamard (padded to a power of two) or
                    DCT-II, ``m`` rows sampled without replacement, scaled by ``√(L/m)``, and random signs on
                    the output (Tropp, arXiv 1011.1595; block version Balabanov et al., arXiv 2210.11295).
                    With a single block this is the classical SRHT/SRCT.
``"uniform"``       ``m`` rows sampled uniformly with replacement, scaled by ``√(n/m)``.
``"importance"``    ``m`` rows sampled with replacement from ``probabilities`` ``p``, row ``i`` scaled by
                    ``1/√(m·p_i)`` (e.g. leverage-score sampling, Drineas et al., arXiv 1109.3843).

All of them satisfy ``E[SᵀS] = I``.

Counter-based randomness:
    The columns of ``S`` (= the rows of ``A``) are cut into fixed blocks of ``block_size``. The random
    numbers of block ``b`` come from a fresh ``torch.Generator`` seeded with ``splitmix64(seed, b)``
    (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), so any block can
    be regenerated anywhere from ``(seed, b)`` alone. ``S·A`` is *defined* as the left fold
    ``((P_0 + P_1) + P_2) + …`` of the block products ``P_b = S_b·A_b``; block-wise, streamed and
    distributed computations (:mod:`eigenlens.linalg.distributed`) produce exactly the same fold and
    therefore the same bits as the in-memory product (given the same number of intra-op threads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens.linalg.operator import LinearOperator
from eigenlens.linalg.random import resolve_generator

__all__ = [
    "KINDS",
    "DEFAULT_BLOCK_SIZE",
    "SketchOperator",
    "sketch",
    "splitmix64",
    "block_seed",
    "fold",
    "dct_ortho",
    "idct_ortho",
    "fwht_ortho",
]

KINDS = ("gaussian", "rademacher", "sparse_sign", "countsketch", "srht", "srct", "uniform", "importance")
#: Rows of ``A`` per counter block (the unit of regeneration, streaming and distribution).
DEFAULT_BLOCK_SIZE = 16384
#: Memory budget of a sketch's cache of drawn (non-dense) blocks.
CACHE_BYTES = 256 * 2**20

#: dtypes whose sparse-sign / CountSketch block products on the CPU use SciPy's compressed-column product.
_SCIPY_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x: int) -> int:
    """The SplitMix64 finaliser: a bijective 64-bit mixing of ``x`` (Steele, Lea & Flood 2014).

    Example:
        >>> splitmix64(0)
        16294208416658607535
    """
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def block_seed(seed: int, block: int) -> int:
    """The seed (63 bits) of counter block ``block`` of a sketch with master ``seed``; ``block=-1`` is global."""
    return splitmix64(splitmix64(seed & _MASK64) ^ ((block + 1) & _MASK64)) >> 1


def _gen(seed: int, block: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(block_seed(seed, block))


def fold(partials: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """Left fold ``((0 + P_0) + P_1) + …`` in the given order: the canonical reduction of block products."""
    out = torch.zeros(shape, dtype=dtype, device=device)
    for P in partials:
        out += P
    return out


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def map_blocks(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``[fn(it) for it in items]``, on ``torch.get_num_threads()`` threads when that is more than one.

    For per-block kernels that are single-threaded and release the GIL (NumPy/SciPy loops): the results come
    back in ``items`` order and each one is computed by one thread, so they do not depend on the thread
    count. The worker threads are shared (one pool, resized when the thread count changes).
    """
    global _POOL
    nt = torch.get_num_threads()
    if nt <= 1 or len(items) <= 1:
        return [fn(it) for it in items]
    if _POOL is None or _POOL[0] != nt:
        _POOL = (nt, ThreadPoolExecutor(nt, thread_name_prefix="eigenlens-blocks"))
    return list(_POOL[1].map(fn, items))


# ------------------------------------------------------------------------------------------ fast transforms
def dct_ortho(x: Tensor) -> Tensor:
    """Orthonormal DCT-II along dim 0 (``scipy.fft.dct(x, axis=0, norm="ortho")``) via one FFT (Makhoul 1980).

    Args:
        x: real ``[N]`` or ``[N, k]``.
    """
    N = x.shape[0]
    v = torch.cat([x[0::2], x[1::2].flip(0)], dim=0)
    V = torch.fft.fft(v, dim=0)
    k = torch.arange(N, dtype=x.dtype, device=x.device)
    w = torch.exp(torch.complex(torch.zeros_like(k), -math.pi * k / (2 * N)))
    if x.ndim == 2:
        w = w[:, None]
    y = 2 * (w * V).real
    scale = torch.full((N,), math.sqrt(1.0 / (2 * N)), dtype=x.dtype, device=x.device)
    scale[0] = math.sqrt(1.0 / (4 * N))
    return y * (scale[:, None] if x.ndim == 2 else scale)


def idct_ortho(y: Tensor) -> Tensor:
    """Inverse (= transpose) of :func:`dct_ortho`: the orthonormal DCT-III along dim 0."""
    N = y.shape[0]
    scale = torch.full((N,), math.sqrt(1.0 / (2 * N)), dtype=y.dtype, device=y.device)
    scale[0] = math.sqrt(1.0 / (4 * N))
    Y = y / (scale[:, None] if y.ndim == 2 else scale)
    Yrev = torch.cat([torch.zeros_like(Y[:1]), Y[1:].flip(0)], dim=0)  # Y_{N-k}, with Y_N = 0
    k = torch.arange(N, dtype=y.dtype, device=y.device)
    w = torch.exp(torch.complex(torch.zeros_like(k), math.pi * k / (2 * N)))
    if y.ndim == 2:
        w = w[:, None]
    V = 0.5 * w * torch.complex(Y, -Yrev)
    v = torch.fft.ifft(V, dim=0).real
    half = (N + 1) // 2
    x = torch.empty_like(y)
    x[0::2] = v[:half]
    x[1::2] = v[half:].flip(0)
    return x


def fwht_ortho(x: Tensor) -> Tensor:
    """Orthonormal (Sylvester-ordered) Walsh–Hadamard transform along dim 0; ``N`` must be a power of two.

    The transform is symmetric and its own inverse. Cost ``O(N log N · k)``.
    """
    N = x.shape[0]
    if N & (N - 1):
        raise ValueError(f"fwht_ortho: the length must be a power of two, got {N}; pad with zeros")
    squeeze = x.ndim == 1
    y = x.reshape(N, -1)
    k = y.shape[1]
    h = 1
    while h < N:
        y = y.reshape(N // (2 * h), 2, h, k)
        y = torch.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], dim=1)
        h *= 2
    y = y.reshape(N, k) / math.sqrt(N)
    return y.reshape(N) if squeeze else y


# ------------------------------------------------------------------------------------------ the operator
def _any_equal_pair(r: Tensor) -> Tensor:
    """``[n]`` bool: whether row ``i`` of ``r [n, k]`` has two equal entries."""
    k = r.shape[1]
    if k > 12:  # one [n, k, k] comparison
        return (r[:, :, None] == r[:, None, :]).sum(dim=(1, 2)) > k  # any equal pair off the diagonal
    dup = torch.zeros(r.shape[0], dtype=torch.bool)
    for i in range(k):  # k(k−1)/2 column comparisons, no [n, k, k] temporary
        for j in range(i + 1, k):
            dup |= r[:, i] == r[:, j]
    return dup


def _distinct_rows_signs(n_cols: int, m: int, k: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``k`` distinct rows in ``[0, m)`` and ``k`` random signs for each of ``n_cols`` columns.

    One ``randint`` in ``[0, 2m)`` per nonzero gives the row (``v >> 1``) and the sign (``v & 1``); columns
    with a repeated row are redrawn (rejection sampling keeps the law uniform over distinct ``k``-tuples;
    for ``k ≪ m`` only a few percent of the columns are redrawn, once or twice).
    """
    v = torch.randint(0, 2 * m, (n_cols, k), generator=g)
    if k > 1:
        todo: Tensor | None = None
        while True:
            r = (v if todo is None else v[todo]) >> 1
            dup = _any_equal_pair(r)
            if not bool(dup.any()):
                break
            todo = torch.nonzero(dup).flatten() if todo is None else todo[dup]
            v[todo] = torch.randint(0, 2 * m, (todo.numel(), k), generator=g)
    return v >> 1, (1 - 2 * (v & 1)).to(torch.float64)


def _is_scipy_sparse(A: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(A)


class SketchOperator(LinearOperator):
    """A sketching matrix ``S`` of shape ``(m, n)`` generated block by block from a counter-based seed.

    Build it with :func:`sketch`. ``S @ X`` (validated, torch only) and ``S.apply(A)`` (torch dense/sparse,
    NumPy, SciPy sparse; returns a torch tensor) compute the canonical fold of the block products.

    Attributes:
        kind: one of :data:`KINDS`.
        seed: the 63-bit master seed; ``(kind, m, n, seed, block_size, nnz, probabilities)`` define ``S``.
        block_size: rows of ``A`` per counter block (for ``srht``/``srct``: the transform length ``L``).
        nnz: nonzeros per column for ``sparse_sign`` (1 for ``countsketch``).
    """

    def __init__(
        self,
        kind: str,
        m: int,
        n: int,
        *,
        seed: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        nnz: int = 8,
        probabilities: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__((m, n), dtype=dtype, device=device)
        self.kind = kind
        self.seed = int(seed)
        if kind in ("srht", "srct"):
            block_size = min(n, max(block_size, m))
        self.block_size = int(block_size)
        self.nnz = 1 if kind == "countsketch" else min(int(nnz), m)
        self.probabilities = probabilities
        self._global: dict[str, Tensor] | None = None
        self._cache: dict[int, dict[str, Tensor]] = {}
        self._cache_bytes = 0

    def __repr__(self) -> str:
        return f"<SketchOperator {self.kind!r} shape={self.shape} seed={self.seed} block_size={self.block_size}>"

    # ---------------------------------------------------------------- structure
    @property
    def num_blocks(self) -> int:
        """Number of counter blocks ``⌈n / block_size⌉``."""
        n = self.shape[1]
        return max(1, -(-n // self.block_size))

    def block_range(self, b: int) -> tuple[int, int]:
        """Rows ``[r0, r1)`` of ``A`` that block ``b`` covers."""
        r0 = b * self.block_size
        return r0, min(self.shape[1], r0 + self.block_size)

    def _global_draw(self) -> dict[str, Tensor]:
        """Global randomness of the row-sampling sketches (the ``m`` sampled rows and their scales)."""
        if self._global is None:
            m, n = self.shape
            g = _gen(self.seed, -1)
            if self.kind == "uniform":
                idx = torch.randint(0, n, (m,), generator=g)
                scale = torch.full((m,), math.sqrt(n / m), dtype=torch.float64)
            else:
                p = self.probabilities
                idx = torch.multinomial(p, m, replacement=True, generator=g)
                scale = 1.0 / torch.sqrt(m * p[idx])
            self._global = {"idx": idx, "scale": scale}
        return self._global

    def block_randomness(self, b: int) -> dict[str, Tensor]:
        """The random numbers of block ``b`` (regenerated from ``(seed, b)``; CPU, float64/int64).

        Blocks of the sparse and sampling sketches are cached (up to :data:`CACHE_BYTES` in all), so a second
        application (e.g. to the right-hand side) does not redraw them; dense blocks are always redrawn.
        """
        hit = self._cache.get(b)
        if hit is not None:
            return hit
        rnd = self._draw_block(b)
        if "dense" not in rnd:
            size = sum(t.numel() * t.element_size() for t in rnd.values())
            if self._cache_bytes + size <= CACHE_BYTES:
                self._cache[b] = rnd
                self._cache_bytes += size
        return rnd

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"], state["_cache_bytes"] = {}, 0
        return state

    def _draw_block(self, b: int) -> dict[str, Tensor]:
        m = self.shape[0]
        r0, r1 = self.block_range(b)
        nb = r1 - r0
        g = _gen(self.seed, b)
        if self.kind == "gaussian":
            return {"dense": torch.randn(m, nb, generator=g, dtype=torch.float64) / math.sqrt(m)}
        if self.kind == "rademacher":
            bits = torch.randint(0, 2, (m, nb), generator=g)
            return {"dense": (2 * bits - 1).to(torch.float64) / math.sqrt(m)}
        if self.kind in ("sparse_sign", "countsketch"):
            k = self.nnz
            rows, signs = _distinct_rows_signs(nb, m, k, g)
            return {"rows": rows, "signs": signs / math.sqrt(k)}
        if self.kind in ("srht", "srct"):
            L = self.block_size
            T = 1 << (L - 1).bit_length() if self.kind == "srht" else L
            d_in = (2 * torch.randint(0, 2, (L,), generator=g) - 1).to(torch.float64)
            sel = torch.randperm(T, generator=g)[:m]
            d_out = (2 * torch.randint(0, 2, (m,), generator=g) - 1).to(torch.float64) * math.sqrt(T / m)
            return {"d_in": d_in, "sel": sel, "d_out": d_out, "T": torch.tensor(T)}
        glob = self._global_draw()
        inside = (glob["idx"] >= r0) & (glob["idx"] < r1)
        out_rows = torch.nonzero(inside).flatten()
        return {"out_rows": out_rows, "src_rows": glob["idx"][out_rows] - r0, "scale": glob["scale"][out_rows]}

    # ---------------------------------------------------------------- block products
    def block_product(self, b: int, Ab: Any, dtype: torch.dtype | None = None) -> Tensor:
        """``P_b = S_b · A_b`` for the rows ``A_b`` of block ``b`` (torch dense ``[n_b, d]`` or SciPy sparse).

        Returns a dense torch tensor ``[m, d]`` of ``dtype`` (default: ``A_b``'s or the sketch's).
        """
        return self._block_product(b, self.block_randomness(b), Ab, dtype)

    def _scipy_product(self, Ab: Any, dtype: torch.dtype | None) -> bool:
        """Whether :meth:`block_product` runs SciPy's single-threaded CSC product (releases the GIL) on ``Ab``."""
        return (self.kind in ("sparse_sign", "countsketch") and isinstance(Ab, Tensor) and Ab.layout == torch.strided
                and Ab.device.type == "cpu" and (dtype or Ab.dtype) in _SCIPY_DTYPES)

    def _block_product(self, b: int, rnd: dict[str, Tensor], Ab: Any, dtype: torch.dtype | None) -> Tensor:
        m = self.shape[0]
        r0, r1 = self.block_range(b)
        nb = r1 - r0
        if Ab.shape[0] != nb:
            raise ValueError(f"block {b} covers {nb} rows of A, got a block with {Ab.shape[0]} rows")
        if _is_scipy_sparse(Ab):
            return self._block_product_scipy(rnd, Ab, dtype)
        dt = dtype or Ab.dtype
        dev = Ab.device
        d = Ab.shape[1]
        if "dense" in rnd:
            return rnd["dense"].to(dtype=dt, device=dev) @ Ab
        if "rows" in rnd and dev.type == "cpu" and dt in _SCIPY_DTYPES:
            # S_b in compressed-column form (k nonzeros per column, no sorting needed): SciPy's CSC product
            # streams A_b once, row by row, scattering each row into its k output rows (faster than a COO
            # product, which visits A_b in output-row order), and is cheap for a single column too
            import scipy.sparse as sp

            k = rnd["rows"].shape[1]
            np_dt = torch.empty(0, dtype=dt).numpy().dtype
            S = sp.csc_matrix(
                (rnd["signs"].numpy().astype(np_dt).ravel(), rnd["rows"].numpy().ravel(), np.arange(0, nb * k + 1, k)),
                shape=(m, nb),
            )
            return torch.from_numpy(np.ascontiguousarray(S @ Ab.detach().numpy()))
        if "rows" in rnd:
            k = rnd["rows"].shape[1]
            cols = torch.arange(nb).repeat_interleave(k)
            idx = torch.stack([rnd["rows"].flatten(), cols]).to(dev)
            S = torch.sparse_coo_tensor(
                idx, rnd["signs"].flatten().to(dtype=dt, device=dev), (m, nb), check_invariants=False
            )
            return torch.sparse.mm(S, Ab)
        if "d_in" in rnd:
            return self._trig_block(rnd, Ab, dt)
        out = torch.zeros(m, d, dtype=dt, device=dev)
        if rnd["out_rows"].numel():
            rows = Ab[rnd["src_rows"].to(dev)] * rnd["scale"].to(dtype=dt, device=dev)[:, None]
            out.index_copy_(0, rnd["out_rows"].to(dev), rows)
        return out

    def _trig_block(self, rnd: dict[str, Tensor], Ab: Tensor, dt: torch.dtype) -> Tensor:
        T = int(rnd["T"])
        dev = Ab.device
        X = torch.zeros(T, Ab.shape[1], dtype=dt, device=dev)
        X[: Ab.shape[0]] = Ab * rnd["d_in"][: Ab.shape[0]].to(dtype=dt, device=dev)[:, None]
        Y = fwht_ortho(X) if self.kind == "srht" else dct_ortho(X)
        return Y[rnd["sel"].to(dev)] * rnd["d_out"].to(dtype=dt, device=dev)[:, None]

    def _block_product_scipy(self, rnd: dict[str, Tensor], Ab: Any, dtype: torch.dtype | None) -> Tensor:
        import scipy.sparse as sp

        m = self.shape[0]
        np_dt = np.result_type(Ab.dtype, np.float32)
        dt = dtype or torch.from_numpy(np.zeros(0, dtype=np_dt)).dtype
        Ab = sp.csr_matrix(Ab)
        if "dense" in rnd:
            G = rnd["dense"].numpy().astype(np_dt)
            out = np.asarray((Ab.T @ G.T).T)
        elif "rows" in rnd:
            nb, k = rnd["rows"].shape
            S = sp.csr_matrix(
                (rnd["signs"].numpy().ravel().astype(np_dt),
                 (rnd["rows"].numpy().ravel(), np.repeat(np.arange(nb), k))),
                shape=(m, nb),
            )
            out = (S @ Ab).toarray()
        elif "d_in" in rnd:  # one row block densified at a time
            return self._trig_block(rnd, torch.from_numpy(Ab.toarray()).to(dt), dt)
        else:
            out = np.zeros((m, Ab.shape[1]), dtype=np_dt)
            if rnd["out_rows"].numel():
                out[rnd["out_rows"].numpy()] = Ab[rnd["src_rows"].numpy()].toarray() * rnd["scale"].numpy()[:, None]
        return torch.from_numpy(np.ascontiguousarray(out)).to(dt)

    def partials(self, A: Any, row_offset: int = 0, dtype: torch.dtype | None = None) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(b, S_b·A_b)`` for the whole blocks held in ``A`` = rows ``[row_offset, row_offset + len(A))``.

        ``row_offset`` must be a multiple of ``block_size`` and ``A`` must end at a block boundary or at row
        ``n`` (so a shard never splits a block; this keeps distributed results bit-identical).
        """
        n = self.shape[1]
        rows = A.shape[0]
        if row_offset % self.block_size or (row_offset + rows != n and rows % self.block_size):
            raise ValueError(
                f"a row shard must start and end at multiples of the sketch block_size={self.block_size} "
                f"(or end at row n={n}); got rows [{row_offset}, {row_offset + rows}). Re-shard the rows, "
                "e.g. with eigenlens.linalg.distributed.shard_rows"
            )
        if row_offset + rows > n:
            raise ValueError(f"rows [{row_offset}, {row_offset + rows}) exceed the sketch's n={n}")
        blocks = list(range(row_offset // self.block_size, -(-(row_offset + rows) // self.block_size)))

        def rows_of(b: int) -> Any:
            r0, r1 = self.block_range(b)
            return A[r0 - row_offset : r1 - row_offset]

        nt = torch.get_num_threads()
        if nt > 1 and len(blocks) > 1 and self._scipy_product(A, dtype):
            # SciPy's products on torch.get_num_threads() threads, nt blocks at a time (bounded memory); the
            # random numbers are drawn here, in order
            for i in range(0, len(blocks), nt):
                chunk = [(b, self.block_randomness(b)) for b in blocks[i : i + nt]]
                outs = map_blocks(lambda br: self._block_product(br[0], br[1], rows_of(br[0]), dtype), chunk)
                yield from ((b, P) for (b, _), P in zip(chunk, outs))
            return
        for b in blocks:
            yield b, self.block_product(b, rows_of(b), dtype)

    # ---------------------------------------------------------------- public application
    def apply(self, A: Any) -> Tensor:
        """``S·A`` for ``A`` of shape ``[n]`` or ``[n, d]``: torch (dense or sparse), NumPy or SciPy sparse.

        Returns:
            A dense torch tensor ``[m]`` or ``[m, d]`` (dtype of ``A``; float64 for integer input).

        Raises:
            ValueError: if ``A`` does not have ``n`` rows or contains NaN/Inf (detected in ``S·A``).
            TypeError: for unsupported input types.
        """
        n = self.shape[1]
        vector = False
        if isinstance(A, np.ndarray):
            if not np.issubdtype(A.dtype, np.floating):
                A = A.astype(np.float64)
            A = torch.from_numpy(np.ascontiguousarray(A))
        if isinstance(A, Tensor):
            if A.layout != torch.strided:
                A = _torch_sparse_to_scipy(A)
            else:
                if not (A.dtype.is_floating_point or A.dtype.is_complex):
                    A = A.to(torch.float64)
                if A.ndim == 1:
                    vector, A = True, A[:, None]
        elif not _is_scipy_sparse(A):
            raise TypeError(
                f"sketch.apply: expected a torch.Tensor, numpy.ndarray or scipy.sparse matrix, got {type(A).__name__}"
            )
        if A.ndim != 2 or A.shape[0] != n:
            raise ValueError(
                f"sketch.apply: the sketch has shape {self.shape}, so A needs {n} rows; got shape {tuple(A.shape)}"
            )
        out = self._fold(A)
        if not bool(torch.isfinite(out).all()):
            raise ValueError("sketch.apply: S·A contains NaN or Inf, so A has non-finite entries; clean the input")
        return out[:, 0] if vector else out

    def _fold(self, A: Any) -> Tensor:
        if isinstance(A, Tensor):
            dt, dev = A.dtype, A.device
        else:
            dt, dev = torch.from_numpy(np.zeros(0, dtype=np.result_type(A.dtype, np.float32))).dtype, "cpu"
        return fold((P for _, P in self.partials(A)), (self.shape[0], A.shape[1]), dt, dev)

    def _matmat(self, X: Tensor) -> Tensor:
        return self._fold(X)

    def _adjoint(self, Y: Tensor) -> Tensor:
        blocks = []
        for b in range(self.num_blocks):
            blocks.append(self._block_adjoint(b, Y))
        return torch.cat(blocks, dim=0)

    def _block_adjoint(self, b: int, Y: Tensor) -> Tensor:
        r0, r1 = self.block_range(b)
        nb = r1 - r0
        dt, dev = Y.dtype, Y.device
        rnd = self.block_randomness(b)
        if "dense" in rnd:
            return rnd["dense"].to(dtype=dt, device=dev).T @ Y
        if "rows" in rnd:
            k = rnd["rows"].shape[1]
            gathered = Y[rnd["rows"].flatten().to(dev)].reshape(nb, k, -1)
            return (gathered * rnd["signs"].to(dtype=dt, device=dev)[:, :, None]).sum(dim=1)
        if "d_in" in rnd:
            T = int(rnd["T"])
            Z = torch.zeros(T, Y.shape[1], dtype=dt, device=dev)
            Z[rnd["sel"].to(dev)] = Y * rnd["d_out"].to(dtype=dt, device=dev)[:, None]
            X = fwht_ortho(Z) if self.kind == "srht" else idct_ortho(Z)
            return X[:nb] * rnd["d_in"][:nb].to(dtype=dt, device=dev)[:, None]
        out = torch.zeros(nb, Y.shape[1], dtype=dt, device=dev)
        if rnd["out_rows"].numel():
            contrib = Y[rnd["out_rows"].to(dev)] * rnd["scale"].to(dtype=dt, device=dev)[:, None]
            out.index_add_(0, rnd["src_rows"].to(dev), contrib)
        return out

    def to_scipy_sparse(self) -> Any:
        """``S`` as a SciPy CSR matrix (``sparse_sign``, ``countsketch``, ``uniform``, ``importance`` only)."""
        import scipy.sparse as sp

        if self.kind not in ("sparse_sign", "countsketch", "uniform", "importance"):
            raise ValueError(f"to_scipy_sparse: the {self.kind!r} sketch is dense; use to_dense()")
        m, n = self.shape
        r, c, v = [], [], []
        for b in range(self.num_blocks):
            r0, _ = self.block_range(b)
            rnd = self.block_randomness(b)
            if "rows" in rnd:
                nb, k = rnd["rows"].shape
                r.append(rnd["rows"].numpy().ravel())
                c.append(np.repeat(np.arange(nb), k) + r0)
                v.append(rnd["signs"].numpy().ravel())
            else:
                r.append(rnd["out_rows"].numpy())
                c.append(rnd["src_rows"].numpy() + r0)
                v.append(rnd["scale"].numpy())
        return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(m, n))


def _torch_sparse_to_scipy(A: Tensor) -> Any:
    import scipy.sparse as sp

    C = A.to_sparse_coo().coalesce().cpu()
    idx = C.indices().numpy()
    if C.ndim != 2:
        raise ValueError(f"sketch.apply: expected a 2-D sparse matrix, got shape {tuple(C.shape)}")
    return sp.csr_matrix((C.values().numpy(), (idx[0], idx[1])), shape=tuple(C.shape))


def sketch(
    kind: str,
    m: int,
    n: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    nnz: int = 8,
    probabilities: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> SketchOperator:
    """A random sketching operator ``S`` of shape ``(m, n)`` with ``E[SᵀS] = I``.

    Args:
        kind: ``"gaussian"``, ``"rademacher"``, ``"sparse_sign"``, ``"countsketch"``, ``"srht"``, ``"srct"``,
            ``"uniform"`` or ``"importance"`` (see the module docstring for the math).
        m: sketch size (rows of ``S·A``). For ``srht``/``srct`` ``m`` must not exceed ``n``.
        n: number of rows of the matrices it will be applied to.
        generator: draws the master seed when ``seed`` is None (None = a fresh generator seeded 0).
        seed: the master seed directly (an int); give either ``seed`` or ``generator``, not both.
        nnz: nonzeros per column of ``sparse_sign`` (default 8, capped at ``m``).
        probabilities: ``[n]`` nonnegative sampling weights for ``importance`` (normalised here).
        block_size: rows per counter block (see module docstring); distributed shards align to it.
        dtype, device: of the operator's ``@`` products (``apply`` follows the input's dtype).

    Returns:
        A :class:`SketchOperator`.

    Raises:
        ValueError: unknown kind, non-positive sizes, ``m > n`` for the trig sketches, bad probabilities.
        TypeError: ``seed`` that is not an int.

    Example:
        >>> import torch
        >>> S = sketch("sparse_sign", 40, 1000, seed=3)
        >>> A = torch.linalg.qr(torch.randn(1000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).Q
        >>> s = torch.linalg.svdvals(S.apply(A))  # an embedding: singular values near 1
        >>> bool(s.max() < 2.0 and s.min() > 0.3)
        True
    """
    if kind not in KINDS:
        raise ValueError(f"sketch: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    for name, val in (("m", m), ("n", n), ("block_size", block_size), ("nnz", nnz)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"sketch: {name} must be a positive int, got {val!r}")
    if kind in ("srht", "srct") and m > n:
        raise ValueError(
            f"sketch: {kind!r} samples m rows of an n-point transform without replacement, so m <= n is "
            f"needed; got m={m}, n={n}. Use a smaller m or kind='gaussian'"
        )
    if seed is not None and generator is not None:
        raise ValueError("sketch: give either seed= or generator=, not both")
    if seed is None:
        g = resolve_generator(generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"sketch: seed must be an int, got {type(seed).__name__}")
    p = None
    if kind == "importance":
        if probabilities is None:
            raise ValueError("sketch: kind='importance' needs probabilities= (a length-n nonnegative vector)")
        p = torch.as_tensor(np.asarray(probabilities) if not isinstance(probabilities, Tensor) else probabilities)
        p = p.detach().to(torch.float64).cpu().flatten()
        if p.numel() != n:
            raise ValueError(f"sketch: probabilities must have length n={n}, got {p.numel()}")
        if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
            raise ValueError("sketch: probabilities must be finite, nonnegative and not all zero")
        p = p / p.sum()
    elif probabilities is not None:
        raise ValueError(f"sketch: probabilities= is only used by kind='importance', got kind={kind!r}")
    return SketchOperator(
        kind, int(m), int(n), seed=int(seed), block_size=int(block_size), nnz=int(nnz), probabilities=p,
        dtype=dtype, device=device,
    )

