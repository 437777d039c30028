"""Rounding to the case dtypes and ULP distance, against an exact integer-arithmetic rounding and
an enumeration of every float16/bfloat16 value."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.dtypes import DTYPES, UNIT_ROUNDOFF, check_dtype, round_to, ulp_distance

#: dtype -> (precision p including the implicit bit, minimum normal exponent, maximum exponent)
FORMATS = {"float32": (24, -126, 127), "float16": (11, -14, 15), "bfloat16": (8, -126, 127)}


def exact_round(v: float, dtype: str) -> float:
    """``v`` rounded to nearest (ties to even) in ``dtype``, by exact integer arithmetic.

    ``|v| = num / 2**t`` exactly (``as_integer_ratio``); the quantum is ``2**(E - p + 1)`` with E
    the exponent of the leading bit (``frexp``) clamped below at the minimum normal exponent
    (subnormals share the smallest quantum). Results of 2**(emax+1) or more overflow to inf.
    """
    if math.isnan(v) or math.isinf(v) or v == 0.0:
        return v
    p, emin, emax = FORMATS[dtype]
    a = abs(v)
    _, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1: leading bit 2**(e - 1)
    shift = max(e - 1, emin) - p + 1  # log2 of the quantum
    num, den = a.as_integer_ratio()
    t = den.bit_length() - 1  # den == 2**t
    drop = t + shift  # a / quantum = num / 2**drop
    if drop <= 0:
        q = num << -drop
    else:
        q, rem = num >> drop, num & ((1 << drop) - 1)
        half = 1 << (drop - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
    if q * 2.0**shift >= 2.0 ** (emax + 1):
        return math.copysign(math.inf, v)
    return math.copysign(math.ldexp(q, shift), v)


def test_exact_round_by_hand():
    assert exact_round(1 + 2**-8, "bfloat16") == 1.0  # tie, 1.0 is even
    assert exact_round(1 + 3 * 2**-8, "bfloat16") == 1 + 2**-6  # tie, rounds to even
    assert exact_round(1 + 3 * 2**-8 - 2**-30, "bfloat16") == 1 + 2**-7  # just below the tie
    assert exact_round(1 + 2**-8 + 2**-40, "bfloat16") == 1 + 2**-7
    assert exact_round(65504.0, "float16") == 65504.0
    assert exact_round(65519.99, "float16") == 65504.0
    assert exact_round(65520.0, "float16") == math.inf  # tie between 65504 (odd) and 2**16
    assert exact_round(-65520.0, "float16") == -math.inf
    assert exact_round(2**-25, "float16") == 0.0  # half the smallest subnormal: tie to 0
    assert exact_round(3 * 2**-25, "float16") == 2**-23  # 1.5 subnormal steps: tie to 2
    assert exact_round(2**-25 * (1 + 2**-20), "float16") == 2**-24
    assert exact_round(1 / 3, "float32") == float(np.float32(1 / 3))
    assert exact_round(2.0**-150, "float32") == 0.0
    assert exact_round(-(2.0**-150) * 1.5, "float32") == -(2.0**-149)
    assert math.copysign(1, exact_round(-1e-300, "bfloat16")) == -1.0


# --- test values --------------------------------------------------------------------------------


def dtype_values(dtype: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random finite values of ``dtype`` (all signs and binades, subnormals included)."""
    if dtype == "float16":
        v = rng.integers(0, 1 << 16, n, dtype=np.uint64).astype(np.uint16).view(np.float16)
    elif dtype == "bfloat16":
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint64).astype(np.uint32) << np.uint32(16)
        v = bits.view(np.float32)
    else:
        v = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        v = v.astype(np.float64)
    return v[np.isfinite(v)]


def next_up(v: np.ndarray, dtype: str) -> np.ndarray:
    """The next value of ``dtype`` above each |v| (same sign), by bit pattern."""
    a = np.abs(v)
    if dtype == "float16":
        bits = a.astype(np.float16).view(np.uint16) + np.uint16(1)
        up = bits.view(np.float16).astype(np.float64)
    elif dtype == "bfloat16":
        bits = a.astype(np.float32).view(np.uint32) + np.uint32(1 << 16)
        up = bits.view(np.float32).astype(np.float64)
    else:
        bits = a.astype(np.float32).view(np.uint32) + np.uint32(1)
        up = bits.view(np.float32).astype(np.float64)
    return np.copysign(up, v)


def hard_values(dtype: str, seed: int = 0) -> np.ndarray:
    """Exact ties, near ties (off the tie by far less than half a float32 ULP, so that rounding
    through float32 lands on the tie and double-rounds), representable values, random float64
    values over the whole range including underflow and overflow."""
    rng = np.random.default_rng(seed)
    p, emin, emax = FORMATS[dtype]
    base = dtype_values(dtype, rng, 1500)
    up = next_up(base, dtype)
    ok = np.isfinite(up)
    base, up = base[ok], up[ok]
    tie = (base + up) / 2  # exact: one more bit than dtype
    step = np.abs(up - base)
    near = np.concatenate([tie + step * 2.0**-20, tie - step * 2.0**-20, tie + step * 2.0**-35])
    mags = 2.0 ** rng.uniform(emin - p - 3, emax + 2, 1500) * rng.uniform(1, 2, 1500)
    rand = mags * rng.choice([-1.0, 1.0], 1500)
    max_finite = (2 - 2.0 ** (1 - p)) * 2.0**emax
    half_ulp_max = 2.0 ** (emax - p)
    edges = np.array(
        [
            max_finite,
            max_finite + half_ulp_max,  # tie at the top: rounds to inf
            max_finite + half_ulp_max * (1 - 2.0**-30),
            max_finite + half_ulp_max * (1 + 2.0**-30),
            2.0 ** (emin - p + 1),  # smallest subnormal
            2.0 ** (emin - p),  # half of it: tie to zero
            2.0 ** (emin - p) * (1 + 2.0**-30),
            2.0**emin,  # smallest normal
            2.0**emin * (1 - 2.0**-p),  # tie just below the smallest normal
            1.0,
            1 / 3,
        ]
    )
    edges = np.concatenate([edges, -edges])
    return np.concatenate([base, tie, near, rand, edges])


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    want32 = want.astype(np.float32)
    assert np.array_equal(want32.astype(np.float64), want), "want not exact in float32"
    bad = got.view(np.uint32) != want32.view(np.uint32)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} differ; e.g. {want[i]!r}: got {got[i]!r} "
            f"want {want32[i]!r}"
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_to_is_correctly_rounded(dtype):
    values = hard_values(dtype)
    with np.errstate(over="ignore"):
        got = round_to(values, dtype)
    want = np.array([exact_round(float(v), dtype) for v in values])
    _same_bits(got, want)


def test_round_to_float16_is_numpys_direct_cast():
    values = hard_values("float16", seed=1)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).astype(np.float32)
    _same_bits(round_to(values, "float16"), want.astype(np.float64))


def test_bfloat16_double_rounding_examples():
    """Rounding float64 -> float32 -> bfloat16 would give the wrong answer for these."""
    values = np.array([1 + 2**-8 + 2**-30, 1 + 3 * 2**-8 - 2**-30, -(1 + 2**-8 + 2**-30)])
    via_f32_tie = values.astype(np.float32).astype(np.float64)
    assert list(via_f32_tie) == [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)]  # ties after f32
    got = round_to(values, "bfloat16")
    assert got.tolist() == [1 + 2**-7, 1 + 2**-7, -(1 + 2**-7)]


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_round_to_matches_exact_on_any_float64(dtype, v):
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = round_to(np.array([v]), dtype)
    _same_bits(got, np.array([exact_round(v, dtype)]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_to_special_values(dtype):
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1e-300, 1e-300, -np.nan])
    got = round_to(values, dtype)
    assert got.dtype == np.float32
    assert np.isnan(got[0]) and np.isnan(got[7])
    assert got[1] == np.inf and got[2] == -np.inf
    assert got[3] == 0 and np.signbit(got[3])
    assert got[4] == 0 and not np.signbit(got[4])
    assert got[5] == 0 and np.signbit(got[5])  # underflow keeps the sign
    assert got[6] == 0 and not np.signbit(got[6])


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_to_shapes_and_input_types(dtype):
    rng = np.random.default_rng(2)
    v = rng.standard_normal((3, 4, 5))
    got = round_to(v, dtype)
    assert got.shape == v.shape and got.dtype == np.float32
    # idempotent, and float32 / float16 / list / scalar inputs take the same path
    np.testing.assert_array_equal(round_to(got, dtype), got)
    np.testing.assert_array_equal(round_to(v.tolist(), dtype), got)
    np.testing.assert_array_equal(round_to(v.astype(np.float32), dtype), round_to(got, dtype))
    assert round_to(np.arange(4), dtype).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert round_to(np.zeros((0, 3)), dtype).shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_to_keeps_zero_dim_shape(dtype):
    """Scalars and 0-d arrays stay 0-d, like NumPy's own casts."""
    for value in (1 / 3, np.float64(1 / 3), np.array(1 / 3), np.float32(1 / 3)):
        got = round_to(value, dtype)
        assert got.shape == (), (type(value), got.shape)
        assert got.dtype == np.float32
        assert float(got) == exact_round(float(value), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_to_error_within_unit_roundoff(dtype):
    rng = np.random.default_rng(3)
    v = rng.uniform(-1000, 1000, 5000)
    err = np.abs(round_to(v, dtype).astype(np.float64) - v)
    assert np.all(err <= UNIT_ROUNDOFF[dtype] * np.abs(v))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflow_is_silent(dtype):
    """Overflow rounds to inf without a warning, for every dtype (float16 already does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = round_to(np.array([1e300, -1e300, 1e39]), dtype)
    assert got.tolist() == [np.inf, -np.inf, np.inf]


def test_unknown_dtype_rejected():
    for bad in ("float128", "f32", "bf16", "tfloat32", ""):
        with pytest.raises(
            ValueError, match=r"dtype must be one of float32, float16, bfloat16, float64"
        ):
            round_to(np.ones(2), bad)
        with pytest.raises(ValueError, match=r"dtype must be one of"):
            check_dtype(bad)
    with pytest.raises(ValueError, match=r"dtype must be one of"):
        ulp_distance(np.ones(2), np.ones(2), "float128")


def test_unit_roundoff_values():
    assert UNIT_ROUNDOFF["float32"] == 2.0**-24
    assert UNIT_ROUNDOFF["float16"] == 2.0**-11
    assert UNIT_ROUNDOFF["bfloat16"] == 2.0**-8
    for dtype in DTYPES:
        p = FORMATS[dtype][0]
        # 1 + u is the tie between 1 and its successor: rounds to 1 (even)
        assert exact_round(1 + UNIT_ROUNDOFF[dtype], dtype) == 1.0
        assert UNIT_ROUNDOFF[dtype] == 2.0**-p


# --- ULP distance -------------------------------------------------------------------------------

#: dtype -> (1.0's successor, smallest subnormal, largest finite, 1.0's bit pattern)
KNOWN = {
    "float32": (1 + 2.0**-23, 2.0**-149, (2 - 2.0**-23) * 2.0**127, 0x3F800000),
    "float16": (1 + 2.0**-10, 2.0**-24, 65504.0, 0x3C00),
    "bfloat16": (1 + 2.0**-7, 2.0**-133, (2 - 2.0**-7) * 2.0**127, 0x3F80),
}


def _ulp(a, b, dtype) -> int:
    out = ulp_distance(np.array([a], np.float64), np.array([b], np.float64), dtype)
    return int(out[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_distance_hand_examples(dtype):
    succ, tiny, big, one_bits = KNOWN[dtype]
    p = FORMATS[dtype][0]
    assert _ulp(1.0, 1.0, dtype) == 0
    assert _ulp(1.0, succ, dtype) == 1  # adjacent
    assert _ulp(succ, 1.0, dtype) == 1  # symmetric
    assert _ulp(-1.0, -succ, dtype) == 1
    assert _ulp(1.0, 2 * succ - 1, dtype) == 2
    assert _ulp(2.0, 2.0 - (succ - 1), dtype) == 1  # across a binade boundary
    assert _ulp(1.0, 2.0, dtype) == 2 ** (p - 1)  # every value of one binade
    assert _ulp(0.0, tiny, dtype) == 1
    assert _ulp(0.0, -0.0, dtype) == 0
    assert _ulp(-tiny, tiny, dtype) == 2  # across zero: -tiny, 0, tiny
    assert _ulp(-tiny, 0.0, dtype) == 1
    assert _ulp(-2 * tiny, 3 * tiny, dtype) == 5
    assert _ulp(-1.0, 1.0, dtype) == 2 * one_bits  # -x vs x: twice x's distance from zero
    assert _ulp(0.0, 1.0, dtype) == one_bits
    assert _ulp(big, -big, dtype) == 2 * _ulp(0.0, big, dtype)
    assert _ulp(big, big - 2.0 ** (FORMATS[dtype][2] - p + 1), dtype) == 1  # top two values
    # inputs are rounded to dtype first
    assert _ulp(1.0 + 0.4 * (succ - 1), 1.0, dtype) == 0
    assert _ulp(1.0 + 0.6 * (succ - 1), 1.0, dtype) == 1


def test_ulp_distance_is_elementwise():
    got = ulp_distance(
        np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([[1.0, 2.0], [0.0, 1.0]]), "float16"
    )
    assert got.shape == (2, 2)
    assert got.tolist() == [[0, 0], [0, 2 * 0x3C00]]


def _all_finite(dtype: str) -> np.ndarray:
    """Every finite value of float16 / bfloat16, sorted, -0 and +0 merged (as float64)."""
    bits = np.arange(1 << 16, dtype=np.uint32)
    if dtype == "float16":
        v = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):  # NaN bit patterns
            v = (bits << np.uint32(16)).view(np.float32).astype(np.float64)
    return np.unique(v[np.isfinite(v)])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_ulp_distance_counts_representable_values(dtype):
    """Distance == difference of ranks in the sorted list of every finite value."""
    v = _all_finite(dtype)
    # 2**16 patterns less the 2**p with an all-ones exponent (inf, NaN), -0 merged into 0
    assert v.size == (1 << 16) - (1 << FORMATS[dtype][0]) - 1
    np.testing.assert_array_equal(ulp_distance(v[:-1], v[1:], dtype), 1)
    rng = np.random.default_rng(4)
    i = rng.integers(0, v.size, 20000)
    j = rng.integers(0, v.size, 20000)
    np.testing.assert_array_equal(ulp_distance(v[i], v[j], dtype), np.abs(i - j))


@settings(max_examples=300, deadline=None)
@given(
    a=st.floats(width=32, allow_nan=False, allow_infinity=False),
    k=st.integers(0, 300),
)
def test_ulp_distance_float32_steps(a, k):
    """Stepping k times with nextafter is k ULPs, through zero (-tiny, -0, tiny: nextafter skips
    +0) and binade boundaries too."""
    a32 = np.float32(a)
    b32 = a32
    with np.errstate(over="ignore"):
        for _ in range(k):
            b32 = np.nextafter(b32, np.float32(np.inf), dtype=np.float32)
    if not np.isfinite(b32):
        return
    assert _ulp(float(a32), float(b32), "float32") == k
    assert _ulp(float(b32), float(a32), "float32") == k
