"""Smoke tests of `eigenlens demo` and `eigenlens curvature RECIPE.py` with tiny budgets."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from eigenlens.cli.main import main

RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()

    def loss():
        return nn.CrossEntropyLoss()

    def data():
        g = torch.Generator().manual_seed(0)
        X = torch.randn(40, 4, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (40,), generator=g)
        return [(X[:16], y[:16]), (X[16:32], y[16:32]), (X[32:], y[32:])]
    """
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_quick(tmp_path, capsys):
    rng = torch.get_rng_state()
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Curvature summary: Hessian" in text and "GD stable lr" in text and "batch-size scaling" in text
    for f in ("density.png", "batch_sizes.png", "summary.json"):
        assert (out / f).stat().st_size > 500
    d = json.loads((out / "summary.json").read_text())
    assert d["training"]["num_params"] == d["num_params"] and len(d["top_eigenvalues"]) >= 3
    assert torch.equal(torch.get_rng_state(), rng)


def test_curvature_recipe(tmp_path, capsys):
    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE)
    js, fig = tmp_path / "s.json", tmp_path / "s.png"
    code = main(["curvature", str(recipe), "--k", "2", "--trace", "--density", "--batch-sizes", "8,40",
                 "--json", str(js), "--plot", str(fig), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "top eigenvalues" in text and "trace" in text and "B^" in text
    d = json.loads(js.read_text())
    H = _dense_hessian()
    ev = torch.linalg.eigvalsh(H)
    assert d["top_eigenvalues"][0] == pytest.approx(float(ev[-1]), rel=1e-6)
    assert d["bottom_eigenvalues"][0] == pytest.approx(float(ev[0]), rel=1e-5, abs=1e-8)
    assert fig.stat().st_size > 1000


def _dense_hessian():
    ns = {}
    exec(RECIPE, ns)
    import eigenlens as el

    return el.hessian(ns["model"](), ns["loss"](), ns["data"]()).to_dense()


def test_recipe_errors(tmp_path, capsys):
    assert main(["curvature", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("def model():\n    return 1\n")
    assert main(["curvature", str(bad)]) == 2
    assert "lacks loss, data()" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["curvature", str(bad), "--batch-sizes", "a,b"])
