"""Tiny models with exact dense references for the curvature tests (float64, P in the hundreds)."""

from __future__ import annotations

import torch
from torch import nn

DT = torch.float64


class DictModel(nn.Module):
    """Hugging Face style: forward(x=..., scale=...) with keyword tensors."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x, scale):
        return self.b(torch.tanh(self.a(x) * scale))


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.c = nn.Linear(2, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x, z):
        return self.b(torch.tanh(self.a(x) + self.c(z)))


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.block = nn.TransformerEncoderLayer(4, nhead=2, dim_feedforward=4, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.block(self.embed(x)).mean(1))


def make(name: str, gen: torch.Generator | None = None):
    """Return (model, loss_fn, inputs, targets) with N = 10 examples, in float64."""
    g = gen or torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    N = 10
    if name == "mlp":
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
        X = torch.randn(N, 4, generator=g)
        y = torch.randint(0, 3, (N,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif name == "mlp_mse":
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
        X = torch.randn(N, 4, generator=g)
        y = torch.randn(N, 2, generator=g)
        loss = nn.MSELoss()
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 2), nn.Tanh(),
            nn.AvgPool2d(1), nn.Flatten(), nn.Linear(2 * 2 * 2, 3),
        )
        X = torch.randn(N, 1, 6, 6, generator=g)
        y = torch.randint(0, 3, (N,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif name == "layernorm":
        model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2))
        X = torch.randn(N, 4, generator=g)
        y = torch.randn(N, 2, generator=g)
        loss = nn.MSELoss()
    elif name == "batchnorm_eval":
        model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
            model[1].weight.uniform_(0.5, 1.5)
        model.eval()
        X = torch.randn(N, 4, generator=g)
        y = torch.randint(0, 3, (N,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif name == "transformer":
        model = TinyTransformer()
        X = torch.randn(N, 4, 3, generator=g)
        y = torch.randint(0, 3, (N,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif name == "dict":
        model = DictModel()
        X = {"x": torch.randn(N, 4, generator=g), "scale": torch.rand(N, 1, generator=g) + 0.5}
        y = torch.randint(0, 3, (N,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif name == "tuple":
        model = TupleModel()
        X = (torch.randn(N, 3, generator=g), torch.randn(N, 2, generator=g))
        y = torch.randn(N, 2, generator=g)
        loss = nn.MSELoss()
    else:  # pragma: no cover
        raise KeyError(name)
    model = model.to(DT)
    cast = lambda t: t.to(DT) if t.is_floating_point() else t  # noqa: E731
    if isinstance(X, dict):
        X = {k: cast(v) for k, v in X.items()}
    elif isinstance(X, tuple):
        X = tuple(cast(v) for v in X)
    else:
        X = cast(X)
    return model, loss, X, cast(y)


def take(X, idx):
    if isinstance(X, dict):
        return {k: v[idx] for k, v in X.items()}
    if isinstance(X, tuple):
        return tuple(v[idx] for v in X)
    return X[idx]


def split(X, y, sizes):
    out, start = [], 0
    for s in sizes:
        sl = slice(start, start + s)
        out.append((take(X, sl), y[sl]))
        start += s
    return out


def call(model, state, X):
    if isinstance(X, dict):
        return torch.func.functional_call(model, state, (), X)
    if isinstance(X, tuple):
        return torch.func.functional_call(model, state, X)
    return torch.func.functional_call(model, state, (X,))


class Dense:
    """Dense references through torch.func on the flattened selected parameters."""

    def __init__(self, model, loss, X, y, names=None):
        self.model, self.loss, self.X, self.y = model, loss, X, y
        named = dict(model.named_parameters())
        self.names = names or list(named)
        self.others = {n: p.detach() for n, p in named.items() if n not in self.names}
        self.others.update(dict(model.named_buffers()))
        self.shapes = [named[n].shape for n in self.names]
        self.numels = [named[n].numel() for n in self.names]
        self.flat = torch.cat([named[n].detach().reshape(-1) for n in self.names])

    def state(self, flat):
        parts = torch.split(flat, self.numels)
        st = dict(self.others)
        st.update({n: t.reshape(s).clone() for n, t, s in zip(self.names, parts, self.shapes)})
        return st

    def out(self, flat, X=None):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU kernel has no double backward
            return call(self.model, self.state(flat), self.X if X is None else X)

    def hessian(self):
        # torch.autograd.functional (double backward): independent of torch.func, and torch.func.hessian
        # (jacfwd of jacrev) returns a wrong, non-symmetric Hessian for LayerNorm models in torch 2.13
        return torch.autograd.functional.hessian(lambda f: self.loss(self.out(f), self.y), self.flat)

    def ggn(self):
        out = self.out(self.flat)
        J = torch.autograd.functional.jacobian(self.out, self.flat).reshape(out.numel(), -1)
        Hl = torch.autograd.functional.hessian(lambda o: self.loss(o.reshape(out.shape), self.y), out.reshape(-1))
        return J.T @ Hl @ J

    def per_example_grads(self, y=None):
        y = self.y if y is None else y
        n = y.shape[0]
        rows = []
        for i in range(n):
            Xi = take(self.X, slice(i, i + 1))
            yi = y[i : i + 1]
            rows.append(torch.func.grad(lambda f, Xi=Xi, yi=yi: self.loss(self.out(f, Xi), yi))(self.flat))
        return torch.stack(rows)

    def fisher(self, y=None):
        G = self.per_example_grads(y)
        return G.T @ G / G.shape[0]
