"""The error bound's sums (``ConvResult.abs_sum``) are computed in float32 and raised by their
worst-case rounding (reference/core.py, ``_abs_sums``): never below ``sum |x||w|``, above it by
at most a relative ``(2 (terms + 1) + 6) 2^-24``; in float64 where float32 would overflow, the
inputs are not finite or not exact in float32. Small ops keep float64 sums
(``core.F32_SUMS_MIN_MACS``, ``core.F32_SUMS_MIN_OUTPUTS``); these tests force the float32
path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import core
from reference.ops import run_op
from tests.test_reference import (
    OPS,
    inputs_for,
    literal_conv,
    literal_conv_transpose,
    prop,
    tiny_params,
)


def _run(op: str, p: dict, x, w, b):
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    ndim, transposed = OPS[op]
    # The literal definition on float64 copies: its sums in float64 are the exact ones here.
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    if transposed:
        kw["output_padding"] = p["output_padding"]
        want = literal_conv_transpose(x64, w64, b64, **kw)
    else:
        want = literal_conv(x64, w64, b64, **kw)
    got = run_op(op, ndim, transposed, x, w, b, with_bound=True, **kw)
    return got, want


@pytest.fixture
def always_float32_sums(monkeypatch):
    """The float32 path for every op, however small (by default small ops stay in float64)."""
    monkeypatch.setattr(core, "F32_SUMS_MIN_MACS", 0)


@pytest.mark.usefixtures("always_float32_sums")
@pytest.mark.parametrize("op", list(OPS))
@prop(40)
@given(data=st.data(), scale=st.sampled_from([1.0, 1e-3, 1e3]))
def test_float32_sums_bound_the_exact_ones(op, data, scale):
    """Real-valued inputs (not the integers of the literal-definition tests, whose float32 sums
    are exact): the sums bracket the float64 literal ones."""
    p = data.draw(tiny_params(op))
    rng = np.random.default_rng(p["seed"])
    x, w, b = inputs_for(p)
    x = rng.uniform(-scale, scale, x.shape).astype(np.float32)
    w = rng.uniform(-1, 1, w.shape).astype(np.float32)
    b = None if b is None else rng.uniform(-1, 1, b.shape).astype(np.float32)
    got, want = _run(op, p, x, w, b)
    exact, terms = want[1], want[2]
    assert np.all(got.abs_sum >= exact * (1 - 1e-12)), np.min(got.abs_sum - exact)
    slack = exact * (2.0 * (terms + 1) + 6) * 2.0**-24 * 1.01 + (terms + 1) * 2.0**-147
    assert np.all(got.abs_sum - exact <= slack)


@pytest.mark.usefixtures("always_float32_sums")
def test_overflowing_float32_sums_fall_back_to_float64():
    """bfloat16 reaches float32's range: products of 1e30 would overflow float32 (inf would
    make every error pass); the sums are then float64 and exact."""
    x = np.full((1, 4, 2), 1e30, np.float32)
    w = np.full((3, 2, 2), 1e30, np.float32)
    got = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    assert got.abs_sum.dtype == np.float64
    want = 4 * float(np.float32(1e30)) ** 2
    np.testing.assert_allclose(got.abs_sum, np.full((1, 3, 3), want), rtol=1e-14)


@pytest.mark.usefixtures("always_float32_sums")
def test_underflowing_products_still_bounded():
    """Products below float32's subnormals round to 0 there; the allowance covers them."""
    x = np.full((1, 4, 2), 1e-30, np.float32)
    w = np.full((3, 2, 2), 1e-30, np.float32)
    got = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    assert got.abs_sum.dtype == np.float32
    assert np.all(got.abs_sum >= 4 * float(np.float32(1e-30)) ** 2)
    assert np.all(got.abs_sum < 1e-40)


@pytest.mark.usefixtures("always_float32_sums")
def test_subnormal_sums_are_raised_past_their_rounding():
    """Sums in float32's subnormal range, where rounding is absolute, not relative."""
    x = np.full((1, 4, 2), 2.0**-70, np.float32)
    w = np.full((3, 2, 2), 3 * 2.0**-70, np.float32)  # products 3 * 2^-140: subnormal in float32
    got = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    assert got.abs_sum.dtype == np.float32
    assert np.all(got.abs_sum.astype(np.float64) >= 4 * 3 * 2.0**-140)


@pytest.mark.usefixtures("always_float32_sums")
def test_float64_inputs_keep_float64_sums():
    """float32 sums need operands that are exact in float32; float64 ones (the gradients'
    cotangents) would be rounded once more, so their sums stay float64 and exact."""
    x = np.full((1, 4, 2), 1 + 2.0**-40)
    w = np.ones((3, 2, 2))
    got = run_op("conv1d", 1, False, x, w, np.ones(3, np.float32), with_bound=True)
    assert got.abs_sum.dtype == np.float64
    np.testing.assert_array_equal(got.abs_sum, np.full((1, 3, 3), 4 * (1 + 2.0**-40) + 1))


@pytest.mark.usefixtures("always_float32_sums")
def test_non_finite_inputs_bound_their_finite_terms():
    """A NaN input makes its outputs NaN (reference.special); the bound's sums are those of the
    finite terms, the NaN counted as 0, never above the exact sums by more than their rounding."""
    x = np.ones((1, 4, 2), np.float32)
    x[0, 1, 0] = np.nan
    w = np.ones((3, 2, 2), np.float32)
    got = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    np.testing.assert_array_equal(np.isnan(got.out[0, :, 0]), [True, True, False])
    exact = np.array([3.0, 3.0, 4.0])
    assert np.all(got.abs_sum[0, :, 0] >= exact)
    assert np.all(got.abs_sum[0, :, 0] <= exact * (1 + 20 * 2.0**-24))


def test_integer_inputs_take_magnitudes_in_float64():
    """abs of int8's -128 is -128 in int8; the sums see 128."""
    x = np.full((1, 1, 1), -128, np.int8)
    w = np.full((1, 1, 1), -128, np.int8)
    got = run_op("conv1d", 1, False, x, w, np.full(1, -128, np.int8), with_bound=True)
    assert float(got.abs_sum[0, 0, 0]) == 128 * 128 + 128
    assert float(got.out[0, 0, 0]) == 128 * 128 - 128
