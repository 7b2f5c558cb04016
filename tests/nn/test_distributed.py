"""Data-parallel curvature on torch.distributed: 2 CPU processes (gloo) vs the single-process run."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch import nn

import eigenlens as el

DT = torch.float64


def _problem():
    g = torch.Generator().manual_seed(0)
    from eigenlens.nn._model import rng_guard

    with rng_guard():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).to(DT)
    X = torch.randn(70, 6, generator=g, dtype=DT)
    y = torch.randint(0, 4, (70,), generator=g)
    return model, nn.CrossEntropyLoss(), X, y


def _measure(model, loss, data, group):
    H = el.hessian(model, loss, data, process_group=group)
    top = el.eigsh(H, k=5, which="LA", tol=1e-10)
    tr = el.trace(H, 30, method="hutch++")
    dens = el.spectral_density(H, num_probes=4, num_matvecs=20)
    F = el.fisher(model, loss, data, kind="mc", process_group=group)
    ftop = el.eigsh(F, k=2, which="LA", tol=1e-10)
    return {
        "top": top.eigenvalues, "trace": torch.tensor([tr.value, tr.stderr]), "nodes": dens.nodes,
        "weights": dens.weights, "n": torch.tensor(H.num_examples), "fisher": ftop.eigenvalues,
    }


def _worker(rank, world, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, loss, X, y = _problem()
        # uneven shards: rank 0 holds 40 examples in batches of 16 (16, 16, 8), rank 1 holds 30 in one batch
        if rank == 0:
            data = [(X[i : min(i + 16, 40)], y[i : min(i + 16, 40)]) for i in range(0, 40, 16)]
        else:
            data = (X[40:], y[40:])
        res = _measure(model, loss, data, dist.group.WORLD)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_agree_with_one():
    model, loss, X, y = _problem()
    single = _measure(model, loss, [(X[:40], y[:40]), (X[40:], y[40:])], None)
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_worker, args=(2, _free_port(), tmp), nprocs=2, join=True)
        r0 = torch.load(os.path.join(tmp, "rank0.pt"))
        r1 = torch.load(os.path.join(tmp, "rank1.pt"))
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key  # every rank: the same bits
    assert int(r0["n"]) == 70
    for key in ("top", "trace", "nodes", "weights"):
        torch.testing.assert_close(r0[key], single[key], rtol=1e-6, atol=1e-9, msg=key)
    # MC Fisher samples each rank's shard with the same seed, so it is a different (equally valid) draw than the
    # single process's; it is still the same operator on both ranks, checked above.
    assert r0["fisher"].shape == (2,)
