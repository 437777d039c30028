"""The case dtypes: rounding to them, their unit roundoff, and ULP distance within them.

Values of float32, float16 and bfloat16 cases are carried in float32 arrays (float16 and bfloat16
values are exact in float32), so NumPy needs no bfloat16 type; values of float64 cases in float64
arrays. Adapters convert to the backend's native dtype.
"""

from __future__ import annotations

import numpy as np

#: The dtypes generated cases draw from unless told otherwise (every backend computes them).
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
#: Every case dtype: float64 too, which few backends compute (PyTorch, the reference) and which
#: a run draws only when asked (``--dtypes ...,float64``).
ALL_DTYPES: tuple[str, ...] = (*DTYPES, "float64")
SHORT: dict[str, str] = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}
FROM_SHORT: dict[str, str] = {v: k for k, v in SHORT.items()}

#: Unit roundoff u = 2**-(mantissa bits + 1): |fl(v) - v| <= u |v| for normal results.
UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "tfloat32": 2.0**-11,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}

#: Half the smallest positive subnormal: the absolute rounding error near zero (of a result,
#: a product, in the case dtypes and in the accumulation precisions of UNIT_ROUNDOFF).
UNDERFLOW_HALF_STEP: dict[str, float] = {
    # Half of float64's smallest subnormal is no float64 (2.0**-1075 is 0): the subnormal itself.
    "float64": 2.0**-1074,
    "float32": 2.0**-150,
    "tfloat32": 2.0**-150,
    "float16": 2.0**-25,
    "bfloat16": 2.0**-134,
}


def check_dtype(dtype: str) -> str:
    if dtype not in ALL_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(ALL_DTYPES)}, got {dtype!r}")
    return dtype


def carrier(dtype: str) -> type:
    """The NumPy type that carries a case's values: float64 for float64 cases, else float32."""
    return np.float64 if dtype == "float64" else np.float32


def _round_bfloat16(x32: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest even), returned as float32."""
    bits = np.ascontiguousarray(x32, np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(x32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    return np.where(nan, np.float32(np.nan), out)


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round ``values`` to ``dtype`` once (nearest even); the result is a float32 array (a
    float64 one for float64, :func:`carrier`)."""
    check_dtype(dtype)
    v = np.asarray(values)
    with np.errstate(over="ignore"):  # overflow to inf is the correct rounding
        if dtype == "float64":
            return v.astype(np.float64)
        if dtype == "float16":
            return v.astype(np.float16).astype(np.float32)
        if dtype == "bfloat16":
            return _round_bfloat16_from(v).reshape(v.shape)
        return v.astype(np.float32)


def _round_bfloat16_from(v: np.ndarray) -> np.ndarray:
    """Correctly rounded bfloat16 of any float input, as float32.

    float64 -> float32 -> bfloat16 can round twice. Rounding to float32 by round-to-odd
    (truncate, then set the last bit if inexact) makes the second rounding exact.
    """
    v64 = np.atleast_1d(v.astype(np.float64))
    v32 = v64.astype(np.float32)
    with np.errstate(invalid="ignore"):
        inexact = np.isfinite(v32) & (v32.astype(np.float64) != v64)
        overshoot = inexact & (np.abs(v32.astype(np.float64)) > np.abs(v64))
    bits = v32.view(np.uint32)
    bits = np.where(overshoot, bits - np.uint32(1), bits)
    bits = np.where(inexact, bits | np.uint32(1), bits)
    return _round_bfloat16(bits.astype(np.uint32).view(np.float32))


def _ordered_bits(values32: np.ndarray, dtype: str) -> np.ndarray:
    """Map values (exact in ``dtype``) to int64 integers whose difference counts ULPs in
    ``dtype``: the magnitude bits, negated for negative values (so -0 and +0 are both 0)."""
    if dtype == "float64":
        bits64 = np.asarray(values32, np.float64).view(np.uint64)
        mag64 = (bits64 & np.uint64(0x7FFFFFFFFFFFFFFF)).astype(np.int64)
        return np.negative(mag64, out=mag64, where=bits64 >= np.uint64(0x8000000000000000))
    v = np.asarray(values32, np.float32)
    if dtype == "float16":
        top = v.astype(np.float16).view(np.uint16)
        mag, neg = (top & 0x7FFF).astype(np.int64), top >= 0x8000
    elif dtype == "bfloat16":
        top = (v.view(np.uint32) >> 16).astype(np.uint16)
        mag, neg = (top & 0x7FFF).astype(np.int64), top >= 0x8000
    else:
        bits = v.view(np.uint32)
        mag, neg = (bits & 0x7FFFFFFF).astype(np.int64), bits >= 0x80000000
    return np.negative(mag, out=mag, where=neg)


def ulp_distance(got: np.ndarray, want: np.ndarray, dtype: str) -> np.ndarray:
    """Per-element distance in units in the last place of ``dtype`` between ``got`` and the
    correctly rounded ``want``; finite inputs only (callers mask NaN/Inf first)."""
    return ulp_between(round_to(got, dtype), round_to(want, dtype), dtype)


def ulp_between(got32: np.ndarray, want32: np.ndarray, dtype: str) -> np.ndarray:
    """:func:`ulp_distance` of values already exact in ``dtype`` (arrays of its
    :func:`carrier`, e.g. from :func:`round_to`): no rounding pass, for the diff engine's large
    outputs."""
    return np.abs(_ordered_bits(got32, dtype) - _ordered_bits(want32, dtype))
