import json
import textwrap

from eigenlens.cli.main import main

RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def model():
        return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))

    def data():
        g = torch.Generator().manual_seed(0)
        return [(torch.randn(4, 3, generator=g), torch.zeros(4)) for _ in range(3)]
    """
)


def test_kernel_command_writes_json(tmp_path, capsys):
    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE)
    out = tmp_path / "k.json"
    assert main(["kernel", str(recipe), "--n", "6", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "TensorProgram" in text and "NNGP" in text and "NTK" in text
    d = json.loads(out.read_text())
    assert d["n"] == 6 and len(d["kernels"]["nngp"]) == 6
    assert d["ntk"]["top_eigenvalues"][0] >= d["ntk"]["top_eigenvalues"][-1] > 0


def test_kernel_command_errors(tmp_path, capsys):
    assert main(["kernel", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("def model():\n    return None\n")
    assert main(["kernel", str(bad)]) == 2
    assert "must define a function data()" in capsys.readouterr().err
    unsupported = tmp_path / "unsupported.py"
    unsupported.write_text(RECIPE.replace("nn.Tanh()", "nn.BatchNorm1d(16)"))
    assert main(["kernel", str(unsupported), "--n", "4"]) == 2
    assert "BatchNorm1d" in capsys.readouterr().err
