"""From an ``nn.Module`` to a :class:`~eigenlens.infinite.ir.TensorProgram`, via ``torch.fx``.

The module is traced symbolically (its forward is never run, its parameters are only read), and every
graph node is mapped to a program step: ``Linear``/``Conv`` -> :class:`MatMul` (a module called several
times is one shared weight, as in an unrolled RNN), elementwise functions and parameter-free elementwise
modules -> :class:`Nonlin`, sums/differences/scalar scalings -> :class:`LinComb`, pooling / mean over
positions / time-step selection -> :class:`Spatial`, parameter-free LayerNorm -> :class:`Normalize`;
Dropout and Identity disappear. Tensor layouts are tracked alongside: a plain vector ``[N, C]``,
a channel-first feature map ``[N, C, *S]`` (convolutions), a channel-last sequence ``[N, T, C]``
(selected with ``x[:, t]`` or mapped per position by ``Linear``) and a flattened map.

Reference: G. Yang, Tensor Programs I (arXiv 1902.04760), sections 2-4.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from eigenlens.infinite.ir import (
    Input,
    LinComb,
    MatMul,
    Nonlin,
    Normalize,
    Spatial,
    TensorProgram,
)

__all__ = ["program", "SUPPORTED"]

SUPPORTED = (
    "Linear; Conv1d/Conv2d (zero padding, stride, dilation, groups=1); AvgPool1d/2d; AdaptiveAvgPool1d/2d "
    "(output size dividing the input); mean over spatial dims; Flatten / flatten / view(N, -1); "
    "LayerNorm(elementwise_affine=False) on Gaussian vectors; Dropout; Identity; ReLU; LeakyReLU; erf; "
    "GELU, Tanh, Sigmoid, SiLU and any elementwise torch function or parameter-free elementwise module; "
    "products of vectors; + and - of vectors; scalar * and /; x[:, t] on a [N, T, d] sequence input"
)

_RELU_FNS = {F.relu, torch.relu, torch.nn.functional.relu}
_ERF_FNS = {torch.erf, torch.special.erf}
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


class _Unsupported(ValueError):
    pass


def _unsupported(what: str) -> _Unsupported:
    return _Unsupported(
        f"eigenlens.infinite cannot map {what} to an infinite-width limit. Supported: {SUPPORTED}. "
        "Fix: rewrite the model with these pieces."
    )


@dataclass(frozen=True)
class _Val:
    """A traced tensor: the program vector it is, and its layout."""

    node: str
    kind: str  # "vec" [C] | "cf" [C, *S] | "cl" [*S, C] | "flat" [C*prod(S)]
    width: int
    positions: tuple[int, ...] = ()

    def shape(self) -> tuple[int, ...]:
        if self.kind == "vec":
            return (self.width,)
        if self.kind == "cf":
            return (self.width, *self.positions)
        if self.kind == "cl":
            return (*self.positions, self.width)
        return (self.width * math.prod(self.positions),)


@dataclass(frozen=True)
class _Shape:
    """``x.shape`` / ``x.size()`` of a traced tensor; the batch size is symbolic."""

    dims: tuple[Any, ...]


_BATCH = "N"
_ROOT = "_eigenlens_root"


class _Wrap(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.add_module(_ROOT, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, _ROOT)(x)


def _std_lookup(spec: Any, name: str, what: str) -> float | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        if name not in spec:
            return None
        spec = spec[name]
    if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not math.isfinite(spec) or spec < 0:
        raise ValueError(f"{what} for {name!r} must be a finite float >= 0, got {spec!r}")
    return float(spec)


def _variances(module: nn.Module, name: str, weight_std: Any, bias_std: Any) -> tuple[float, float, int]:
    W = module.weight.detach()
    fan_in = W[0].numel()
    ws = _std_lookup(weight_std, name, "weight_std")
    sw2 = ws**2 if ws is not None else float(fan_in * W.double().pow(2).mean())
    if module.bias is None:
        return sw2, 0.0, fan_in
    bs = _std_lookup(bias_std, name, "bias_std")
    sb2 = bs**2 if bs is not None else float(module.bias.detach().double().pow(2).mean())
    return sw2, sb2, fan_in


def _tuple(x: Any, n: int) -> tuple[int, ...]:
    if isinstance(x, int):
        return (x,) * n
    return tuple(int(v) for v in x)


def _is_elementwise(fn: Callable, n_inputs: int, shape: tuple[int, ...]) -> bool:
    """Whether ``fn`` acts coordinatewise: it commutes with a fixed permutation of the coordinates."""
    numel = 2 * math.prod(shape)
    base = torch.linspace(-2.5, 2.5, numel, dtype=torch.float64)
    inputs = [torch.roll(base, 7 * i).reshape(2, *shape) for i in range(n_inputs)]
    perm = torch.randperm(numel, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            y = fn(*[t.clone() for t in inputs])
            yp = fn(*[t.reshape(-1)[perm].reshape(2, *shape) for t in inputs])
    except Exception:  # noqa: BLE001 - any failure means "not a plain elementwise function"
        return False
    if not isinstance(y, torch.Tensor) or y.shape != (2, *shape) or not y.is_floating_point():
        return False
    return bool(torch.allclose(y.reshape(-1)[perm], yp.reshape(-1), rtol=1e-12, atol=1e-12, equal_nan=True))


class _Builder:
    def __init__(self, model: nn.Module, weight_std: Any, bias_std: Any) -> None:
        self.model = model
        self.weight_std = weight_std
        self.bias_std = bias_std
        self.nodes: dict[str, Any] = {}
        self.count = 0
        self.modules = dict(model.named_modules())
        self.used_weights: set[str] = set()

    def add(self, node_factory: Callable[[str], Any]) -> str:
        self.count += 1
        name = f"h{self.count}"
        self.nodes[name] = node_factory(name)
        return name

    def is_gaussian(self, name: str) -> bool:
        node = self.nodes[name]
        if isinstance(node, (Input, MatMul)):
            return True
        if isinstance(node, Nonlin):
            return False
        return all(self.is_gaussian(s) for s in node.sources)

    # ----------------------------------------------------------------- layers
    def linear(self, mod: nn.Linear, name: str, v: _Val) -> _Val:
        sw2, sb2, fan_in = _variances(mod, name, self.weight_std, self.bias_std)
        self.used_weights.add(name)
        if v.kind in ("vec", "flat"):
            size = v.width * (math.prod(v.positions) if v.kind == "flat" else 1)
            if size != mod.in_features:
                raise ValueError(f"Linear {name!r} expects {mod.in_features} inputs, got a vector of {size}")
            flat = v.kind == "flat"
            out = self.add(
                lambda n: MatMul(
                    n, v.node, name, sw2, sb2, mod.bias is not None, fan_in, mod.out_features,
                    flatten=flat and bool(v.positions), in_positions=v.positions if flat else (),
                )
            )
            return _Val(out, "vec", mod.out_features)
        if v.kind == "cl":
            if v.width != mod.in_features:
                raise ValueError(f"Linear {name!r} expects {mod.in_features} channels, got {v.width}")
            out = self.add(
                lambda n: MatMul(
                    n, v.node, name, sw2, sb2, mod.bias is not None, fan_in, mod.out_features,
                    positions=v.positions, in_positions=v.positions,
                )
            )
            return _Val(out, "cl", mod.out_features, v.positions)
        raise _unsupported(f"Linear {name!r} applied to the last axis of a channel-first feature map")

    def conv(self, mod: nn.Module, name: str, v: _Val) -> _Val:
        nd = 1 if isinstance(mod, nn.Conv1d) else 2
        if v.kind != "cf" or len(v.positions) != nd:
            raise _unsupported(f"{type(mod).__name__} {name!r} on a tensor of layout {v.kind} {v.shape()}")
        if mod.groups != 1 or mod.padding_mode != "zeros":
            raise _unsupported(
                f"{type(mod).__name__} {name!r} with groups={mod.groups}, padding_mode={mod.padding_mode}"
            )
        k, s, d = _tuple(mod.kernel_size, nd), _tuple(mod.stride, nd), _tuple(mod.dilation, nd)
        if isinstance(mod.padding, str):
            if mod.padding == "valid":
                p = (0,) * nd
            else:
                tot = [dd * (kk - 1) for kk, dd in zip(k, d)]
                if any(t % 2 for t in tot):
                    raise _unsupported(f"Conv {name!r} with padding='same' and an even window (asymmetric padding)")
                p = tuple(t // 2 for t in tot)
        else:
            p = _tuple(mod.padding, nd)
        if v.width != mod.in_channels:
            raise ValueError(f"{type(mod).__name__} {name!r} expects {mod.in_channels} channels, got {v.width}")
        out_pos = tuple(
            (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, pp, dd, kk, ss in zip(v.positions, p, d, k, s)
        )
        sw2, sb2, fan_in = _variances(mod, name, self.weight_std, self.bias_std)
        self.used_weights.add(name)
        out = self.add(
            lambda n: MatMul(
                n, v.node, name, sw2, sb2, mod.bias is not None, fan_in, mod.out_channels, kind="conv",
                positions=out_pos, in_positions=v.positions, kernel=k, stride=s, padding=p, dilation=d,
            )
        )
        return _Val(out, "cf", mod.out_channels, out_pos)

    def avgpool(self, v: _Val, nd: int, kernel: Any, stride: Any, padding: Any, what: str) -> _Val:
        if v.kind != "cf" or len(v.positions) != nd:
            raise _unsupported(f"{what} on a tensor of layout {v.kind} {v.shape()}")
        k = _tuple(kernel, nd)
        s = _tuple(stride if stride not in (None, [], ()) else kernel, nd)
        p = _tuple(padding, nd)
        out_pos = tuple((n + 2 * pp - kk) // ss + 1 for n, pp, kk, ss in zip(v.positions, p, k, s))
        out = self.add(lambda n: Spatial(n, v.node, "avgpool", v.positions, out_pos, k, s, p))
        return _Val(out, "cf", v.width, out_pos)

    def adaptive(self, v: _Val, nd: int, size: Any, what: str) -> _Val:
        if v.kind != "cf" or len(v.positions) != nd:
            raise _unsupported(f"{what} on a tensor of layout {v.kind} {v.shape()}")
        size = _tuple(size, nd)
        if all(o == 1 for o in size):
            out = self.add(lambda n: Spatial(n, v.node, "global", v.positions, (1,) * nd))
            return _Val(out, "cf", v.width, (1,) * nd)
        if any(o is None or n % o for n, o in zip(v.positions, size)):
            raise _unsupported(f"{what} with output size {size} not dividing the input size {v.positions}")
        k = tuple(n // o for n, o in zip(v.positions, size))
        return self.avgpool(v, nd, k, k, 0, what)

    def global_mean(self, v: _Val, dims: Any, keepdim: bool) -> _Val:
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        ndim = 1 + len(v.shape())
        dims = tuple(sorted(d % ndim for d in dims))
        if v.kind == "cf":
            spatial = tuple(range(2, ndim))
        elif v.kind == "cl":
            spatial = tuple(range(1, ndim - 1))
        else:
            spatial = ()
        if not spatial or dims != spatial:
            raise _unsupported(f"mean over dims {dims} of a tensor of shape {v.shape()} (only all spatial dims)")
        keep = (1,) * len(v.positions) if keepdim else ()
        out = self.add(lambda n: Spatial(n, v.node, "global", v.positions, keep))
        return _Val(out, v.kind if keepdim else "vec", v.width, keep)

    def layernorm(self, v: _Val, shape: Any, what: str) -> _Val:
        shape = _tuple(shape, 1)
        if not self.is_gaussian(v.node):
            raise _unsupported(
                f"{what} of a non-Gaussian vector (after a nonlinearity); place it after a Linear/Conv or a sum of them"
            )
        full = v.shape()
        if v.kind in ("vec", "cl") and shape == (v.width,):
            over = "channels"
        elif tuple(shape) == tuple(full):
            over = "all" if v.positions else "channels"
        else:
            raise _unsupported(f"{what} over {shape} of a tensor of shape {full}")
        out = self.add(lambda n: Normalize(n, v.node, over, v.positions))
        return _Val(out, v.kind, v.width, v.positions)

    def nonlin(self, fn: Callable, args: list[_Val], fn_name: str, closed: tuple | None) -> _Val:
        first = args[0]
        for a in args[1:]:
            if (a.kind, a.width, a.positions) != (first.kind, first.width, first.positions):
                raise _unsupported(f"{fn_name} of tensors with different layouts {first.shape()} and {a.shape()}")
        if closed is None and not _is_elementwise(fn, len(args), first.shape()):
            raise _unsupported(f"the function {fn_name} (not elementwise)")
        out = self.add(lambda n: Nonlin(n, tuple(a.node for a in args), fn, fn_name, closed, first.positions))
        return _Val(out, first.kind, first.width, first.positions)

    def lincomb(self, terms: list[tuple[float, _Val]]) -> _Val:
        first = terms[0][1]
        for _, a in terms[1:]:
            if (a.kind, a.width, a.positions) != (first.kind, first.width, first.positions):
                raise _unsupported(f"a sum of tensors with different layouts {first.shape()} and {a.shape()}")
        out = self.add(
            lambda n: LinComb(n, tuple(a.node for _, a in terms), tuple(float(c) for c, _ in terms), first.positions)
        )
        return _Val(out, first.kind, first.width, first.positions)

    def flatten(self, v: _Val) -> _Val:
        if v.kind == "vec":
            return v
        return _Val(v.node, "flat", v.width, v.positions)


def _input_kind(gm: torch.fx.GraphModule, ph: torch.fx.Node, ndim: int, modules: dict[str, nn.Module]) -> str:
    if ndim == 1:
        return "vec"
    for user in ph.users:
        if user.op == "call_function" and user.target is operator.getitem:
            return "cl"
        if user.op == "call_module" and isinstance(modules.get(user.target), nn.Linear):
            return "cl"
    return "cf"


def _scalar(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def program(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    weight_std: float | dict[str, float] | None = None,
    bias_std: float | dict[str, float] | None = None,
) -> TensorProgram:
    """Trace ``model`` into the tensor program whose infinite-width limit :func:`kernels` computes.

    The model is traced with ``torch.fx`` (never run); its weights are only read, to get the variances.

    Args:
        model: an ``nn.Module`` built from the supported pieces (see :data:`SUPPORTED`); Python loops over
            a fixed number of steps are unrolled (a module used at every step is one shared weight).
        example_input: ``[N, ...]`` tensor; only its per-example shape is used.
        weight_std: ``σ_w`` of every Linear/Conv (float), per module name (dict), or ``None``: read off the
            module, ``σ_w² = fan_in · mean(W²)``.
        bias_std: ``σ_b`` likewise; ``None`` reads ``σ_b² = mean(b²)`` (0 without bias).

    Returns:
        The :class:`TensorProgram`; ``print`` it to read the program.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``example_input`` not a tensor.
        ValueError: an unsupported module/operation (the message names it and lists what is supported),
            a shape mismatch, or a bad ``weight_std``/``bias_std``.

    Example:
        >>> import torch, eigenlens as el
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> prog = el.infinite.program(net, torch.zeros(1, 3), weight_std=1.0, bias_std=0.0)
        >>> [type(n).__name__ for n in prog]
        ['Input', 'MatMul', 'Nonlin', 'MatMul']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor [N, ...], got {type(example_input).__name__}")
    if example_input.ndim < 2:
        raise ValueError(
            f"example_input must have a batch dimension: expected [N, d] or [N, C, ...], got shape "
            f"{tuple(example_input.shape)}; fix: use x.unsqueeze(0) for a single example"
        )
    root = model
    if torch.fx.Tracer().is_leaf_module(model, ""):
        root = _Wrap(model)  # a bare leaf module (e.g. one nn.Linear): trace it as a call
    try:
        gm = torch.fx.symbolic_trace(root)
    except Exception as err:  # noqa: BLE001 - fx raises many kinds
        raise ValueError(
            f"torch.fx could not trace {type(model).__name__}: {err}. Expected: a forward without data-dependent "
            "control flow (loops over a fixed number of steps are fine); fix: make loop bounds Python ints."
        ) from err
    b = _Builder(root, weight_std, bias_std)
    modules = b.modules
    env: dict[torch.fx.Node, Any] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise _unsupported(f"a forward with {len(placeholders)} arguments (exactly one input tensor)")
    output_val: Any = None

    def arg(a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(arg(x) for x in a)
        if isinstance(a, dict):
            return {k: arg(v) for k, v in a.items()}
        return a

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            shape = tuple(example_input.shape[1:])
            kind = _input_kind(gm, node, len(shape), modules)
            if kind == "vec":
                width, pos, axis = shape[0], (), 0
            elif kind == "cl":
                width, pos, axis = shape[-1], shape[:-1], len(shape) - 1
            else:
                width, pos, axis = shape[0], shape[1:], 0
            b.nodes["x"] = Input("x", int(width), tuple(int(p) for p in pos), axis)
            env[node] = _Val("x", kind, int(width), tuple(int(p) for p in pos))
        elif node.op == "get_attr":
            raise _unsupported(f"direct use of the parameter/buffer {node.target!r} (wrap it in nn.Linear)")
        elif node.op == "call_module":
            name = "" if node.target == _ROOT else node.target
            env[node] = _call_module(b, modules[node.target], name, [arg(a) for a in node.args], arg(node.kwargs))
        elif node.op in ("call_function", "call_method"):
            env[node] = _call_function(b, node, [arg(a) for a in node.args], arg(node.kwargs))
        elif node.op == "output":
            output_val = arg(node.args[0])
    if not isinstance(output_val, _Val):
        raise _unsupported(f"a forward returning {type(output_val).__name__} (expected a single tensor)")
    for what, spec in (("weight_std", weight_std), ("bias_std", bias_std)):
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - b.used_weights)
            if unknown:
                raise ValueError(
                    f"{what} names modules {unknown} that are not Linear/Conv layers of the model; expected keys "
                    f"among {sorted(b.used_weights)}"
                )
    names = {w: w for w in b.used_weights}
    return TensorProgram(b.nodes, "x", output_val.node, out_width=output_val.width, module_names=names)


def _call_module(b: _Builder, mod: nn.Module, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    v = args[0] if args else None
    if not isinstance(v, _Val):
        raise _unsupported(f"module {name!r} ({type(mod).__name__}) called on {type(v).__name__}")
    if isinstance(mod, nn.Linear):
        return b.linear(mod, name, v)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        return b.conv(mod, name, v)
    if isinstance(mod, _DROPOUT):
        return v
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
        nd = 1 if isinstance(mod, nn.AvgPool1d) else 2
        if mod.ceil_mode or not mod.count_include_pad or getattr(mod, "divisor_override", None):
            raise _unsupported(f"{type(mod).__name__} {name!r} with ceil_mode/count_include_pad=False/divisor_override")
        return b.avgpool(v, nd, mod.kernel_size, mod.stride, mod.padding, f"{type(mod).__name__} {name!r}")
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        nd = 1 if isinstance(mod, nn.AdaptiveAvgPool1d) else 2
        return b.adaptive(v, nd, mod.output_size, f"{type(mod).__name__} {name!r}")
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise _unsupported(f"Flatten {name!r} with start_dim={mod.start_dim}, end_dim={mod.end_dim}")
        return b.flatten(v)
    if isinstance(mod, nn.LayerNorm):
        if mod.weight is not None or mod.bias is not None:
            raise _unsupported(f"LayerNorm {name!r} with elementwise_affine=True (use elementwise_affine=False)")
        return b.layernorm(v, mod.normalized_shape, f"LayerNorm {name!r}")
    if isinstance(mod, nn.ReLU):
        return b.nonlin(F.relu, [v], "relu", ("relu", 0.0, 1.0))
    if isinstance(mod, nn.LeakyReLU):
        s = float(mod.negative_slope)
        return b.nonlin(lambda t: F.leaky_relu(t, s), [v], f"leaky_relu[{s:g}]", ("relu", s, 1.0))
    if any(True for _ in mod.parameters()) or any(True for _ in mod.buffers()):
        raise _unsupported(f"module {name!r} ({type(mod).__name__}) with parameters or buffers")
    fn = (lambda t, m=mod: m(t.clone())) if getattr(mod, "inplace", False) else mod
    return b.nonlin(fn, [v], type(mod).__name__, None)


_METHOD_FN = {
    "relu": F.relu,
    "erf": torch.erf,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "neg": operator.neg,
}


def _call_function(b: _Builder, node: torch.fx.Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
    target = node.target
    label = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if node.op == "call_method":
        obj = args[0]
        if isinstance(obj, _Shape):
            if target == "__getitem__":
                return obj.dims[args[1]]
            raise _unsupported(f"shape method {target!r}")
        if not isinstance(obj, _Val):
            raise _unsupported(f"method {target!r} on {type(obj).__name__}")
        if target == "size":
            dims = (_BATCH, *obj.shape())
            return dims[args[1]] if len(args) > 1 else _Shape(dims)
        if target in ("view", "reshape", "flatten"):
            return _reshape(b, obj, target, args[1:], kwargs)
        if target == "mean":
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            return b.global_mean(obj, dims, bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False)))
        if target in ("contiguous", "clone", "detach") or (target == "to" and not args[1:]):
            return obj
        if target in _METHOD_FN:
            return _call_target(b, _METHOD_FN[target], target, args, kwargs)
        fn = getattr(torch.Tensor, target, None)
        if fn is None:
            raise _unsupported(f"tensor method {target!r}")
        return _call_target(b, fn, target, args, kwargs)
    # call_function
    if target is getattr:
        obj, attr = args
        if isinstance(obj, _Val) and attr == "shape":
            return _Shape((_BATCH, *obj.shape()))
        raise _unsupported(f"attribute {attr!r}")
    if target is operator.getitem:
        obj, idx = args
        if isinstance(obj, _Shape):
            return obj.dims[idx]
        if isinstance(obj, _Val):
            return _select(b, obj, idx)
        raise _unsupported(f"indexing of {type(obj).__name__}")
    if target in (torch.flatten,):
        return _reshape(b, args[0], "flatten", args[1:], kwargs)
    if target in (torch.reshape,):
        return _reshape(b, args[0], "reshape", args[1:], kwargs)
    if target is torch.mean:
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        return b.global_mean(args[0], dims, bool(kwargs.get("keepdim", False)))
    if target in (F.avg_pool1d, F.avg_pool2d):
        nd = 1 if target is F.avg_pool1d else 2
        p = list(args[1:]) + [None] * 3
        return b.avgpool(args[0], nd, kwargs.get("kernel_size", p[0]), kwargs.get("stride", p[1]),
                         kwargs.get("padding", p[2] or 0), label)
    if target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d):
        nd = 1 if target is F.adaptive_avg_pool1d else 2
        return b.adaptive(args[0], nd, kwargs.get("output_size", args[1] if len(args) > 1 else None), label)
    if target is F.layer_norm:
        shape = args[1] if len(args) > 1 else kwargs["normalized_shape"]
        extra = list(args[2:4]) + [kwargs.get("weight"), kwargs.get("bias")]
        if any(e is not None for e in extra):
            raise _unsupported("F.layer_norm with weight/bias")
        return b.layernorm(args[0], shape, "layer_norm")
    if target in (F.dropout, F.alpha_dropout, torch.nn.functional.dropout1d, torch.nn.functional.dropout2d):
        return args[0]
    return _call_target(b, target, label, args, kwargs)


def _call_target(b: _Builder, target: Callable, label: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    tensors = [a for a in args if isinstance(a, _Val)]
    if any(isinstance(v, _Val) for v in kwargs.values()):
        raise _unsupported(f"{label} with tensor keyword arguments")
    if not tensors:
        raise _unsupported(f"{label} on non-tensor arguments")
    # linear operations -> LinComb
    if target in (operator.add, torch.add, operator.sub, torch.sub) and len(args) == 2:
        x, y = args
        sign = -1.0 if target in (operator.sub, torch.sub) else 1.0
        alpha = float(kwargs.get("alpha", 1.0))
        if isinstance(x, _Val) and isinstance(y, _Val):
            return b.lincomb([(1.0, x), (sign * alpha, y)])
    if target in (operator.mul, torch.mul) and len(args) == 2:
        x, y = args
        if isinstance(x, _Val) and _scalar(y):
            return b.lincomb([(float(y), x)])
        if _scalar(x) and isinstance(y, _Val):
            return b.lincomb([(float(x), y)])
    if target in (operator.truediv, torch.div) and len(args) == 2 and isinstance(args[0], _Val) and _scalar(args[1]):
        if kwargs.get("rounding_mode") is None:
            return b.lincomb([(1.0 / float(args[1]), args[0])])
    if target in (operator.neg, torch.neg) and len(args) == 1:
        return b.lincomb([(-1.0, args[0])])
    if target in (operator.pos,) and len(args) == 1:
        return args[0]
    # closed forms
    if target in _RELU_FNS and len(tensors) == 1 and not kwargs.get("inplace", False):
        return b.nonlin(F.relu, [args[0]], "relu", ("relu", 0.0, 1.0))
    if target is F.leaky_relu:
        s = float(args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01))
        return b.nonlin(lambda t: F.leaky_relu(t, s), [args[0]], f"leaky_relu[{s:g}]", ("relu", s, 1.0))
    if target in _ERF_FNS and len(args) == 1:
        return b.nonlin(torch.erf, [args[0]], "erf", ("erf",))
    # any elementwise function of one or several tensors
    pos = [i for i, a in enumerate(args) if isinstance(a, _Val)]
    const = list(args)
    kw = {k: v for k, v in kwargs.items() if k != "inplace"}

    def fn(*ts: torch.Tensor) -> torch.Tensor:
        call = list(const)
        for i, t in zip(pos, ts):
            call[i] = t
        return target(*call, **kw)

    return b.nonlin(fn, tensors, label, None)


def _reshape(b: _Builder, v: Any, how: str, args: list[Any], kwargs: dict[str, Any]) -> _Val:
    if not isinstance(v, _Val):
        raise _unsupported(f"{how} of {type(v).__name__}")
    if how == "flatten":
        start = args[0] if args else kwargs.get("start_dim", 0)
        end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
        if start != 1 or end != -1:
            raise _unsupported(f"flatten(start_dim={start}, end_dim={end}) (only flatten(x, 1))")
        return b.flatten(v)
    shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)
    total = math.prod(v.shape())
    if len(shape) == 2 and shape[0] in (_BATCH, -1) and shape[1] in (-1, total):
        return b.flatten(v)
    if len(shape) == 2 and shape[1] == -1 and shape[0] == _BATCH:
        return b.flatten(v)
    raise _unsupported(f"{how}{shape} of a tensor of shape {v.shape()} (only x.{how}(x.size(0), -1))")


def _select(b: _Builder, v: _Val, idx: Any) -> _Val:
    idx = idx if isinstance(idx, tuple) else (idx,)
    full = slice(None)
    if (
        v.kind == "cl"
        and len(v.positions) == 1
        and len(idx) in (2, 3)
        and idx[0] == full
        and isinstance(idx[1], int)
        and all(i == full for i in idx[2:])
    ):
        t = idx[1] % v.positions[0]
        out = b.add(lambda n: Spatial(n, v.node, "select", v.positions, (), index=t))
        return _Val(out, "vec", v.width)
    raise _unsupported(f"indexing {idx} of a tensor of shape {v.shape()} (only x[:, t] on a [N, T, d] sequence)")
