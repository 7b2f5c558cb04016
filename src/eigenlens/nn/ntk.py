"""Empirical (finite-width) neural tangent kernel ``Θ(x, x') = J(x) J(x')ᵀ`` of a PyTorch model.

For every ``nn.Linear`` the Jacobian is never formed: its block of ``J J'ᵀ`` factorises into the layer
inputs and the output-gradients at the layer's output, ``(a·a' + 1)(g·g')`` (summed over every pair of
calls when the layer is reused, e.g. an unrolled RNN). Other trainable parameters use ``torch.func``
(``jacrev``). Jacot, Gabriel, Hongler (arXiv 1806.07572); the factorisation is that of Novak et al.,
"Fast Finite Width Neural Tangent Kernel" (arXiv 2206.08720).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["empirical_ntk"]


def _features(model: nn.Module, x: Tensor, linears: dict[str, nn.Linear], others: dict[str, Tensor]):
    """Per-Linear (inputs, output-gradients) for every call, and the Jacobian of the other parameters."""
    records: dict[str, list[list[Tensor]]] = {name: [] for name in linears}
    handles = []

    def make_hook(name: str):
        def hook(mod, inputs, output):
            records[name].append([inputs[0], output])

        return hook

    for name, mod in linears.items():
        handles.append(mod.register_forward_hook(make_hook(name)))
    try:
        xin = x.detach().clone().requires_grad_(True)
        out = model(xin)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, Tensor):
        raise TypeError(f"empirical_ntk needs a model returning a tensor, got {type(out).__name__}")
    out2 = out.reshape(out.shape[0], -1)
    n, O = out2.shape
    calls = [(name, i) for name in linears for i in range(len(records[name]))]
    outs = [records[name][i][1] for name, i in calls]
    grads: list[list[Tensor]] = [[] for _ in calls]
    for o in range(O):
        gs = torch.autograd.grad(out2[:, o].sum(), outs, retain_graph=True, allow_unused=True)
        for c, g in enumerate(gs):
            grads[c].append(torch.zeros_like(outs[c]) if g is None else g)
    feats: dict[str, list[tuple[Tensor, Tensor]]] = {}
    for c, (name, i) in enumerate(calls):
        mod = linears[name]
        a = records[name][i][0].detach()
        g = torch.stack(grads[c], 1).detach()  # [n, O, *, out]
        if a.dim() > 2:  # Linear applied per position: fold positions into the contraction
            a = a.reshape(n, -1, a.shape[-1])
            g = g.reshape(n, O, -1, g.shape[-1])
        else:
            a = a[:, None, :]
            g = g[:, :, None, :]
        cols = []
        if mod.weight.requires_grad:
            cols.append(a)
        if mod.bias is not None and mod.bias.requires_grad:
            cols.append(torch.ones_like(a[..., :1]))
        feats.setdefault(name, []).append((torch.cat(cols, -1), g))
    jac = None
    if others:
        from torch.func import functional_call, jacrev

        def f(ps: dict[str, Tensor]) -> Tensor:
            return functional_call(model, ps, (x,)).reshape(n, -1)

        J = jacrev(f)(others)
        jac = torch.cat([v.reshape(n, O, -1) for v in J.values()], -1).detach()
    return feats, jac, O


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    r"""The empirical NTK ``Θ[n, m, o, o'] = Σ_θ ∂f_o(x1_n)/∂θ · ∂f_{o'}(x2_m)/∂θ`` over trainable parameters.

    Args:
        model: the network; evaluated in its current train/eval mode (call ``model.eval()`` first if it has
            dropout or batch norm). Parameters, ``.grad``, ``requires_grad``, the mode and the global RNG are
            left exactly as they were.
        x1: ``[N1, ...]`` inputs; x2: ``[N2, ...]`` inputs or ``None`` for ``x1``.

    Returns:
        ``[N1, N2]`` for a model with one output per example, else ``[N1, N2, O, O]`` (dtype of the model).

    Raises:
        TypeError: ``model``/inputs of the wrong type, or a model not returning a tensor.
        ValueError: inputs without a batch dimension or with mismatched per-example shapes, or a model
            without trainable parameters.

    Example:
        >>> import torch
        >>> from eigenlens.nn.ntk import empirical_ntk
        >>> lin = torch.nn.Linear(3, 1)
        >>> x = torch.eye(3)
        >>> empirical_ntk(lin, x)  # (x·x' + 1) for a linear model
        tensor([[2., 1., 1.],
                [1., 2., 1.],
                [1., 1., 2.]])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [N, ...], got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape [N, ...] with N >= 1, got {tuple(x.shape)}")
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x2 must have per-example shape {tuple(x1.shape[1:])} like x1, got {tuple(x2.shape[1:])}")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError(
            "empirical_ntk: the model has no trainable parameters (requires_grad=True); nothing to differentiate"
        )
    linears = {
        n: m for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(p.requires_grad for p in m.parameters(recurse=False))
    }
    handled = {f"{n}.{p}" if n else p for n, m in linears.items() for p, _ in m.named_parameters(recurse=False)}
    others = {n: p for n, p in trainable.items() if n not in handled}
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        f1, j1, O = _features(model, x1, linears, others)
        f2, j2, _ = (f1, j1, O) if x2 is None else _features(model, x2, linears, others)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    ref = next(iter(trainable.values()))
    theta = torch.zeros(n1, n2, O, O, dtype=ref.dtype, device=ref.device)
    for name in f1:
        for a1, g1 in f1[name]:
            for a2, g2 in f2[name]:
                # a: [n, S, in], g: [n, O, S, out]; sum over positions s, t of (a_s·a'_t)(g_s·g'_t)
                aa = torch.einsum("nsi,mti->nmst", a1, a2)
                theta += torch.einsum("nmst,nosj,mptj->nmop", aa, g1, g2)
    if j1 is not None:
        theta += torch.einsum("nop,mqp->nmoq", j1, j2)
    return theta[:, :, 0, 0] if O == 1 else theta
