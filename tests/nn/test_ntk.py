import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from eigenlens.nn.ntk import empirical_ntk


def _dense_ntk(model, x1, x2):
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def jac(x):
        J = jacrev(lambda p: functional_call(model, p, (x,)))(params)
        n = x.shape[0]
        out = model(x).reshape(n, -1).shape[1]
        return torch.cat([v.reshape(n, out, -1) for v in J.values()], -1)

    J1, J2 = jac(x1), jac(x2)
    return torch.einsum("nop,mqp->nmoq", J1, J2)


class RNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.rec, self.out = nn.Linear(3, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.inp(x[:, 0]))
        for t in range(1, 3):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return self.out(h)


class SeqLinear(nn.Module):
    """Linear applied per position of a sequence, then mean over positions (exercises [n, S, in] inputs)."""

    def __init__(self):
        super().__init__()
        self.lin, self.out = nn.Linear(3, 6), nn.Linear(6, 1)

    def forward(self, x):
        return self.out(torch.relu(self.lin(x)).mean(1))


CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 1)), (5, 4), (3, 4)),
    "mlp_multi": (lambda: nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)), (5, 4), (3, 4)),
    "rnn_shared": (RNN, (4, 3, 3), (2, 3, 3)),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)),
            (3, 2, 6, 6), (2, 2, 6, 6)),
    "seq": (SeqLinear, (4, 5, 3), (2, 5, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_dense_jacobian(case):
    build, s1, s2 = CASES[case]
    torch.manual_seed(0)
    model = build().double()
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(*s1, generator=g, dtype=torch.float64)
    x2 = torch.randn(*s2, generator=g, dtype=torch.float64)
    ref = _dense_ntk(model, x1, x2)
    got = empirical_ntk(model, x1, x2)
    if ref.shape[-1] == 1:
        ref = ref[..., 0, 0]
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-10, rtol=1e-10)
    sym = empirical_ntk(model, x1)
    assert torch.allclose(sym, sym.transpose(0, 1).transpose(-1, -2) if sym.ndim == 4 else sym.T, atol=1e-12)


def test_frozen_parameters_are_left_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    model[0].weight.requires_grad_(False)
    x = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = empirical_ntk(model, x)
    assert torch.allclose(got, _dense_ntk(model, x, x)[..., 0, 0], atol=1e-12)
    assert model[0].weight.requires_grad is False


def test_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.ReLU(), nn.Linear(4, 1))
    model.eval()
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    empirical_ntk(model, x)
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 3.0))
    assert model[3].weight.grad is None


def test_errors():
    model = nn.Linear(3, 1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        empirical_ntk(lambda x: x, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        empirical_ntk(model, [[0.0] * 3])
    with pytest.raises(ValueError, match="x2 must have per-example shape"):
        empirical_ntk(model, torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="N >= 1"):
        empirical_ntk(model, torch.zeros(0, 3))
    frozen = nn.Linear(3, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, torch.zeros(2, 3))
