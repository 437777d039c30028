"""Parameter normalization, validation and output-shape rules for every op.

Every rule raises ``ValueError`` whose message names the op, the parameter and the rule it broke,
e.g. ``conv_transpose2d: stride[1] must be >= 1, got 0``. Nothing here touches array data, so the
harness can validate a case (and compute its output shape) without building inputs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IntOrSeq = int | Sequence[int]

#: op name -> (spatial dims, transposed): the six ops of :mod:`reference.ops`.
OPS: dict[str, tuple[int, bool]] = {
    "conv1d": (1, False),
    "conv2d": (2, False),
    "conv3d": (3, False),
    "conv_transpose1d": (1, True),
    "conv_transpose2d": (2, True),
    "conv_transpose3d": (3, True),
}

#: The general forward convolution (MLX's ``conv_general``), by spatial dims: separate low and
#: high padding, input dilation and kernel flip on top of a forward op's parameters. Not one of
#: :data:`OPS` (the six ops of the public API): :func:`reference.ops.run_op` runs them with
#: ``padding_hi``, ``input_dilation`` and ``flip``.
GENERAL_OPS: dict[str, tuple[int, bool]] = {
    "conv_general1d": (1, False),
    "conv_general2d": (2, False),
    "conv_general3d": (3, False),
}


def _as_int(value: object) -> int | None:
    """``value`` as a Python int if it is an integer (NumPy integers too, bools not), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def as_tuple(op: str, name: str, value: IntOrSeq, ndim: int) -> tuple[int, ...]:
    """Broadcast an int to ``ndim`` ints, or check that a sequence has exactly ``ndim`` ints."""
    scalar = _as_int(value)
    if scalar is not None:
        return (scalar,) * ndim
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{op}: {name} must be an int or a sequence of {ndim} ints, got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(
            f"{op}: {name} must be an int or a sequence of {ndim} ints, got {value!r}"
        ) from None
    if len(items) != ndim:
        raise ValueError(
            f"{op}: {name} must have one entry per spatial dimension ({ndim}), got {len(items)}: "
            f"{items!r}"
        )
    ints = tuple(_as_int(item) for item in items)
    if any(i is None for i in ints):
        raise ValueError(f"{op}: {name} entries must be ints, got {items!r}")
    return ints  # type: ignore[return-value]


def _at_least(op: str, name: str, values: tuple[int, ...], low: int) -> None:
    for i, v in enumerate(values):
        if v < low:
            where = f"{name}[{i}]" if len(values) > 1 else name
            raise ValueError(f"{op}: {where} must be >= {low}, got {v}")


@dataclass(frozen=True)
class ConvParams:
    """Validated, per-dimension parameters of one (transposed) convolution."""

    op: str
    ndim: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int
    transposed: bool
    #: The general forward convolution's extras (:data:`GENERAL_OPS`): high padding (None: the
    #: same as ``padding``, the low one), input dilation (zeros between input elements) and
    #: kernel flip (convolution instead of cross-correlation).
    padding_hi: tuple[int, ...] | None = None
    input_dilation: tuple[int, ...] | None = None
    flip: bool = False

    @property
    def high_padding(self) -> tuple[int, ...]:
        return self.padding if self.padding_hi is None else self.padding_hi

    @property
    def input_dilations(self) -> tuple[int, ...]:
        return self.input_dilation or (1,) * self.ndim


def check_params(
    op: str,
    ndim: int,
    *,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    transposed: bool,
    padding_hi: IntOrSeq | None = None,
    input_dilation: IntOrSeq | None = None,
    flip: bool = False,
) -> ConvParams:
    """Normalize and check the scalar parameters (everything that does not depend on shapes).
    ``padding_hi``, ``input_dilation`` and ``flip`` are the general forward convolution's
    (:data:`GENERAL_OPS`); a transposed op takes none of them."""
    general = padding_hi is not None or input_dilation is not None or flip is not False
    if general and transposed:
        raise ValueError(
            f"{op}: padding_hi, input_dilation and flip apply to forward convolution only"
        )
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"{op}: flip must be a bool, got {flip!r}")
    pad_hi = None if padding_hi is None else as_tuple(op, "padding_hi", padding_hi, ndim)
    in_dil = (
        None if input_dilation is None else as_tuple(op, "input_dilation", input_dilation, ndim)
    )
    if pad_hi is not None:
        _at_least(op, "padding_hi", pad_hi, 0)
    if in_dil is not None:
        _at_least(op, "input_dilation", in_dil, 1)
    st = as_tuple(op, "stride", stride, ndim)
    pad = as_tuple(op, "padding", padding, ndim)
    dil = as_tuple(op, "dilation", dilation, ndim)
    opad = as_tuple(op, "output_padding", output_padding, ndim)
    _at_least(op, "stride", st, 1)
    _at_least(op, "dilation", dil, 1)
    _at_least(op, "padding", pad, 0)
    _at_least(op, "output_padding", opad, 0)
    g = _as_int(groups)
    if g is None:
        raise ValueError(f"{op}: groups must be an int, got {groups!r}")
    groups = g
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    if not transposed and any(opad):
        raise ValueError(f"{op}: output_padding is only defined for transposed convolution")
    for i, (o, s, d) in enumerate(zip(opad, st, dil)):
        if o >= max(s, d):
            where = f"output_padding[{i}]" if ndim > 1 else "output_padding"
            raise ValueError(
                f"{op}: {where} must be smaller than max(stride, dilation) = {max(s, d)}, got {o}"
            )
    return ConvParams(op, ndim, st, pad, dil, opad, groups, transposed, pad_hi, in_dil, bool(flip))


def check_shapes(
    p: ConvParams,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """Check input, weight (MLX layout) and bias shapes; return the output shape."""
    op, nd = p.op, p.ndim
    if len(x_shape) != nd + 2:
        raise ValueError(
            f"{op}: input must have rank {nd + 2} (N, {nd} spatial, C_in), "
            f"got shape {tuple(x_shape)}"
        )
    if len(w_shape) != nd + 2:
        raise ValueError(
            f"{op}: weight must have rank {nd + 2} (C_out, {nd} kernel, C_in/groups), "
            f"got shape {tuple(w_shape)}"
        )
    n, *spatial, c_in = x_shape
    c_out, *kernel, c_in_g = w_shape
    if n < 0:
        raise ValueError(f"{op}: batch must be >= 0, got {n}")
    _at_least(op, "input spatial size", tuple(spatial), 1)
    _at_least(op, "kernel size", tuple(kernel), 1)
    if c_in < 1:
        raise ValueError(f"{op}: input channels must be >= 1, got {c_in}")
    if c_out < 1:
        raise ValueError(f"{op}: output channels must be >= 1, got {c_out}")
    if c_in % p.groups:
        raise ValueError(f"{op}: groups ({p.groups}) must divide input channels ({c_in})")
    if c_out % p.groups:
        raise ValueError(f"{op}: groups ({p.groups}) must divide output channels ({c_out})")
    if c_in_g != c_in // p.groups:
        raise ValueError(
            f"{op}: weight's last dimension must be C_in/groups = {c_in // p.groups}, got {c_in_g}"
        )
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},), got {tuple(bias_shape)}")
    if p.transposed:
        out = conv_transpose_output_shape(
            spatial, kernel, p.stride, p.padding, p.dilation, p.output_padding, op=op
        )
    else:
        out = general_output_shape(
            spatial,
            kernel,
            p.stride,
            p.padding,
            p.high_padding,
            p.dilation,
            p.input_dilations,
            op=op,
        )
    return (n, *out, c_out)


def _check_out(op: str, out: list[int]) -> tuple[int, ...]:
    for i, o in enumerate(out):
        if o < 1:
            where = f"output size[{i}]" if len(out) > 1 else "output size"
            raise ValueError(
                f"{op}: {where} must be >= 1, got {o} (kernel extent exceeds padded input)"
            )
    return tuple(out)


def conv_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    *,
    op: str = "conv",
) -> tuple[int, ...]:
    """Spatial output size of a forward convolution: floor((S + 2p - d(K-1) - 1) / s) + 1."""
    out = [
        (s_in + 2 * p - d * (k - 1) - 1) // s + 1 if s_in + 2 * p - d * (k - 1) - 1 >= 0 else 0
        for s_in, k, s, p, d in zip(spatial, kernel, stride, padding, dilation)
    ]
    return _check_out(op, out)


def general_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding_lo: Sequence[int],
    padding_hi: Sequence[int],
    dilation: Sequence[int],
    input_dilation: Sequence[int],
    *,
    op: str = "conv_general",
) -> tuple[int, ...]:
    """Spatial output size of the general forward convolution: the input dilated to
    ``(S-1)i + 1``, padded by ``lo`` and ``hi``, then ``floor((that - d(K-1) - 1) / s) + 1``."""
    out = []
    for s_in, k, s, lo, hi, d, i in zip(
        spatial, kernel, stride, padding_lo, padding_hi, dilation, input_dilation
    ):
        span = (s_in - 1) * i + 1 + lo + hi - d * (k - 1) - 1
        out.append(span // s + 1 if span >= 0 else 0)
    return _check_out(op, out)


def conv_transpose_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
    *,
    op: str = "conv_transpose",
) -> tuple[int, ...]:
    """Spatial output size of a transposed convolution: (S-1)s - 2p + d(K-1) + op + 1."""
    out = [
        (s_in - 1) * s - 2 * p + d * (k - 1) + o + 1
        for s_in, k, s, p, d, o in zip(spatial, kernel, stride, padding, dilation, output_padding)
    ]
    return _check_out(op, out)


#: How a forward op's padding can be given: explicit numbers, or the string modes of PyTorch
#: (``padding='same'/'valid'``), JAX (``'SAME'/'VALID'``) and ONNX (``auto_pad``).
PADDING_MODES: tuple[str, ...] = ("explicit", "same", "valid")


def mode_padding(
    mode: str,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (low, high) padding per axis that ``mode`` means for a forward convolution.

    ``valid`` is no padding. ``same`` pads each axis so that the output has ``ceil(S / s)``
    positions: ``total = max((ceil(S/s) - 1) s + d(K-1) + 1 - S, 0)``, ``total // 2`` low and the
    rest high (the odd one at the end: PyTorch's split, JAX's ``'SAME'``, ONNX's ``SAME_UPPER``;
    with stride 1 the total is ``d(K-1)``). Strides below 1 (an invalid case) get no padding: the
    stride rule rejects the case, not this one."""
    if mode not in PADDING_MODES or mode == "explicit":
        raise ValueError(f"padding mode must be 'same' or 'valid', got {mode!r}")
    nd = len(spatial)
    if mode == "valid":
        return (0,) * nd, (0,) * nd
    lo, hi = [], []
    for size, k, s, d in zip(spatial, kernel, stride, dilation):
        total = max(-(-size // s) - 1, 0) * s + d * (k - 1) + 1 - size if s >= 1 else 0
        total = max(total, 0)
        lo.append(total // 2)
        hi.append(total - total // 2)
    return tuple(lo), tuple(hi)
