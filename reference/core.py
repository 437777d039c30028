"""The two computational cores of the reference, over any number of spatial dimensions.

* :func:`conv_general` gathers: for each kernel tap it takes one strided view of the padded
  (and optionally input-dilated) input and adds one grouped matrix product to the output.
* :func:`conv_transpose_general` scatters: for each kernel tap it computes one grouped matrix
  product of the input and adds it into a strided view of the output. It never builds a
  zero-stuffed input.

They are written independently on purpose: the reference's own tests check that a transposed
convolution from the scatter core equals the gather core with input dilation and a flipped
kernel, which is how MLX defines ``conv_transpose``.

Both compute in float64 from the inputs as given. Layout is MLX's (see :mod:`reference`).
With ``with_bound=True`` they also return, per output element, the sum of ``|x| * |w|`` over the
terms that feed it and the number of those terms: the inputs of the diff engine's error bound.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvResult:
    """Output of a reference op; ``abs_sum`` and ``terms`` are ``None`` unless requested."""

    out: np.ndarray
    abs_sum: np.ndarray | None = None
    terms: np.ndarray | None = None


def _grouped_tap_product(x2: np.ndarray, w_tap: np.ndarray, groups: int) -> np.ndarray:
    """``x2``: (M, C_in); ``w_tap``: (C_out, C_in/groups) -> (M, C_out), channels grouped."""
    m, c_in = x2.shape
    c_out = w_tap.shape[0]
    if groups == 1:
        return x2 @ w_tap.T
    xg = x2.reshape(m, groups, c_in // groups).transpose(1, 0, 2)  # (G, M, Cin_g)
    wg = w_tap.reshape(groups, c_out // groups, c_in // groups)  # (G, Cout_g, Cin_g)
    yg = xg @ wg.transpose(0, 2, 1)  # (G, M, Cout_g)
    return yg.transpose(1, 0, 2).reshape(m, c_out)


def _with_bound(
    compute: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    x: np.ndarray,
    w: np.ndarray,
    groups: int,
    with_bound: bool,
) -> ConvResult:
    out = compute(x, w, groups)
    if not with_bound:
        return ConvResult(out)
    abs_sum = compute(np.abs(x), np.abs(w), groups)
    # The number of terms does not depend on batch or channel: count taps on one channel, then
    # multiply by the channels each output element reduces over.
    ones_x = np.ones((1, *x.shape[1:-1], 1))
    ones_w = np.ones((1, *w.shape[1:-1], 1))
    per_position = np.rint(compute(ones_x, ones_w, 1)).astype(np.int64)
    terms = np.broadcast_to(per_position * (x.shape[-1] // groups), out.shape)
    return ConvResult(out, abs_sum, np.ascontiguousarray(terms))


def _pad_or_crop(x: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """Pad spatial axes with zeros (positive) or crop them (negative), per side."""
    x = np.pad(x, [(0, 0)] + [(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)] + [(0, 0)])
    crop = tuple(
        slice(max(-a, 0), x.shape[1 + i] - max(-b, 0)) for i, (a, b) in enumerate(zip(lo, hi))
    )
    return x[(slice(None), *crop, slice(None))]


def _dilate_input(x: np.ndarray, input_dilation: Sequence[int]) -> np.ndarray:
    if all(d == 1 for d in input_dilation):
        return x
    n, *spatial, c = x.shape
    size = [(s - 1) * d + 1 for s, d in zip(spatial, input_dilation)]
    out = np.zeros((n, *size, c), dtype=x.dtype)
    out[(slice(None), *(slice(None, None, d) for d in input_dilation), slice(None))] = x
    return out


def conv_general(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Sequence[int],
    padding_lo: Sequence[int],
    padding_hi: Sequence[int],
    kernel_dilation: Sequence[int],
    input_dilation: Sequence[int] | None = None,
    groups: int = 1,
    flip: bool = False,
    with_bound: bool = False,
) -> ConvResult:
    """General gather convolution (cross-correlation unless ``flip``), no parameter checks.

    Callers (:mod:`reference.ops`) validate; this function trusts its arguments. Input dilation
    inserts ``input_dilation - 1`` zeros between input elements (memory: the dilated input).
    Negative padding crops.
    """
    input_dilation = tuple(input_dilation or (1,) * (x.ndim - 2))

    def compute(xv: np.ndarray, wv: np.ndarray, groups: int) -> np.ndarray:
        xv = np.asarray(xv, np.float64)
        xv = _pad_or_crop(_dilate_input(xv, input_dilation), padding_lo, padding_hi)
        wv = np.asarray(wv, np.float64)
        n, *padded, c_in = xv.shape
        c_out, *kernel, _ = wv.shape
        out_sp = [
            (p - d * (k - 1) - 1) // s + 1
            for p, k, s, d in zip(padded, kernel, stride, kernel_dilation)
        ]
        m = n * int(np.prod(out_sp))
        acc = np.zeros((m, c_out))
        for tap in itertools.product(*(range(k) for k in kernel)):
            src = tuple(
                slice(t * d, t * d + s * (o - 1) + 1, s)
                for t, d, s, o in zip(tap, kernel_dilation, stride, out_sp)
            )
            wtap = tuple(k - 1 - t for k, t in zip(kernel, tap)) if flip else tap
            window = xv[(slice(None), *src, slice(None))].reshape(m, c_in)
            acc += _grouped_tap_product(window, wv[(slice(None), *wtap, slice(None))], groups)
        return acc.reshape(n, *out_sp, c_out)

    return _with_bound(compute, x, w, groups, with_bound)


def conv_transpose_general(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Sequence[int],
    padding_lo: Sequence[int],
    padding_hi: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
    groups: int = 1,
    with_bound: bool = False,
) -> ConvResult:
    """Scatter form of the transposed convolution, no parameter checks.

    ``out[i*s - p_lo + k*d] += x[i] . w[:, k, :]`` for every input position ``i`` and tap ``k``;
    the output spans ``(S-1)s + d(K-1) + 1 - p_lo - p_hi + output_padding`` positions, the
    output padding extending the high end. Weight ``(C_out, *K, C_in/groups)``, not flipped.
    """

    def compute(xv: np.ndarray, wv: np.ndarray, groups: int) -> np.ndarray:
        xv = np.asarray(xv, np.float64)
        wv = np.asarray(wv, np.float64)
        n, *spatial, c_in = xv.shape
        c_out, *kernel, _ = wv.shape
        full = [
            (s_in - 1) * s + d * (k - 1) + 1
            for s_in, s, d, k in zip(spatial, stride, dilation, kernel)
        ]
        out_sp = [
            f - lo - hi + op for f, lo, hi, op in zip(full, padding_lo, padding_hi, output_padding)
        ]
        # Buffer covers both the full scatter range and the requested window (which may reach past
        # it at the high end by output_padding).
        buf_sp = [max(f, lo + o) for f, lo, o in zip(full, padding_lo, out_sp)]
        buf = np.zeros((n, *buf_sp, c_out))
        m = n * int(np.prod(spatial))
        x2 = xv.reshape(m, c_in)
        for tap in itertools.product(*(range(k) for k in kernel)):
            contribution = _grouped_tap_product(x2, wv[(slice(None), *tap, slice(None))], groups)
            dst = tuple(
                slice(t * d, t * d + s * (i - 1) + 1, s)
                for t, d, s, i in zip(tap, dilation, stride, spatial)
            )
            buf[(slice(None), *dst, slice(None))] += contribution.reshape(n, *spatial, c_out)
        window = tuple(slice(lo, lo + o) for lo, o in zip(padding_lo, out_sp))
        return np.ascontiguousarray(buf[(slice(None), *window, slice(None))])

    return _with_bound(compute, x, w, groups, with_bound)
