"""The reference's IEEE semantics for NaN and infinite inputs (:mod:`reference.special`), proven
against the literal definitions: element-by-element sums in Python floats, which follow IEEE
(``inf * 0`` is NaN, ``inf - inf`` is NaN), over real input elements only (padding skipped); and
``nan_allowed`` against the same definitions run on explicitly zero-padded (and, for transposed
ops, zero-stuffed) inputs, where padding is multiplied."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.case import OPS
from reference.ops import run_op
from reference.special import flush_subnormals, has_special_values
from tests.test_reference import (
    ALL_OPS,
    inputs_for,
    literal_conv,
    literal_conv_transpose,
    prop,
    tiny_params,
)

SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0])


def with_specials(a: np.ndarray | None, rng: np.random.Generator, rate: float) -> np.ndarray | None:
    """``a`` with about ``rate`` of its elements replaced by NaN, +-inf or a zero of either sign."""
    if a is None:
        return None
    hit = rng.random(a.shape) < rate
    return np.where(hit, rng.choice(SPECIALS, a.shape), a)


def literal(op: str, x, w, b, p: dict) -> np.ndarray:
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    with np.errstate(invalid="ignore"):
        if OPS[op][1]:
            return literal_conv_transpose(x, w, b, output_padding=p["output_padding"], **kw)[0]
        return literal_conv(x, w, b, **kw)[0]


def multiplying_padding(op: str, x, w, b, p: dict) -> np.ndarray:
    """The op as a kernel that multiplies padding computes it: a stride-1 (forward: strided)
    correlation over the explicitly zero-padded input; a transposed op first zero-stuffs the
    input (``stride - 1`` zeros between elements) and flips the kernel, as MLX defines it."""
    nd = len(p["size"])
    kernel, dil = p["kernel"], p["dilation"]
    if OPS[op][1]:
        n, *size, c = x.shape
        stuffed = np.zeros((n, *((s - 1) * st + 1 for s, st in zip(size, p["stride"])), c))
        stuffed[(slice(None), *(slice(None, None, st) for st in p["stride"]), slice(None))] = x
        lo = [d * (k - 1) - q for d, k, q in zip(dil, kernel, p["padding"])]
        hi = [e + o for e, o in zip(lo, p["output_padding"])]
        x = _pad_or_crop(stuffed, lo, hi)
        w = w[(slice(None), *(slice(None, None, -1),) * nd, slice(None))]
        stride = (1,) * nd
    else:
        x = _pad_or_crop(x, p["padding"], p["padding"])
        stride = p["stride"]
    kw = dict(stride=stride, padding=(0,) * nd, dilation=dil, groups=p["groups"])
    with np.errstate(invalid="ignore"):
        return literal_conv(x, w, b, **kw)[0]


def _pad_or_crop(x: np.ndarray, lo, hi) -> np.ndarray:
    pad = [(0, 0)] + [(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)] + [(0, 0)]
    x = np.pad(x, pad)
    crop = tuple(
        slice(max(-a, 0), x.shape[i + 1] - max(-b, 0)) for i, (a, b) in enumerate(zip(lo, hi))
    )
    return x[(slice(None), *crop, slice(None))]


@pytest.mark.parametrize("op", ALL_OPS)
@prop(40)
@given(data=st.data())
def test_special_values_match_literal_definition(op, data):
    p = data.draw(tiny_params(op))
    x, w, b = inputs_for(p)
    rng = np.random.default_rng(p["seed"])
    rate = data.draw(st.sampled_from([0.05, 0.2]))
    x, w, b = (with_specials(a, rng, rate) for a in (x, w, b))
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    if OPS[op][1]:
        kw["output_padding"] = p["output_padding"]
    res = run_op(op, len(p["size"]), OPS[op][1], x, w, b, with_bound=True, **kw)
    want = literal(op, x, w, b, p)
    np.testing.assert_array_equal(res.out, want)  # NaN where NaN, infinities with their sign
    if has_special_values(x, w, b):
        padded = multiplying_padding(op, x, w, b, p)
        # Multiplying padding adds NaN (0 * inf, 0 * NaN) and nothing else.
        np.testing.assert_array_equal(res.out[~np.isnan(padded)], padded[~np.isnan(padded)])
        np.testing.assert_array_equal(res.nan_allowed, np.isnan(padded) & ~np.isnan(want))
        assert np.all(np.isfinite(res.abs_sum)), "the bound is that of the finite terms"
    else:
        assert res.nan_allowed is None


def test_hand_example():
    """conv1d, padding 1, one input channel: x = [1, inf, -1], w = [2, 0, -inf]."""
    x = np.array([1.0, np.inf, -1.0]).reshape(1, 3, 1)
    w = np.array([2.0, 0.0, -np.inf]).reshape(1, 3, 1)
    res = run_op("conv1d", 1, False, x, w, None, padding=1, with_bound=True)
    # out[0] = pad*2 + 1*0 + inf*-inf = -inf; out[1] = 1*2 + inf*0 + -1*-inf = NaN (inf * 0);
    # out[2] = inf*2 + -1*0 + pad*-inf = inf (a padding multiplier gets NaN).
    np.testing.assert_array_equal(res.out[0, :, 0], [-np.inf, np.nan, np.inf])
    np.testing.assert_array_equal(res.nan_allowed[0, :, 0], [False, False, True])
    np.testing.assert_array_equal(res.abs_sum[0, :, 0], [0.0, 2.0, 0.0])


def test_flush_subnormals_keeps_signs_and_specials():
    tiny = np.float32(2.0**-130)
    a = np.array([tiny, -tiny, 1.0, np.nan, -np.inf, 2.0**-126], np.float32)
    got = flush_subnormals(a)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [0.0, -0.0, 1.0, np.nan, -np.inf, 2.0**-126])
    assert list(np.signbit(got[:2])) == [False, True]
