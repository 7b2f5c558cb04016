"""A small straight-line tensor-program IR (Yang, Tensor Programs I, arXiv 1902.04760).

A program is an ordered list of nodes, each defining one (infinitely wide) vector:

- :class:`Input` — the network input (finite width ``d``, optional spatial positions);
- :class:`MatMul` — ``W u (+ b)`` with a *named* weight; two nodes with the same ``weight`` share it
  (an RNN cell unrolled over time, a convolution shared across positions);
- :class:`Nonlin` — a coordinatewise function of one or several vectors (``relu(h)``, ``g * h``);
- :class:`LinComb` — ``Σ_i a_i v_i`` with scalar coefficients (residual sums, scalar scaling);
- :class:`Spatial` — a fixed linear map across spatial positions (average pooling, global pooling,
  selecting a time step);
- :class:`Normalize` — parameter-free layer norm of a Gaussian vector;

and a readout (the program's ``output``). Vectors may carry spatial ``positions`` (``()`` for plain
vectors, ``(H, W)`` for feature maps, ``(T,)`` for sequences): the limit then has one covariance per
pixel pair.

The Master Theorem says every coordinate of every vector converges to a jointly Gaussian (``MatMul``,
``Input`` and their linear combinations: "G-vars") or to a fixed function of G-vars (``Nonlin``), so the
whole program is summarised by covariances; :mod:`eigenlens.infinite.propagate` computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Input",
    "MatMul",
    "Nonlin",
    "LinComb",
    "Spatial",
    "Normalize",
    "Node",
    "TensorProgram",
    "relu_slopes",
]


@dataclass(frozen=True)
class Input:
    """The network input: ``width`` channels at ``positions`` (``()`` for a flat vector)."""

    name: str
    width: int
    positions: tuple[int, ...] = ()
    channel_axis: int = -1  # axis (of the per-example tensor) holding the channels

    @property
    def sources(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class MatMul:
    """``W source (+ b)`` for a Gaussian weight named ``weight`` with variance ``sigma_w2 / fan_in``.

    ``kind="dense"`` acts on channels at each position (``flatten=False``) or on the flattened
    ``channels × positions`` vector (``flatten=True``: the limit averages the source's covariance over the
    diagonal of positions). ``kind="conv"`` is a convolution with ``kernel``/``stride``/``padding``/
    ``dilation`` over the source positions.
    """

    name: str
    source: str
    weight: str
    sigma_w2: float
    sigma_b2: float
    has_bias: bool
    fan_in: int
    width: int
    kind: str = "dense"
    flatten: bool = False
    positions: tuple[int, ...] = ()
    in_positions: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,)


@dataclass(frozen=True)
class Nonlin:
    """``fn(*sources)`` applied coordinatewise.

    ``closed`` names a closed-form Gaussian expectation when one exists: ``("relu", a, b)`` for the
    piecewise-linear ``φ(x) = a·x (x < 0), b·x (x > 0)`` (ReLU ``(0, 1)``, LeakyReLU ``(s, 1)``,
    identity ``(1, 1)``) and ``("erf",)`` for ``erf``; ``None`` means Gauss–Hermite quadrature.
    """

    name: str
    sources: tuple[str, ...]
    fn: Callable = field(compare=False)
    fn_name: str = "f"
    closed: tuple | None = None
    positions: tuple[int, ...] = ()


@dataclass(frozen=True)
class LinComb:
    """``Σ_i coeffs[i] · sources[i]`` (a residual sum, a difference, a scalar scaling)."""

    name: str
    sources: tuple[str, ...]
    coeffs: tuple[float, ...]
    positions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Spatial:
    """A fixed linear map across positions applied to every channel.

    ``op``: ``"avgpool"`` (``kernel``/``stride``/``padding``, zero padding counted), ``"global"`` (mean over
    all positions), ``"select"`` (keep position ``index``, a flat index into ``in_positions``).
    """

    name: str
    source: str
    op: str
    in_positions: tuple[int, ...]
    positions: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    index: int = 0

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,)


@dataclass(frozen=True)
class Normalize:
    """Parameter-free layer norm of a Gaussian vector: ``v / sqrt(E v²)``.

    ``over="channels"`` normalises each position separately; ``over="all"`` normalises over channels and
    positions together (the variance averaged over positions).
    """

    name: str
    source: str
    over: str = "channels"
    positions: tuple[int, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,)


Node = Input | MatMul | Nonlin | LinComb | Spatial | Normalize


def relu_slopes(closed: tuple | None) -> tuple[float, float] | None:
    """The slopes ``(a, b)`` of a closed-form piecewise-linear nonlinearity, else ``None``."""
    if closed is not None and closed[0] == "relu":
        return float(closed[1]), float(closed[2])
    return None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclass
class TensorProgram:
    """A straight-line tensor program: ``nodes`` in execution order, one ``input``, one ``output``.

    Attributes:
        nodes: name -> node, in the order the program computes them.
        input: name of the :class:`Input` node.
        output: name of the readout vector; the kernel of the model's output is that of this vector
            (one identical block per output channel).
        out_width: number of output channels of the model.
        module_names: weight name -> the ``nn.Module`` it was read from (for printing).
    """

    nodes: dict[str, Node]
    input: str
    output: str
    out_width: int = 1
    module_names: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self):
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def weights(self) -> dict[str, list[str]]:
        """Weight name -> the MatMul nodes that use it (more than one: the weight is shared)."""
        out: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if isinstance(node, MatMul):
                out.setdefault(node.weight, []).append(node.name)
        return out

    def is_gaussian(self, name: str) -> bool:
        """Whether the vector is a G-var (a linear function of Gaussian matrices' outputs and the input)."""
        node = self.nodes[name]
        if isinstance(node, (Input, MatMul)):
            return True
        if isinstance(node, Nonlin):
            return False
        return all(self.is_gaussian(s) for s in node.sources)

    def __str__(self) -> str:
        inp = self.nodes[self.input]
        pos = f" at positions {inp.positions}" if inp.positions else ""
        lines = [f"TensorProgram: input {inp.name} (width {inp.width}{pos}), {len(self.nodes)} vectors"]
        shared = {w for w, uses in self.weights.items() if len(uses) > 1}
        for node in self.nodes.values():
            lines.append("  " + self._line(node, shared))
        lines.append(f"  readout: {self.output} ({self.out_width} output channel{'s' if self.out_width != 1 else ''})")
        return "\n".join(lines)

    def _line(self, node: Node, shared: set[str]) -> str:
        pos = f"  @{node.positions}" if getattr(node, "positions", ()) else ""
        if isinstance(node, Input):
            return f"{node.name:<8} = input                      # width {node.width}{pos}"
        if isinstance(node, MatMul):
            op = "⊛ " if node.kind == "conv" else ("flat " if node.flatten else "")
            rhs = f"W[{node.weight}] {op}{node.source}"
            if node.has_bias:
                rhs += f" + b[{node.weight}]"
            tag = " (shared)" if node.weight in shared else ""
            return (
                f"{node.name:<8} = {rhs:<26} # MatMul{tag} fan_in {node.fan_in} -> {node.width}, "
                f"σ_w²={_fmt(node.sigma_w2)} σ_b²={_fmt(node.sigma_b2)}{pos}"
            )
        if isinstance(node, Nonlin):
            how = "closed form" if node.closed is not None else "quadrature"
            rhs = f"{node.fn_name}({', '.join(node.sources)})"
            return f"{node.name:<8} = {rhs:<26} # Nonlin ({how}){pos}"
        if isinstance(node, LinComb):
            terms = []
            for c, s in zip(node.coeffs, node.sources):
                terms.append(s if c == 1 else f"{_fmt(c)}·{s}")
            rhs = " + ".join(terms)
            return f"{node.name:<8} = {rhs:<26} # LinComb{pos}"
        if isinstance(node, Spatial):
            if node.op == "select":
                idx = _unravel(node.index, node.in_positions)
                rhs = f"{node.source}[{', '.join(map(str, idx))}]"
            elif node.op == "global":
                rhs = f"mean_positions({node.source})"
            else:
                rhs = f"avgpool{node.kernel}({node.source})"
            return f"{node.name:<8} = {rhs:<26} # Spatial {node.in_positions} -> {node.positions or '()'}"
        if isinstance(node, Normalize):
            rhs = f"layernorm({node.source})"
            return f"{node.name:<8} = {rhs:<26} # Normalize over {node.over}{pos}"
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for s in reversed(shape):
        out.append(index % s)
        index //= s
    return tuple(reversed(out))


def num_positions(positions: tuple[int, ...]) -> int:
    """Number of spatial positions (1 for a plain vector)."""
    return math.prod(positions) if positions else 1
