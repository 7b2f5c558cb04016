"""ActivationSpectrumMonitor: exact window statistics, MP reading, OOD score, hooks, model untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from eigenlens.nn.activations import STATISTICS, ActivationSpectrumMonitor, window_statistics


def _identity_model():
    return nn.Sequential(nn.Identity())


def test_window_statistics_match_dense_reference(gen):
    A = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    X = torch.randn(300, 40, generator=gen, dtype=torch.float64) @ A
    w = window_statistics(X, layer="a")
    Xc = X.numpy() - X.numpy().mean(axis=0)
    eig = np.linalg.eigvalsh(Xc.T @ Xc / 299)
    q = eig / eig.sum()
    assert w.num_rows == 300 and w.num_features == 40
    assert w.top_eigenvalue == pytest.approx(eig[-1], rel=1e-10)
    assert w.effective_rank == pytest.approx(math.exp(-(q * np.log(q)).sum()), rel=1e-10)
    assert w.total_variance == pytest.approx(eig.mean(), rel=1e-10)
    import eigenlens.rmt.fits as fits

    assert w.entropy == pytest.approx(float(fits.spectral_entropy(torch.as_tensor(eig))), rel=1e-9)


def test_wide_window_uses_the_small_gram(gen):
    X = torch.randn(30, 80, generator=gen, dtype=torch.float64)
    w = window_statistics(X)
    Xc = X.numpy() - X.numpy().mean(axis=0)
    assert w.top_eigenvalue == pytest.approx(np.linalg.eigvalsh(Xc.T @ Xc / 29)[-1], rel=1e-10)
    raw = window_statistics(X, center=False)
    assert raw.top_eigenvalue == pytest.approx(np.linalg.eigvalsh(X.numpy().T @ X.numpy() / 30)[-1], rel=1e-10)


def test_noise_windows_read_as_mp_and_spikes_as_outliers(gen):
    noise = torch.randn(1200, 240, generator=gen, dtype=torch.float64) * 0.5
    w = window_statistics(noise)
    assert w.num_outliers == 0
    assert w.mp_variance == pytest.approx(0.25, rel=0.02)
    assert w.mp_distance < 0.05
    # two planted directions of variance 0.25 * 6 and 0.25 * 9: population spikes ell = 6, 9 >> 1 + sqrt(0.2)
    U = torch.linalg.qr(torch.randn(240, 2, generator=gen, dtype=torch.float64)).Q
    z = torch.randn(1200, 2, generator=gen, dtype=torch.float64) * torch.tensor([math.sqrt(5.0), math.sqrt(8.0)]) * 0.5
    w2 = window_statistics(noise + z @ U.T)
    assert w2.num_outliers == 2


def test_windows_are_cut_from_the_stream_and_hooks_removed(gen):
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
    with ActivationSpectrumMonitor(model, ["0", model[2]], window=50) as mon:
        assert len(model[0]._forward_hooks) == 1 and len(model[2]._forward_hooks) == 1
        for _ in range(7):
            model(torch.randn(25, 6, generator=gen))  # 175 rows -> 3 windows + 25 left over
        assert [len(mon.windows[n]) for n in ("0", "2")] == [3, 3]
        assert [w.index for w in mon.windows["0"]] == [0, 1, 2]
        assert all(w.num_rows == 50 and w.num_features == 10 for w in mon.windows["0"])
    assert len(model[0]._forward_hooks) == 0 and len(model[2]._forward_hooks) == 0
    model(torch.randn(100, 6, generator=gen))
    assert len(mon.windows["0"]) == 3  # closed: nothing recorded


def test_hooks_removed_on_exception():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(RuntimeError, match="boom"), ActivationSpectrumMonitor(model, "0", window=4):
        assert len(model[0]._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(model[0]._forward_hooks) == 0


def test_window_content_is_the_stream(gen):
    X = torch.randn(130, 5, generator=gen, dtype=torch.float64)
    model = _identity_model()
    with ActivationSpectrumMonitor(model, "0", window=64) as mon:
        model(X[:30])
        model(X[30:130])
    ref0 = window_statistics(X[:64])
    ref1 = window_statistics(X[64:128])
    assert mon.windows["0"][0].top_eigenvalue == pytest.approx(ref0.top_eigenvalue, rel=1e-12)
    assert mon.windows["0"][1].top_eigenvalue == pytest.approx(ref1.top_eigenvalue, rel=1e-12)


def test_conv_and_sequence_outputs_flatten_to_rows(gen):
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1))
    x = torch.randn(4, 2, 5, 5, generator=gen)
    with ActivationSpectrumMonitor(model, "0", window=100) as mon:
        out = model(x)
    w = mon.windows["0"][0]
    assert w.num_features == 6
    rows = out.detach().movedim(1, -1).reshape(-1, 6)[:100]
    assert w.top_eigenvalue == pytest.approx(window_statistics(rows).top_eigenvalue, rel=1e-10)
    seq = nn.Sequential(nn.Linear(8, 7))
    with ActivationSpectrumMonitor(seq, "0", window=30) as mon:
        seq(torch.randn(4, 10, 8, generator=gen))  # [B, T, D] -> 40 rows of 7 features
    assert len(mon.windows["0"]) == 1 and mon.windows["0"][0].num_features == 7


def test_ood_score_separates_shifted_inputs(gen):
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 16))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    mon = ActivationSpectrumMonitor(model, ["1", "2"], window=64)
    mon.calibrate(torch.randn(64 * 20, 20, generator=gen))
    assert set(mon.reference["1"]) == set(STATISTICS)
    ind = mon.ood_score(torch.randn(64 * 10, 20, generator=gen))
    shifted = torch.randn(64 * 10, 20, generator=gen) * 3.0
    low_rank = torch.randn(64 * 10, 2, generator=gen) @ torch.randn(2, 20, generator=gen)
    assert ind.shape == (10,) and ind.dtype == torch.float64
    assert float(ind.mean()) < 2.0
    assert float(mon.ood_score(shifted).min()) > float(ind.max())
    assert float(mon.ood_score(low_rank).min()) > float(ind.max())
    # deterministic
    torch.testing.assert_close(mon.ood_score(shifted), mon.ood_score(shifted))
    assert len(model[1]._forward_hooks) == 0  # ood_score opens and closes its own hooks


def test_ood_score_leaves_model_untouched(gen):
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    mon = ActivationSpectrumMonitor(model, ["2"], window=16)
    mon.calibrate(torch.randn(64, 5, generator=gen))
    mon.ood_score(torch.randn(32, 5, generator=gen), batch_size=8)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and model[1].training and model[2].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))


def test_calibrate_from_recorded_windows(gen):
    model = _identity_model()
    with ActivationSpectrumMonitor(model, "0", window=40) as mon:
        for _ in range(5):
            model(torch.randn(40, 10, generator=gen))
        mon.calibrate()
    scores = mon.score_windows([{"0": w} for w in mon.windows["0"]])
    assert scores.shape == (5,)
    assert float(scores.max()) < 3.0


def test_errors(gen):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no module named 'fc'"):
        ActivationSpectrumMonitor(model, "fc")
    with pytest.raises(ValueError, match="not part of the model"):
        ActivationSpectrumMonitor(model, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="window: expected an int >= 2"):
        ActivationSpectrumMonitor(model, "0", window=1)
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        ActivationSpectrumMonitor("model", "0")
    mon = ActivationSpectrumMonitor(model, "0", window=16)
    with pytest.raises(ValueError, match="not calibrated; call calibrate"):
        mon.ood_score(torch.randn(32, 4, generator=gen))
    with pytest.raises(ValueError, match="at least 2 reference windows"):
        mon.calibrate(torch.randn(20, 4, generator=gen))
    mon.calibrate(torch.randn(64, 4, generator=gen))
    with pytest.raises(ValueError, match="at least window=16 activation rows"):
        mon.ood_score(torch.randn(10, 4, generator=gen))
    with pytest.raises(ValueError, match="contain NaN or Inf"):
        window_statistics(torch.full((5, 3), float("nan")))
    with pytest.raises(ValueError, match="expected a \\[rows >= 2, features >= 2\\] window"):
        window_statistics(torch.zeros(1, 3))


def test_tuple_outputs_use_the_first_tensor(gen):
    attn = nn.MultiheadAttention(8, 2, batch_first=True)
    model = nn.ModuleDict({"attn": attn})
    x = torch.randn(3, 20, 8, generator=gen)
    with ActivationSpectrumMonitor(model, "attn", window=60) as mon:
        out, _ = attn(x, x, x)
    (w,) = mon.windows["attn"]
    ref = window_statistics(out.detach().reshape(-1, 8))
    assert w.num_features == 8 and w.top_eigenvalue == pytest.approx(ref.top_eigenvalue, rel=1e-10)
