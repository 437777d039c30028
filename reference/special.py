"""IEEE semantics of non-finite inputs: which output elements are NaN, +inf or -inf.

A convolution output element is the sum of its terms, the products ``x[i] * w[k]`` of real input
elements with kernel taps (plus the bias). Under IEEE arithmetic, in any summation order:

* a term is NaN if a factor is NaN, or one factor is infinite and the other is zero
  (``inf * 0``); it is ``+-inf`` if a factor is infinite and the other nonzero, with the sign of
  the product;
* the element is NaN if a term (or the bias) is NaN, or it has both a ``+inf`` and a ``-inf``
  term (``inf - inf``); otherwise ``+-inf`` if it has an infinite term of that sign; otherwise
  finite, the sum of its finite terms (which float64 computes as the reference always does).

Padding and the zeros between a transposed convolution's input elements (stride > 1) or of its
output padding are no input elements: the definition above has no terms for them, and a kernel
that skips them (scatter, gather with index checks, as :mod:`reference.core` does) follows it.
A kernel that multiplies them instead (zero-padding the input, zero-stuffing it for a transposed
convolution, as MLX defines conv_transpose) adds ``0 * w`` terms, which are NaN where ``w`` is
NaN or infinite. Both are conforming; :func:`with_special_values` marks the elements where they
differ (``ConvResult.nan_allowed``): there NaN is accepted as well as the value above.

The counts are the op itself applied to 0/1 indicator arrays (in float64, exact: counts are far
below 2^53), so they hold for every op, parameter and layout the cores support.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from reference.core import ConvResult

#: ``conv(x, w) -> float64 output`` of one op with its parameters, no bias.
Conv = Callable[[np.ndarray, np.ndarray], np.ndarray]


#: The smallest normal float32: arithmetic with denormals-are-zero reads anything below it as
#: zero (float16 and bfloat16 inputs are converted to float32 first, so this is their threshold).
FLOAT32_TINY = 2.0**-126


def flush_subnormals(a: np.ndarray | None) -> np.ndarray | None:
    """``a`` as denormals-are-zero arithmetic reads it: magnitudes below float32's normal range
    become zeros of their sign. Not the reference's semantics (IEEE keeps subnormals); the
    known failures use it to name kernels that flush."""
    if a is None or a.dtype.kind != "f":
        return a
    return np.where(np.abs(a) < FLOAT32_TINY, np.copysign(0.0, a), a).astype(a.dtype)


def has_special_values(*arrays: np.ndarray | None) -> bool:
    """Whether any of the arrays holds a NaN or an infinity."""
    return any(
        a is not None and a.dtype.kind == "f" and not bool(np.isfinite(a).all()) for a in arrays
    )


def finite_part(a: np.ndarray | None) -> np.ndarray | None:
    """``a`` with its NaNs and infinities set to 0 (the finite terms' inputs)."""
    if a is None or a.dtype.kind != "f":
        return a
    return np.where(np.isfinite(a), a, np.zeros((), a.dtype))


class _Signs:
    """0/1 float64 indicators of one array's values, by class."""

    def __init__(self, a: np.ndarray) -> None:
        v = np.asarray(a, np.float64)
        self.nan = np.isnan(v).astype(np.float64)
        self.pos_inf = (v == np.inf).astype(np.float64)
        self.neg_inf = (v == -np.inf).astype(np.float64)
        self.inf = self.pos_inf + self.neg_inf
        self.zero = (v == 0).astype(np.float64)
        finite = np.isfinite(v)
        self.pos_finite = (finite & (v > 0)).astype(np.float64)
        self.neg_finite = (finite & (v < 0)).astype(np.float64)
        self.pos = self.pos_finite + self.pos_inf
        self.neg = self.neg_finite + self.neg_inf
        self.not_nan = 1.0 - self.nan


def special_term_counts(
    conv: Conv, x: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output element, how many of its terms are NaN, ``+inf`` and ``-inf``."""
    sx, sw = _Signs(x), _Signs(w)
    ones_w = np.ones(w.shape)
    nan = (
        conv(sx.nan, ones_w)
        + conv(sx.not_nan, sw.nan)
        + conv(sx.inf, sw.zero)
        + conv(sx.zero, sw.inf)
    )
    pos_inf = (
        conv(sx.pos_inf, sw.pos)
        + conv(sx.neg_inf, sw.neg)
        + conv(sx.pos_finite, sw.pos_inf)
        + conv(sx.neg_finite, sw.neg_inf)
    )
    neg_inf = (
        conv(sx.pos_inf, sw.neg)
        + conv(sx.neg_inf, sw.pos)
        + conv(sx.pos_finite, sw.neg_inf)
        + conv(sx.neg_finite, sw.pos_inf)
    )
    return nan, pos_inf, neg_inf


def implicit_zero_nan(conv: Conv, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Where multiplying padding or inserted zeros with the kernel gives a NaN term: output
    elements whose window (every tap of every input channel of its group) meets a non-finite
    weight at a position that is no input element."""
    bad_w = (~np.isfinite(np.asarray(w, np.float64))).astype(np.float64)
    # Every window covers each tap once, on an input element or not: per output channel, all
    # of its non-finite weights; those on input elements are the op on an all-ones input.
    per_channel = bad_w.reshape(bad_w.shape[0], -1).sum(axis=1)
    on_elements = conv(np.ones(x.shape), bad_w)
    return on_elements < per_channel


def with_special_values(
    conv: Conv,
    result: ConvResult,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
) -> ConvResult:
    """``result``, computed on the finite parts of the inputs (:func:`finite_part`), with the
    IEEE values of the module docstring put in where inputs are NaN or infinite, and
    ``nan_allowed`` where a kernel that multiplies padding gets NaN instead."""
    nan, pos_inf, neg_inf = special_term_counts(conv, x, w)
    if bias is not None and np.asarray(bias).dtype.kind == "f":
        b = np.asarray(bias, np.float64)
        nan = nan + np.isnan(b)
        pos_inf = pos_inf + (b == np.inf)
        neg_inf = neg_inf + (b == -np.inf)
    is_nan = (nan > 0) | ((pos_inf > 0) & (neg_inf > 0))
    out = np.where(pos_inf > 0, np.inf, result.out)
    out = np.where(neg_inf > 0, -np.inf, out)
    out = np.where(is_nan, np.nan, out)
    return replace(result, out=out, nan_allowed=implicit_zero_nan(conv, x, w) & ~is_nan)
