"""Distributed sketching / lstsq / randomized SVD equal the in-memory results bit for bit (same seed).

Both sides run with one intra-op thread (LAPACK's blocked QR may round differently with another thread
count; see eigenlens.linalg.distributed).
"""

import contextlib
import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

from eigenlens.linalg.distributed import LocalRows, row_blocks, shard_rows, torch_distributed_rows
from eigenlens.linalg.lowrank import randomized_svd
from eigenlens.linalg.lstsq import lstsq
from eigenlens.linalg.sketch import sketch

F64 = torch.float64
N, D, BS = 2000, 12, 256  # 8 blocks, the last one partial


def _data():
    g = torch.Generator().manual_seed(42)
    A = torch.randn(N, D, generator=g, dtype=F64) * torch.logspace(0, -6, D, dtype=F64)
    b = torch.randn(N, generator=g, dtype=F64)
    return A, b


@contextlib.contextmanager
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _in_memory():
    A, b = _data()
    with _one_thread():
        S = sketch("sparse_sign", 60, N, seed=7, block_size=BS)
        SA = row_blocks(A, block_size=BS).sketch(S)
        ls = lstsq(A, b, method="sketch_precondition", block_size=BS, seed=7)
        sv = randomized_svd(A, 4, block_size=BS)  # b = 12 = D: the subspace-iteration path
        kr = randomized_svd(A, 2, oversample=2, block_size=BS)  # block Krylov, b = 4, 2 blocks
    return SA, ls, sv, kr


# ------------------------------------------------------------------ local sharding (no processes)
def test_local_shards_reproduce_in_memory_reductions():
    A, _ = _data()
    full = LocalRows(A, block_size=BS)
    U = torch.randn(N, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    ref = full.rmatmat(U)
    parts = []
    for rank in range(3):
        r0, r1 = shard_rows(N, 3, rank, block_size=BS)
        sh = LocalRows(A[r0:r1], block_size=BS, row_offset=r0, n=N)
        parts.extend((b, (A[r0:r1][sl].T @ U[r0:r1][sl])) for b, sl in sh._slices())
    assert torch.equal(full.reduce(parts, (D, 3)), ref)
    with pytest.raises(ValueError, match="multiples of block_size"):
        LocalRows(A[100:900], block_size=BS, row_offset=100, n=N)
    assert shard_rows(N, 2, 0, block_size=BS) == (0, 1024) and shard_rows(N, 2, 1, block_size=BS) == (1024, N)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_rows(N, 2, 2)


def test_torch_distributed_rows_requires_initialised_group():
    A, _ = _data()
    with pytest.raises(ValueError, match="not initialised"):
        torch_distributed_rows(A, n=N, row_offset=0, block_size=BS)


# ------------------------------------------------------------------ torch.distributed (gloo, 2 processes)
def _gloo_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        A, b = _data()
        r0, r1 = shard_rows(N, world, rank, block_size=BS)
        bk = torch_distributed_rows(A[r0:r1], n=N, row_offset=r0, block_size=BS)
        S = sketch("sparse_sign", 60, N, seed=7, block_size=BS)
        SA = bk.sketch(S)
        ls = lstsq(bk, b[r0:r1], method="sketch_precondition", block_size=BS, seed=7)
        sv = randomized_svd(bk, 4, block_size=BS)
        kr = randomized_svd(bk, 2, oversample=2, block_size=BS)
        torch.save({"SA": SA, "x": ls.x, "it": ls.iterations, "s": sv.s, "v": sv.v, "u": sv.u, "r0": r0,
                    "ks": kr.s, "kv": kr.v, "ku": kr.u},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gloo_two_processes_bit_for_bit(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_gloo_worker, args=(r, 2, str(tmp_path / "rdv"), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    SA, ls, sv, kr = _in_memory()
    for r in res:
        assert torch.equal(r["SA"], SA)
        assert torch.equal(r["x"], ls.x) and r["it"] == ls.iterations
        assert torch.equal(r["s"], sv.s) and torch.equal(r["v"], sv.v)
        assert torch.equal(r["ks"], kr.s) and torch.equal(r["kv"], kr.v)
    assert torch.equal(torch.cat([res[0]["u"], res[1]["u"]]), sv.u)
    assert torch.equal(torch.cat([res[0]["ku"], res[1]["ku"]]), kr.u)


# ------------------------------------------------------------------ Dask (LocalCluster, 2 worker processes)
def test_dask_local_cluster_bit_for_bit():
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    A, b = _data()
    # one intra-op thread in the workers' task threads too (OpenMP's thread count is per calling thread)
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40, env=one) as cluster, distributed.Client(cluster):
        Ad = da.from_array(A.numpy(), chunks=(BS, D))
        from eigenlens.linalg.distributed import dask_rows

        bk = dask_rows(Ad, block_size=BS)
        with _one_thread():
            S = sketch("sparse_sign", 60, N, seed=7, block_size=BS)
            SA_d = bk.sketch(S)
            ls_d = lstsq(bk, b.numpy(), method="sketch_precondition", block_size=BS, seed=7)
            sv_d = randomized_svd(bk, 4, block_size=BS)
            u_d = bk.gather(sv_d.u)
            kr_d = randomized_svd(bk, 2, oversample=2, block_size=BS)
            ku_d = bk.gather(kr_d.u)
    SA, ls, sv, kr = _in_memory()
    assert torch.equal(SA_d, SA)
    assert torch.equal(ls_d.x, ls.x) and ls_d.iterations == ls.iterations
    assert torch.equal(sv_d.s, sv.s) and torch.equal(sv_d.v, sv.v) and torch.equal(u_d, sv.u)
    assert torch.equal(kr_d.s, kr.s) and torch.equal(kr_d.v, kr.v) and torch.equal(ku_d, kr.u)
    # and the answers are right, not only reproducible
    x_np = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)[0]
    np.testing.assert_allclose(ls.x.numpy(), x_np, rtol=1e-8)


# ------------------------------------------------------------------ the fused LSQR step
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128])
@pytest.mark.parametrize("k", [1, 3])
def test_update_rmatmat_equals_the_unfused_composition(dtype, k, monkeypatch):
    import eigenlens.linalg.distributed as dist_mod
    from eigenlens.linalg.distributed import OperatorRows, fused_subblock_rows
    from eigenlens.linalg.operator import aslinearoperator

    monkeypatch.setattr(dist_mod, "FUSED_SUBBLOCK_BYTES", 2**16)  # 200-row sub-blocks at d = 40
    g = torch.Generator().manual_seed(3)
    n, d = 5000, 40  # several blocks of BS = 2048 rows, each cut into several cache sub-blocks
    assert fused_subblock_rows(d, 8) < 2048
    A = torch.randn(n, d, generator=g, dtype=F64).to(dtype)
    Z = torch.randn(d, k, generator=g, dtype=F64).to(dtype)
    U = torch.randn(n, k, generator=g, dtype=F64).to(dtype)
    alpha = 0.37
    ref = A @ Z - alpha * U
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for bk in (LocalRows(A, block_size=2048), OperatorRows(aslinearoperator(A))):
        U_in = U.clone()
        U_new, sq, AhU, f2 = bk.update_rmatmat(Z, alpha, U_in, fro=True)
        torch.testing.assert_close(U_new, ref, rtol=rtol, atol=rtol)
        torch.testing.assert_close(sq, (ref.abs() ** 2).sum(dim=0), rtol=rtol, atol=0)
        torch.testing.assert_close(AhU, A.mH @ ref, rtol=rtol, atol=rtol * float(torch.linalg.matrix_norm(A)))
        torch.testing.assert_close(f2, (A.abs() ** 2).sum().reshape(1).to(F64), rtol=rtol, atol=0)
        assert bk.update_rmatmat(Z, alpha, U.clone())[3] is None  # fro=False: no ‖A‖_F²
    # the explicit backend works in place on the row vector it is given
    U_in = U.clone()
    out = LocalRows(A, block_size=2048).update_rmatmat(Z, alpha, U_in)[0]
    assert out.data_ptr() == U_in.data_ptr()


def test_update_rmatmat_sparse_and_shards_match_in_memory():
    import scipy.sparse as sp

    A, b = _data()
    Z = torch.randn(D, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    full = LocalRows(A, block_size=BS)
    U_f, sq_f, g_f, f_f = full.update_rmatmat(Z, 0.5, b[:, None].clone(), fro=True)
    # sparse storage: the composition of the unfused methods, same numbers to round-off
    U_s, sq_s, g_s, f_s = LocalRows(sp.csr_matrix(A.numpy()), block_size=BS).update_rmatmat(
        Z, 0.5, b[:, None].clone(), fro=True)
    torch.testing.assert_close(U_s, U_f, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_s, g_f, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f_s, f_f, rtol=1e-12, atol=0)
    # row shards: the per-block partials are those of the whole matrix (same bits once folded in order)
    sq_parts, g_parts = [], []
    for rank in range(3):
        r0, r1 = shard_rows(N, 3, rank, block_size=BS)
        sh = LocalRows(A[r0:r1], block_size=BS, row_offset=r0, n=N)
        U_sh, _, _, _ = sh.update_rmatmat(Z, 0.5, b[r0:r1, None].clone())
        assert torch.equal(U_sh, U_f[r0:r1])
        from eigenlens.linalg.distributed import fused_block

        for blk, sl in sh._slices():
            s_b, g_b, _ = fused_block(A[r0:r1][sl], Z, 0.5, b[r0:r1, None][sl].clone())
            sq_parts.append((blk, s_b))
            g_parts.append((blk, g_b))
    assert torch.equal(full.reduce(sq_parts, (1,)), sq_f) and torch.equal(full.reduce(g_parts, (D, 1)), g_f)


def test_update_rmatmat_bits_do_not_depend_on_the_thread_count():
    # the fused kernel's NumPy/BLAS products do not follow torch's intra-op thread count
    g = torch.Generator().manual_seed(8)
    A = torch.randn(3000, 30, generator=g, dtype=F64)
    Z = torch.randn(30, 1, generator=g, dtype=F64)
    U = torch.randn(3000, 1, generator=g, dtype=F64)
    bk = LocalRows(A, block_size=256)
    outs = []
    old = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(bk.update_rmatmat(Z, 0.25, U.clone(), fro=True))
    finally:
        torch.set_num_threads(old)
    for o in outs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(o, outs[0]))
