"""Float64 vector-Jacobian products (VJPs) of the six ops, in MLX layout, built on the cores.

Given the upstream cotangent ``dy`` (the output's shape), each op ``y = op(x, w) + b`` has

* ``grad_input = dL/dx``: the adjoint of ``x -> op(x, w)`` applied to ``dy``;
* ``grad_weight = dL/dw``: the adjoint of ``w -> op(x, w)`` applied to ``dy``;
* ``grad_bias = dL/db``: ``dy`` summed over batch and positions.

Derivation, with ``j = i*s - p + k*d`` linking input position ``i``, tap ``k`` and output
position ``j`` (per axis), ``g`` the group of both ``co`` and ``ci``:

* conv: ``y[n, j, co] = sum_{i, k, ci} x[n, i, ci] w[co, k, ci_local]`` with ``i = j*s - p + k*d``.
  ``grad_input[n, i, ci] = sum_{j, k, co} dy[n, j, co] w[co, k, ci_local]``: a *scatter* of ``dy``
  (every output position ``j`` adds ``dy . w[:, k, :]`` at ``j*s - p + k*d``), i.e. the transposed
  convolution of ``dy`` with the regrouped weight ``w'[ci, k, co_local] = w[co, k, ci_local]``,
  padding ``p`` on both sides and output padding ``(S + 2p - d(K-1) - 1) mod s`` (the input
  positions that the last window's stride step skipped, which get no gradient beyond it).
  With a separate high padding ``ph`` (``padding='same'`` with an even kernel extent), the
  transposed convolution pads ``p`` low and ``ph`` high, and the skipped positions are
  ``(S + p + ph - d(K-1) - 1) mod s``.
  ``grad_weight[co, k, ci_local] = sum_{n, j} x[n, j*s - p + k*d, ci] dy[n, j, co]``: per tap,
  one strided window of the padded input correlated with ``dy`` over batch and positions.
* conv_transpose: ``y[n, i*s - p + k*d, co] += x[n, i, ci] w[co, k, ci_local]`` (scatter).
  ``grad_input[n, i, ci] = sum_{k, co} dy[n, i*s - p + k*d, co] w[co, k, ci_local]``: a *gather*,
  i.e. the convolution of ``dy`` with ``w'``, stride ``s``, dilation ``d``, padding ``p`` low and
  ``p - output_padding`` high (negative crops: the output-padding positions beyond the scatter's
  reach feed nothing).
  ``grad_weight[co, k, ci_local] = sum_{n, i} dy[n, i*s - p + k*d, co] x[n, i, ci]``: per tap, one
  strided window of the padded (or cropped) ``dy`` correlated with ``x``.

``grad_input`` reuses :func:`reference.core.conv_transpose_general` (conv) and
:func:`reference.core.conv_general` (conv_transpose), so their ``with_bound`` terms apply as they
are: ``abs_sum`` is the same VJP of ``|dy|`` and ``|w|``; ``terms`` counts taps times
``C_out / groups``. ``grad_weight`` is one grouped ``(C_out_g, M) @ (M, C_in_g)`` product per
kernel tap (``M = N * positions``); its ``terms`` are ``N`` times the number of positions whose
window tap lands inside the input. ``grad_bias`` sums ``N * prod(out)`` values. A backend
accumulates over all those products, so the diff engine's bound grows with them.

Every function validates its arguments like :func:`reference.ops.run_op` and also checks that
``dy`` has the op's output shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from reference.core import (
    ConvResult,
    _pad_or_crop,
    conv_general,
    conv_transpose_general,
)
from reference.ops import as_real_array
from reference.params import OPS, ConvParams, IntOrSeq, check_params, check_shapes


@dataclass(frozen=True)
class Gradients:
    """All three VJPs; ``ConvResult`` each (``abs_sum``/``terms`` set when asked for)."""

    input: ConvResult
    weight: ConvResult
    bias: ConvResult | None = None


def _params(
    op: str,
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    dy_shape: Sequence[int],
    *,
    stride: IntOrSeq,
    padding: IntOrSeq,
    dilation: IntOrSeq,
    output_padding: IntOrSeq,
    groups: int,
    padding_hi: IntOrSeq | None,
) -> ConvParams:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    ndim, transposed = OPS[op]
    p = check_params(
        op,
        ndim,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        transposed=transposed,
        padding_hi=padding_hi,
    )
    out_shape = check_shapes(p, tuple(x_shape), tuple(w_shape))
    if tuple(dy_shape) != out_shape:
        raise ValueError(
            f"{op}: cotangent dy must have the output shape {out_shape}, got {tuple(dy_shape)}"
        )
    return p


def regroup_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """``(C_out, *K, C_in/g)`` -> ``(C_in, *K, C_out/g)``: ``w'[g*Cin_g + ci, k, co] =
    w[g*Cout_g + co, k, ci]``, the weight of the adjoint op (roles of the channels swapped)."""
    c_out, *kernel, c_in_g = w.shape
    wg = w.reshape(groups, c_out // groups, *kernel, c_in_g)
    wg = np.swapaxes(wg, 1, -1)  # (G, Cin_g, *K, Cout_g)
    return np.ascontiguousarray(wg.reshape(groups * c_in_g, *kernel, c_out // groups))


def _f64(op: str, name: str, value: object) -> np.ndarray:
    return as_real_array(op, name, value).astype(np.float64)


def grad_input(
    op: str,
    x_shape: Sequence[int],
    w: object,
    dy: object,
    *,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    with_bound: bool = False,
    padding_hi: IntOrSeq | None = None,
) -> np.ndarray | ConvResult:
    """``dL/dx`` of ``op`` for cotangent ``dy``; shape ``x_shape`` (MLX layout)."""
    wa, dya = _f64(op, "weight", w), _f64(op, "dy", dy)
    p = _params(
        op,
        x_shape,
        wa.shape,
        dya.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        padding_hi=padding_hi,
    )
    wt = regroup_weight(wa, p.groups)
    if p.transposed:
        res = conv_general(
            dya,
            wt,
            stride=p.stride,
            padding_lo=p.padding,
            padding_hi=tuple(pad - o for pad, o in zip(p.padding, p.output_padding)),
            kernel_dilation=p.dilation,
            groups=p.groups,
            with_bound=with_bound,
        )
    else:
        kernel = wa.shape[1:-1]
        spatial = tuple(x_shape[1:-1])
        # Input positions past the last window (skipped by the stride) get no gradient.
        rest = tuple(
            (size + lo + hi - d * (k - 1) - 1) % s
            for size, lo, hi, d, k, s in zip(
                spatial, p.padding, p.high_padding, p.dilation, kernel, p.stride
            )
        )
        res = conv_transpose_general(
            dya,
            wt,
            stride=p.stride,
            padding_lo=p.padding,
            padding_hi=p.high_padding,
            dilation=p.dilation,
            output_padding=rest,
            groups=p.groups,
            with_bound=with_bound,
        )
    assert res.out.shape == tuple(x_shape), (res.out.shape, x_shape)
    return res if with_bound else res.out


def _grouped_outer(a: np.ndarray, b: np.ndarray, groups: int) -> np.ndarray:
    """``a``: (M, C_out), ``b``: (M, C_in) -> (C_out, C_in/groups): ``a_g^T @ b_g`` per group."""
    m, c_out = a.shape
    c_in = b.shape[1]
    if groups == 1:
        return a.T @ b
    ag = a.reshape(m, groups, c_out // groups).transpose(1, 2, 0)  # (G, Cout_g, M)
    bg = b.reshape(m, groups, c_in // groups).transpose(1, 0, 2)  # (G, M, Cin_g)
    return (ag @ bg).reshape(c_out, c_in // groups)


def _weight_vjp(x: np.ndarray, dy: np.ndarray, kernel: Sequence[int], p: ConvParams) -> np.ndarray:
    """One grouped product per tap. The windowed operand is the padded input (conv) or the
    padded/cropped cotangent (conv_transpose); the other one is taken whole."""
    n = x.shape[0]
    if p.transposed:
        hi = tuple(pad - o for pad, o in zip(p.padding, p.output_padding))
        windowed, whole = _pad_or_crop(dy, p.padding, hi), x
    else:
        windowed, whole = _pad_or_crop(x, p.padding, p.high_padding), dy
    steps = whole.shape[1:-1]  # positions the window takes, per axis
    m = n * int(np.prod(steps))
    whole2 = whole.reshape(m, whole.shape[-1])
    c_out = dy.shape[-1]
    c_in_g = x.shape[-1] // p.groups
    out = np.zeros((c_out, *kernel, c_in_g))
    for tap in itertools.product(*(range(k) for k in kernel)):
        src = tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, p.dilation, p.stride, steps)
        )
        window = windowed[(slice(None), *src, slice(None))].reshape(m, windowed.shape[-1])
        if p.transposed:  # window: dy (M, C_out); whole: x (M, C_in)
            out[(slice(None), *tap, slice(None))] = _grouped_outer(window, whole2, p.groups)
        else:  # window: x (M, C_in); whole: dy (M, C_out)
            out[(slice(None), *tap, slice(None))] = _grouped_outer(whole2, window, p.groups)
    return out


def grad_weight(
    op: str,
    x: object,
    w_shape: Sequence[int],
    dy: object,
    *,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    with_bound: bool = False,
    padding_hi: IntOrSeq | None = None,
) -> np.ndarray | ConvResult:
    """``dL/dw`` of ``op`` for cotangent ``dy``; shape ``w_shape`` (MLX layout)."""
    xa, dya = _f64(op, "input", x), _f64(op, "dy", dy)
    p = _params(
        op,
        xa.shape,
        w_shape,
        dya.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        padding_hi=padding_hi,
    )
    kernel = tuple(w_shape[1:-1])
    out = _weight_vjp(xa, dya, kernel, p)
    if not with_bound:
        return out
    abs_sum = _weight_vjp(np.abs(xa), np.abs(dya), kernel, p)
    # Terms: for each tap, the (batch, position) pairs whose window element is inside the
    # unpadded operand; channel counts do not enter (each product pairs one ci with one co).
    ones_x = np.ones((1, *xa.shape[1:-1], 1))
    ones_dy = np.ones((1, *dya.shape[1:-1], 1))
    per_tap = np.rint(_weight_vjp(ones_x, ones_dy, kernel, replace(p, groups=1))).astype(np.int64)
    terms = np.broadcast_to(per_tap * xa.shape[0], out.shape)
    return ConvResult(out, abs_sum, np.ascontiguousarray(terms))


def grad_bias(dy: object, *, with_bound: bool = False) -> np.ndarray | ConvResult:
    """``dL/db``: ``dy`` summed over batch and positions; shape ``(C_out,)``."""
    dya = _f64("grad_bias", "dy", dy)
    if dya.ndim < 3:
        raise ValueError(f"dy must have rank >= 3 (N, *spatial, C_out), got shape {dya.shape}")
    axes = tuple(range(dya.ndim - 1))
    out = dya.sum(axis=axes)
    if not with_bound:
        return out
    terms = np.full(out.shape, int(np.prod(dya.shape[:-1])), np.int64)
    return ConvResult(out, np.abs(dya).sum(axis=axes), terms)


def vjp(
    op: str,
    x: object,
    w: object,
    dy: object,
    *,
    bias: bool = False,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    with_bound: bool = False,
    padding_hi: IntOrSeq | None = None,
) -> Gradients:
    """All VJPs of ``op(x, w) [+ b]`` at cotangent ``dy`` (``bias``: include ``grad_bias``)."""
    kw = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "output_padding": output_padding,
        "groups": groups,
        "with_bound": with_bound,
        "padding_hi": padding_hi,
    }
    xa, wa = np.asarray(x), np.asarray(w)
    gi = grad_input(op, xa.shape, wa, dy, **kw)  # type: ignore[arg-type]
    gw = grad_weight(op, xa, wa.shape, dy, **kw)  # type: ignore[arg-type]
    gb = grad_bias(dy, with_bound=with_bound) if bias else None

    def wrap(r):
        return r if r is None or isinstance(r, ConvResult) else ConvResult(r)

    return Gradients(wrap(gi), wrap(gw), wrap(gb))
