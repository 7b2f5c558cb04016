"""The model plumbing shared by the model operators (eigenlens.nn._model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eigenlens.nn._model import (
    Batches,
    FunctionalModel,
    NondeterministicModelError,
    batch_size,
    find_nondeterminism,
    preserve_model_state,
    probe_determinism,
    select_parameters,
)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


# ---------------------------------------------------------------------------- selection
def test_select_all_trainable_in_model_order():
    m = net()
    m[1].weight.requires_grad_(False)
    assert [n for n, _ in select_parameters(m)] == ["0.weight", "0.bias", "1.bias", "3.weight", "3.bias"]


def test_select_by_names_patterns_and_objects_keeps_model_order():
    m = net()
    assert [n for n, _ in select_parameters(m, ["3.bias", "0.*"])] == ["0.weight", "0.bias", "3.bias"]
    assert [n for n, _ in select_parameters(m, "*.weight")] == ["0.weight", "1.weight", "3.weight"]
    assert [n for n, _ in select_parameters(m, [m[3].weight, "1.bias"])] == ["1.bias", "3.weight"]
    m[0].bias.requires_grad_(False)  # an explicit selection includes frozen parameters
    assert [n for n, _ in select_parameters(m, "0.bias")] == ["0.bias"]


def test_select_errors():
    m = net()
    with pytest.raises(ValueError, match=r"'enc\.\*' matches no parameter name; available: 0\.weight, 0\.bias, 1\.w"):
        select_parameters(m, "enc.*")
    with pytest.raises(ValueError, match=r"not a parameter of this model.*matched by identity"):
        select_parameters(m, torch.zeros(3))
    with pytest.raises(ValueError, match="selection is empty"):
        select_parameters(m, [])
    with pytest.raises(TypeError, match="entries must be names, glob patterns or parameters, got int"):
        select_parameters(m, [3])
    with pytest.raises(TypeError, match="params: expected None, a name"):
        select_parameters(m, 3)
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="none with requires_grad=True; pass params= explicitly"):
        select_parameters(m)


# ---------------------------------------------------------------------------- functional model
def test_functional_call_and_flat_layout():
    m = net().eval()
    fm = FunctionalModel(m, ["3.*", "0.bias"])
    assert fm.names == ["0.bias", "3.weight", "3.bias"] and fm.num_params == 4 + 8 + 2
    x = torch.randn(5, 3)
    torch.testing.assert_close(fm(fm.params, x), m(x))
    v = torch.arange(14.0)
    parts = fm.unflatten(v)
    assert parts["3.weight"].shape == (2, 4) and parts["3.weight"][0, 1].item() == 5.0  # row-major
    assert torch.equal(fm.flatten(parts), v)
    V = torch.randn(14, 3)
    cols = fm.unflatten_columns(V)
    assert cols["3.bias"].shape == (3, 2)
    assert torch.equal(fm.flatten_columns(cols), V)
    assert torch.equal(fm.flat_params(), torch.cat([m[0].bias, m[3].weight.reshape(-1), m[3].bias]).detach())
    with pytest.raises(ValueError, match=r"expected a flat vector of shape \(14,\), got \(13,\)"):
        fm.unflatten(torch.zeros(13))


def test_float64_copy_leaves_model_alone():
    m = net().eval()
    fm = FunctionalModel(m, dtype=torch.float64)
    assert fm.dtype == torch.float64 and all(t.dtype == torch.float64 for t in fm.params.values())
    assert fm.fixed["1.num_batches_tracked"].dtype == torch.int64
    assert next(m.parameters()).dtype == torch.float32
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(fm(fm.params, x).float(), m(x.float()), rtol=1e-5, atol=1e-6)


def test_snapshot_is_not_a_view():
    m = net()
    fm = FunctionalModel(m)
    with torch.no_grad():
        m[0].weight.add_(1.0)
    assert not torch.equal(fm.params["0.weight"], m[0].weight)


def test_mixed_dtypes_need_dtype():
    m = net()
    m[3].double()
    with pytest.raises(TypeError, match="mixed dtypes.*pass dtype=torch.float64"):
        FunctionalModel(m)
    assert FunctionalModel(m, dtype=torch.float64).dtype == torch.float64


# ---------------------------------------------------------------------------- data
def test_batches_forms_and_sizes():
    x, y = torch.randn(7, 3), torch.randint(0, 2, (7,))
    single = Batches((x, y))
    assert single.single and [b.n for b in single] == [7] and single.num_examples == 7
    many = Batches([(x[:4], y[:4]), (x[4:], y[4:])], dtype=torch.float64)
    got = list(many)
    assert [b.n for b in got] == [4, 3] and got[0].inputs.dtype == torch.float64 and got[0].targets.dtype == y.dtype
    d = Batches(({"a": x, "b": x[:, :1]}, y))
    assert d.single and next(iter(d)).n == 7
    assert batch_size((x[:2], x)) == 2
    with pytest.raises(TypeError, match="one-shot iterator"):
        Batches(iter([(x, y)]))
    with pytest.raises(TypeError, match="without any such tensor"):
        batch_size("text")
    with pytest.raises(ValueError, match="batch 1 is empty"):
        list(Batches([(x, y), (x[:0], y[:0])]))
    with pytest.raises(TypeError, match="got None"):
        Batches(None)


def test_fingerprint_detects_changed_data():
    x, y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    data = [(x[:3], y[:3]), (x[3:], y[3:])]
    b = Batches(data)
    list(b)
    list(b)
    assert b.changed_batches() == []
    data[1] = (x[3:] + 1.0, y[3:])
    list(b)
    assert b.changed_batches() == [1]
    data.append((x[:1], y[:1]))
    list(b)
    assert b.changed_batches() == [0, 1, 2]


# ---------------------------------------------------------------------------- never harm the model
def test_preserve_model_state_restores_everything_on_exception():
    m = net()
    m[3].weight.requires_grad_(False)
    m(torch.randn(4, 3)).sum().backward()
    m.eval()
    m[1].train()
    snap = (
        [p.detach().clone() for p in m.parameters()],
        [None if p.grad is None else p.grad.clone() for p in m.parameters()],
        [p.requires_grad for p in m.parameters()],
        [mod.training for mod in m.modules()],
        [b.clone() for b in m.buffers()],
        torch.get_rng_state(),
    )
    grad_obj = m[0].weight.grad
    with pytest.raises(KeyError):
        with preserve_model_state(m):
            m.train()
            m(torch.randn(8, 3)).sum().backward()  # grads, running stats change
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(2.0)
            m[3].weight.requires_grad_(True)
            m[0].weight.grad = None
            torch.randn(100)
            raise KeyError("boom")
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), snap[0]))
    assert all((a.grad is None and b is None) or torch.equal(a.grad, b) for a, b in zip(m.parameters(), snap[1]))
    assert [p.requires_grad for p in m.parameters()] == snap[2]
    assert [mod.training for mod in m.modules()] == snap[3]
    assert all(torch.equal(a, b) for a, b in zip(m.buffers(), snap[4]))
    assert torch.equal(torch.get_rng_state(), snap[5])
    assert grad_obj is not None


# ---------------------------------------------------------------------------- determinism probe
def test_find_nondeterminism_names_modules():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1), nn.BatchNorm1d(2), nn.Dropout(0.0))
    causes = find_nondeterminism(m)
    assert len(causes) == 2 and "dropout 1" in causes[0] and "batch norm 2" in causes[1]
    m.eval()
    assert find_nondeterminism(m) == []
    m2 = nn.BatchNorm1d(2, track_running_stats=False).eval()
    assert "without running statistics" in find_nondeterminism(m2)[0]


def test_probe_determinism():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, dtype=torch.float64)
    v = torch.randn(5, dtype=torch.float64)
    probe_determinism(lambda X: A @ X, v)  # deterministic: passes
    with pytest.raises(NondeterministicModelError, match=r"difference .* Likely cause: batch norm \(the model\)"):
        probe_determinism(
            lambda X: (A + torch.randn(5, 5, generator=g, dtype=torch.float64)) @ X, v, model=nn.BatchNorm1d(3)
        )
