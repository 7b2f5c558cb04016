"""weight_spectra: layer enumeration, exact eigenvalues, MP reading of random and planted layers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from eigenlens.nn.weights import LayerSpectrum, WeightSpectra, layer_matrices, plot_layer, weight_spectra


def _uniform_(module: nn.Module, gen: torch.Generator, *, bound: float | None = None) -> nn.Module:
    """Re-draw every ≥2-D weight as PyTorch's default U(-1/√fan_in, 1/√fan_in), through ``gen``."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                b = bound if bound is not None else 1.0 / math.sqrt(fan_in)
                p.uniform_(-b, b, generator=gen)
            else:
                p.zero_()
    return module


def _exact_eigs(W: torch.Tensor) -> np.ndarray:
    A = W.detach().to(torch.float64).reshape(W.shape[0], -1).numpy()
    N = max(A.shape)
    X = A if A.shape[0] >= A.shape[1] else A.T
    return np.linalg.eigvalsh(X.T @ X / N)


# ---------------------------------------------------------------------------- layers -> matrices
def test_layer_matrices_conventions(gen):
    model = nn.ModuleDict(
        {
            "fc": nn.Linear(20, 30),
            "conv1": nn.Conv1d(4, 6, 5),
            "conv2": nn.Conv2d(3, 8, (3, 2)),
            "emb": nn.Embedding(50, 12),
            "attn": nn.MultiheadAttention(16, 4),
            "norm": nn.LayerNorm(16),
            "act": nn.ReLU(),
        }
    )
    _uniform_(model, gen)
    mats = {lm.name: lm for lm in layer_matrices(model)}
    assert set(mats) == {"fc", "conv1", "conv2", "emb", "attn.q", "attn.k", "attn.v", "attn.out_proj"}
    assert mats["fc"].matrix.shape == (30, 20) and mats["fc"].kind == "linear"
    assert mats["conv1"].matrix.shape == (6, 4 * 5) and mats["conv1"].kind == "conv1d"
    assert mats["conv2"].matrix.shape == (8, 3 * 3 * 2) and mats["conv2"].shape == (8, 3, 3, 2)
    torch.testing.assert_close(mats["conv2"].matrix, model["conv2"].weight.detach().reshape(8, -1))
    assert mats["emb"].matrix.shape == (50, 12) and mats["emb"].kind == "embedding"
    W = model["attn"].in_proj_weight.detach()
    for i, part in enumerate("qkv"):
        assert mats[f"attn.{part}"].kind == f"attention.{part}"
        torch.testing.assert_close(mats[f"attn.{part}"].matrix, W[16 * i : 16 * (i + 1)])
    assert mats["attn.out_proj"].kind == "linear"


def test_attention_with_separate_kdim_vdim():
    attn = nn.MultiheadAttention(16, 2, kdim=10, vdim=12)
    mats = {lm.name: lm for lm in layer_matrices(attn)}
    assert mats["MultiheadAttention.q"].matrix.shape == (16, 16)
    assert mats["MultiheadAttention.k"].matrix.shape == (16, 10)
    assert mats["MultiheadAttention.v"].matrix.shape == (16, 12)


def test_unsupported_and_lazy_layers_are_listed_with_reasons():
    model = nn.Sequential(nn.Linear(30, 20), nn.LSTM(20, 16), nn.LazyLinear(5))
    mats = {lm.name: lm for lm in layer_matrices(model)}
    assert mats["1"].matrix is None and "unsupported layer type LSTM" in mats["1"].skipped_reason
    assert "weight_ih_l0 (64, 20)" in mats["1"].skipped_reason
    assert mats["2"].matrix is None and "lazy" in mats["2"].skipped_reason


# ---------------------------------------------------------------------------- exact eigenvalues
@pytest.mark.parametrize("shape", [(40, 25), (25, 40)])
def test_eigenvalues_match_dense_float64_reference(gen, shape):
    layer = _uniform_(nn.Linear(shape[1], shape[0]), gen)
    (s,) = weight_spectra(layer, fit_power_law=False)
    ref = _exact_eigs(layer.weight)
    assert s.method == "eigvalsh" and s.matrix_shape == (40, 25) and s.ratio == pytest.approx(25 / 40)
    np.testing.assert_allclose(s.eigenvalues.numpy(), ref, rtol=1e-10, atol=1e-14)
    assert s.eigenvalues.dtype == torch.float64
    # squared singular values over N, stable rank = ||W||_F^2 / ||W||_2^2
    sv = np.linalg.svd(layer.weight.detach().double().numpy(), compute_uv=False)
    assert s.lambda_max == pytest.approx(sv[0] ** 2 / 40, rel=1e-10)
    assert s.stable_rank == pytest.approx((sv**2).sum() / sv[0] ** 2, rel=1e-10)


def test_conv_and_embedding_eigenvalues_exact(gen):
    model = _uniform_(nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten(), nn.Embedding(30, 10)), gen)
    spectra = weight_spectra(model, fit_power_law=False)
    by_name = {s.name: s for s in spectra}
    np.testing.assert_allclose(by_name["0"].eigenvalues.numpy(), _exact_eigs(model[0].weight), rtol=1e-10, atol=1e-14)
    assert by_name["0"].matrix_shape == (27, 16)
    np.testing.assert_allclose(by_name["2"].eigenvalues.numpy(), _exact_eigs(model[2].weight), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_upcast(gen, dtype):
    layer = _uniform_(nn.Linear(64, 48), gen).to(dtype)
    (s,) = weight_spectra(layer, fit_power_law=False)
    assert s.dtype == str(dtype).replace("torch.", "")
    assert s.eigenvalues.dtype == torch.float64
    # the upcast of the half weights is exact, so the spectrum is the float64 spectrum of those weights
    np.testing.assert_allclose(s.eigenvalues.numpy(), _exact_eigs(layer.weight), rtol=1e-10, atol=1e-14)
    assert layer.weight.dtype == dtype


# ---------------------------------------------------------------------------- Marchenko–Pastur reading
@pytest.mark.parametrize(
    ("make", "fan_in"),
    [
        (lambda: nn.Linear(400, 800), 400),
        (lambda: nn.Conv2d(48, 600, 3), 48 * 9),
        (lambda: nn.Embedding(1200, 300), None),
    ],
)
def test_random_init_layers_read_as_noise(gen, make, fan_in):
    layer = make()
    if fan_in is None:  # embeddings: N(0, 1)
        with torch.no_grad():
            layer.weight.normal_(generator=gen)
        variance = 1.0
    else:
        _uniform_(layer, gen)
        variance = 1.0 / (3 * fan_in)
    # at level alpha a pure-noise layer shows an outlier with probability ~alpha; test at 1%
    (s,) = weight_spectra(layer, fit_power_law=False, alpha=0.01)
    assert s.mp.variance == pytest.approx(variance, rel=0.01)
    assert s.num_outliers == 0 and len(s.mp.outliers) == 0
    assert s.false_positive_level == 0.01
    gamma = s.ratio
    assert s.mp.upper_edge == pytest.approx(s.mp.variance * (1 + math.sqrt(gamma)) ** 2, rel=1e-9)


@pytest.mark.parametrize("rank", [1, 3])
def test_planted_low_rank_signal_gives_that_many_outliers(gen, rank):
    N, M = 1200, 300  # gamma = 1/4, BBP threshold for a singular spike: theta^2 > sqrt(gamma) = 0.5
    sigma = 0.02
    Z = torch.randn(N, M, generator=gen, dtype=torch.float64) * sigma
    U = torch.linalg.qr(torch.randn(N, rank, generator=gen, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(M, rank, generator=gen, dtype=torch.float64)).Q
    theta = torch.tensor([2.0, 3.0, 4.0][:rank], dtype=torch.float64)
    W = Z + math.sqrt(N) * sigma * (U * theta) @ V.T
    layer = nn.Linear(M, N)
    with torch.no_grad():
        layer.weight.copy_(W.float())
    (s,) = weight_spectra(layer, fit_power_law=False)
    assert s.num_outliers == rank
    assert s.mp.variance == pytest.approx(sigma**2, rel=0.02)
    # the outliers are the top `rank` eigenvalues, and they sit where the spiked model puts them
    top = torch.sort(s.eigenvalues, descending=True).values[:rank]
    gamma = M / N
    predicted = sigma**2 * (1 + theta**2) * (1 + gamma / theta**2)
    torch.testing.assert_close(torch.sort(top).values, torch.sort(predicted).values, rtol=0.05, atol=0)


def test_pure_noise_power_law_not_reported(gen):
    layer = _uniform_(nn.Linear(300, 200), gen)
    (s,) = weight_spectra(layer, fit_power_law=True)
    assert s.power_law is None
    assert s.power_law_p_value is None or 0.0 <= s.power_law_p_value <= 1.0


def test_heavy_tailed_layer_gets_a_power_law(gen):
    N, M, alpha = 600, 300, 2.5
    u = torch.rand(M, generator=gen, dtype=torch.float64)
    lam = (1 - u) ** (-1 / (alpha - 1))  # Pareto(α = 2.5, x_min = 1): the ESD we plant
    U = torch.linalg.qr(torch.randn(N, M, generator=gen, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(M, M, generator=gen, dtype=torch.float64)).Q
    W = math.sqrt(N) * (U * lam.sqrt()) @ V.T
    layer = nn.Linear(M, N, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(W)
    (s,) = weight_spectra(layer, num_bootstrap=50, generator=gen)
    np.testing.assert_allclose(np.sort(s.eigenvalues.numpy()), np.sort(lam.numpy()), rtol=1e-8)
    assert s.num_outliers > 0
    cand = s.power_law_candidate
    assert abs(cand.alpha - alpha) < 0.35 and cand.p_value is not None
    assert s.power_law_p_value == cand.p_value
    assert (s.power_law is not None) == (cand.p_value >= 0.1)


def test_noise_layer_skips_the_bootstrap(gen):
    layer = _uniform_(nn.Linear(200, 300), gen)
    (s,) = weight_spectra(layer, alpha=0.01)
    assert s.num_outliers == 0 and s.power_law is None and s.power_law_p_value is None
    assert s.power_law_candidate is not None and s.power_law_candidate.p_value is None


# ---------------------------------------------------------------------------- randomized path
def test_randomized_top_k_path(gen):
    N, M = 600, 200
    sigma = 0.05
    W = torch.randn(N, M, generator=gen, dtype=torch.float64) * sigma
    u = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    v = torch.randn(M, 1, generator=gen, dtype=torch.float64)
    W = W + 3 * sigma * u @ v.T / math.sqrt(M)
    layer = nn.Linear(M, N, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(W)
    (s,) = weight_spectra(layer, max_dense=100, k=12, fit_power_law=False, generator=gen)
    assert s.method == "randomized top-k"
    assert s.eigenvalues.shape == (12,)
    ref = _exact_eigs(W)
    np.testing.assert_allclose(s.eigenvalues.numpy()[-4:], ref[-4:], rtol=1e-3)
    assert s.lambda_max == pytest.approx(ref[-1], rel=1e-6)
    assert s.stable_rank == pytest.approx(ref.sum() / ref[-1], rel=1e-6)
    assert s.num_outliers == 1
    assert s.mp.variance == pytest.approx(sigma**2, rel=0.02)
    assert math.isnan(s.entropy)


# ---------------------------------------------------------------------------- skips and errors
def test_skipped_layers_have_reasons(gen):
    model = _uniform_(nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 3), nn.Linear(3, 30), nn.GRU(30, 10)), gen)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    spectra = weight_spectra(model, fit_power_law=False)
    assert [s.name for s in spectra] == ["0", "1", "2", "3"]
    assert spectra[0].skipped_reason is None and spectra[0].eigenvalues is not None
    assert "too few eigenvalues" in spectra[1].skipped_reason and "3 < min_size=8" in spectra[1].skipped_reason
    assert spectra[2].skipped_reason == "the weight contains NaN or Inf"  # checked before the size
    assert "unsupported layer type GRU" in spectra[3].skipped_reason
    assert all(s.skipped for s in spectra[1:])
    zero = nn.Linear(20, 20)
    with torch.no_grad():
        zero.weight.zero_()
    assert weight_spectra(zero)[0].skipped_reason == "the weight is all zeros"


def test_no_analysable_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="no analysable layer.*nn.Linear.*got modules"):
        weight_spectra(nn.Sequential(nn.ReLU(), nn.LayerNorm(4)))
    with pytest.raises(ValueError, match="no analysable layer"):
        weight_spectra(nn.LSTM(4, 4))


def test_bad_arguments():
    layer = nn.Linear(10, 10)
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got Tensor"):
        weight_spectra(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="no weight matrix matches \\['enc\\*'\\]"):
        weight_spectra(layer, layers="enc*")
    with pytest.raises(ValueError, match="alpha: expected a false-positive level in \\(0, 1\\), got 1.5"):
        weight_spectra(layer, alpha=1.5)
    with pytest.raises(ValueError, match="max_dense: expected a positive int"):
        weight_spectra(layer, max_dense=0)
    with pytest.raises(ValueError, match="k: expected a positive int"):
        weight_spectra(layer, k=0)
    with pytest.raises(ValueError, match="num_bootstrap: expected an int >= 0"):
        weight_spectra(layer, num_bootstrap=-1)
    with pytest.raises(ValueError, match="min_size: expected an int >= 2"):
        weight_spectra(layer, min_size=1)


def test_layer_selection_by_pattern(gen):
    model = _uniform_(nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 20), nn.MultiheadAttention(16, 2)), gen)
    assert [s.name for s in weight_spectra(model, layers=["1"], fit_power_law=False)] == ["1"]
    names = [s.name for s in weight_spectra(model, layers="2", fit_power_law=False)]
    assert names == ["2.q", "2.k", "2.v"]
    assert [s.name for s in weight_spectra(model, layers="2.k", fit_power_law=False)] == ["2.k"]


def test_model_untouched(gen):
    model = _uniform_(nn.Sequential(nn.Linear(30, 20), nn.Dropout(0.5), nn.Linear(20, 10)), gen)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[2].weight.requires_grad_(False)
    model.eval()
    model[1].train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    weight_spectra(model, fit_power_law=True)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[0].bias.grad is None
    assert model[0].weight.requires_grad and not model[2].weight.requires_grad
    assert not model.training and not model[0].training and model[1].training
    # also when an exception is raised mid-way
    with pytest.raises(ValueError):
        weight_spectra(model, layers="nope")
    assert torch.equal(torch.get_rng_state(), rng)


def test_deterministic_and_generator_respected(gen):
    layer = _uniform_(nn.Linear(120, 80), gen)
    a = weight_spectra(layer, fit_power_law=True)
    b = weight_spectra(layer, fit_power_law=True)
    assert a[0].power_law_p_value == b[0].power_law_p_value


# ---------------------------------------------------------------------------- outputs
def test_tables_json_and_plot(gen, tmp_path):
    model = _uniform_(nn.Sequential(nn.Linear(60, 40), nn.Linear(40, 2)), gen)
    spectra = weight_spectra(model, fit_power_law=False)
    assert isinstance(spectra, WeightSpectra) and isinstance(spectra[0], LayerSpectrum)
    df = spectra.to_pandas()
    assert list(df["name"]) == ["0", "1"]
    assert df.loc[0, "lambda_max"] == pytest.approx(spectra[0].lambda_max)
    assert df.loc[1, "skipped_reason"].startswith("too few eigenvalues")
    data = json.loads(spectra.to_json(str(tmp_path / "w.json")))
    assert data[0]["name"] == "0" and len(data[0]["eigenvalues"]) == 40 and "variance" in data[0]["mp"]
    assert json.loads((tmp_path / "w.json").read_text()) == data
    text = spectra.table()
    assert "λ_max" in text and "skipped: too few eigenvalues" in text
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_layer(spectra[0])
    assert ax.get_title().startswith("0 linear")
    with pytest.raises(ValueError, match="has no spectrum"):
        plot_layer(spectra[1])


# ---------------------------------------------------------------------------- CLI
RECIPE = '''
import torch

def model():
    net = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.1, 0.1, generator=g)
    return net

def data():
    raise AssertionError("weights does not need data()")
'''


def test_cli_weights(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from eigenlens.cli.main import main

    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE)
    out_json = tmp_path / "w.json"
    rc = main(["weights", str(recipe), "--json", str(out_json), "--plot", str(tmp_path / "plots"), "--no-power-law"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "λ_max" in text and "skipped: too few eigenvalues" in text and "1 layers analysed, 1 skipped" in text
    data = json.loads(out_json.read_text())
    assert [d["name"] for d in data] == ["0", "2"]
    assert (tmp_path / "plots" / "0.png").exists()


def test_cli_weights_bad_recipe(tmp_path, capsys):
    from eigenlens.cli.main import main

    assert main(["weights", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    assert main(["weights", str(bad)]) == 2
    assert "must define a function model()" in capsys.readouterr().err


def test_interrupt_keeps_finished_layers(gen, monkeypatch):
    import eigenlens.nn.weights as wmod

    model = _uniform_(nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 20), nn.Linear(20, 20)), gen)
    real = wmod._analyse
    calls = []

    def flaky(lm, **kw):
        calls.append(lm.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(lm, **kw)

    monkeypatch.setattr(wmod, "_analyse", flaky)
    with pytest.warns(RuntimeWarning, match="interrupted; returning the 1 of 3 layers"):
        spectra = weight_spectra(model, fit_power_law=False)
    assert spectra.interrupted and [s.name for s in spectra] == ["0"]
