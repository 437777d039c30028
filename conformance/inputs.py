"""Input generation (from the case seed, rounded once to the case dtype) and the reference call.

Every backend sees exactly these values: float32 arrays that are exact in the case dtype (float64
arrays for a float64 case, :func:`conformance.dtypes.carrier`), in MLX layout. Adapters convert
them to their own dtype and layout; that conversion is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from conformance.case import Case
from conformance.dtypes import round_to
from reference.core import ConvResult
from reference.ops import run_op
from reference.params import check_params, check_shapes


@dataclass(frozen=True)
class Inputs:
    """A case's arrays: input, weight, bias, and for backward cases the cotangent ``dy`` (the
    gradient of the loss with respect to the forward output, :func:`cotangent`)."""

    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    dy: np.ndarray | None = None


#: Largest integer every integer up to which is exact in the dtype (its significand bits).
EXACT_INTEGER_LIMIT: dict[str, int] = {
    "float32": 2**24,
    "float16": 2**11,
    "bfloat16": 2**8,
    "float64": 2**53,
}

#: ``wide`` fill: magnitudes ``2^uniform(-e, e)``. bfloat16 and float32 (same exponent range):
#: a fixed ``e``; float16: ``e`` from :func:`wide_exponent`.
WIDE_EXPONENT: dict[str, float] = {"float32": 16.0, "bfloat16": 16.0, "float64": 16.0}
#: float16 ``wide`` fill: ``e = min(8, (WIDE_F16_LOG2_PEAK - log2(n) / 2) / 2)`` for ``n``
#: products per output element, floored at WIDE_F16_MIN_EXPONENT (see :func:`wide_exponent`).
WIDE_F16_LOG2_PEAK = 19.0
WIDE_F16_MIN_EXPONENT = 4.0

#: Second SeedSequence word of the stream that places the ``sparse`` fill's zeros and the
#: ``int`` fill's nonzero weights (the values come from the case seed's own stream).
FILL_STREAM = 2
#: Second SeedSequence word of the cotangent's stream, so ``dy`` is independent of the inputs.
COTANGENT_STREAM = 1


def reduction_terms(case: Case) -> int:
    """Products per output element at most, of the dense formulation: ``(in_channels / groups)
    * taps``. A transposed op's is that of its forward-convolution form: with stride > 1 an
    interior output element sums about ``1 / prod(stride)`` of them (the others hit zeros). At
    least 1."""
    return max(1, max(case.w_shape[-1], 0) * math.prod(max(k, 0) for k in case.kernel))


def int_magnitude(case: Case) -> int:
    """The ``int`` fill's ``m``: the largest with ``n m^2 (+ m with a bias) <= L`` for ``n``
    products per output element and the dtype's exact-integer limit ``L``; 0 when even ``m = 1``
    does not fit (then the weights are made sparse, see :func:`make_inputs`)."""
    limit, n, extra = EXACT_INTEGER_LIMIT[case.dtype], reduction_terms(case), int(case.bias)
    m = math.isqrt(limit // n)
    while m > 0 and n * m * m + extra * m > limit:
        m -= 1
    return m


def wide_exponent(case: Case) -> float:
    """The ``wide`` fill's ``e``: magnitudes are ``2^uniform(-e, e)``.

    float16: ``min(8, (19 - log2(n) / 2) / 2)``, at least 4. Inputs are then normal float16
    values (``>= 2^-8``) and at most 256, products up to ``2^16``: from about 10 products per
    output element on, some outputs pass 65504 and the reference rounds them to inf (0.03% of
    them at 9 products, 1-2% at 72-2304, up to 5% at 18432; ``e`` shrinks with ``n`` because
    sums of many large products would otherwise overflow nearly everywhere: 94% at ``e = 10``
    and 576 products). bfloat16 and float32: ``e = 16``, products over ``2^[-32, 32]``, far
    inside their range.
    """
    if case.dtype != "float16":
        return WIDE_EXPONENT[case.dtype]
    e = (WIDE_F16_LOG2_PEAK - math.log2(reduction_terms(case)) / 2) / 2
    return max(WIDE_F16_MIN_EXPONENT, min(8.0, e))


@lru_cache(maxsize=64)
def make_inputs(case: Case) -> Inputs:
    """The case's inputs, drawn from ``case.seed`` as ``case.fill`` says, rounded once to
    ``case.dtype``:

    * ``uniform`` (default): uniform values in [-1, 1). Never an exact zero, an integer or a
      value near the float16 range.
    * ``int``: integers in ``[-m, m]`` (input, weight and bias), ``m`` from
      :func:`int_magnitude`: the largest with ``n m^2 (+ m) <= L`` for ``n`` products per output
      element (:func:`reduction_terms`) and the dtype's exact-integer limit ``L``
      (:data:`EXACT_INTEGER_LIMIT`: 2^24 float32, 2048 float16, 256 bfloat16). Every product
      and every partial sum, in any order, is then an integer of magnitude at most ``L``: exact
      in float32 and in the dtype, and so is the output, which the diff engine compares exactly
      (benchdnn's trick: any indexing error shows, by one unit if need be). Where even ``m = 1``
      does not fit (``n >= L``, e.g. bfloat16 with 288 products), the input and bias are in
      {-1, 0, 1} and each output channel's weight has ``L - [bias]`` entries of +-1 at random
      positions, zeros elsewhere: at most that many nonzero products per output element.
    * ``sparse``: the ``uniform`` values (the same ones) with about half of the input, weight
      and bias elements set to exact (positive) zeros.
    * ``wide``: ``sign * 2^uniform(-e, e)``, random signs, ``e`` from :func:`wide_exponent`:
      float16 up to 256 (outputs of longer reductions overflow to inf for some elements),
      bfloat16 and float32 over ``2^[-16, 16]``. Never zero or subnormal.

    * ``special``: the ``uniform`` values with IEEE special values put in (:func:`_specials`):
      each element is ``-0`` or a subnormal of the dtype (random sign and magnitude) with
      probability :data:`SPECIAL_FINITE_RATE` each; the input holds 1-3 elements that are NaN,
      +inf or -inf, the weight one with probability 1/2, the bias one with probability 1/4.
      The reference defines the output's NaN and infinities per element
      (:mod:`reference.special`). Only this fill draws NaN, inf, -0 or subnormal inputs.

    A case with the ``expanded`` layout (:mod:`conformance.layouts`) has the first sample's
    input in every sample.

    The ``sparse`` and ``special`` fills' changes and the sparse ``int`` weights are placed by a
    second stream (:data:`FILL_STREAM`), so their other values are the ``uniform`` fill's.
    Shapes come from the case even when it is invalid (a negative size becomes 0, so the arrays
    can still be built and handed to backends to reject).
    """
    rng = np.random.default_rng(case.seed)
    shapes = [case.x_shape, case.w_shape, *([case.bias_shape] if case.bias_shape else [])]
    shapes = [tuple(max(s, 0) for s in shape) for shape in shapes]
    if case.fill == "int":
        arrays = _int_fill(case, rng, shapes)
    elif case.fill == "wide":
        e = wide_exponent(case)
        arrays = [
            rng.choice(np.array([-1.0, 1.0]), shape) * np.exp2(rng.uniform(-e, e, shape))
            for shape in shapes
        ]
    else:
        arrays = [rng.uniform(-1.0, 1.0, shape) for shape in shapes]
        if case.fill == "sparse":
            zeros = np.random.default_rng([case.seed, FILL_STREAM])
            arrays = [np.where(zeros.random(a.shape) < 0.5, 0.0, a) for a in arrays]
        elif case.fill == "special":
            arrays = _specials(case, arrays)
    if case.layout == "expanded" and arrays[0].shape[0]:
        # A stride-0 batch holds one sample: every sample is the first.
        arrays[0] = np.broadcast_to(arrays[0][:1], arrays[0].shape).copy()
    out = []
    for a in arrays:
        r = round_to(a, case.dtype)
        r.setflags(write=False)
        out.append(r)
    dy = cotangent(case) if case.direction != "fwd" else None
    return Inputs(out[0], out[1], out[2] if case.bias_shape else None, dy)


def cotangent(case: Case) -> np.ndarray | None:
    """``dy`` of a backward case: uniform in [-1, 1) from ``(case.seed, COTANGENT_STREAM)``,
    rounded to the dtype, read-only, the forward output's shape; the same for ``bwd_d`` and
    ``bwd_w`` and whatever the fill. None for an invalid case (it has no output shape)."""
    try:
        shape = check_case(case)
    except (ValueError, ArithmeticError):
        return None
    rng = np.random.default_rng([case.seed, COTANGENT_STREAM])
    dy = round_to(rng.uniform(-1.0, 1.0, shape), case.dtype)
    dy.setflags(write=False)
    return dy


#: ``special`` fill: the probability of each element being -0, and of it being a subnormal.
SPECIAL_FINITE_RATE = 1 / 16
#: ``special`` fill: how many non-finite elements the input, weight and bias get: the input
#: 1 to 3; the weight and the bias one with these probabilities.
SPECIAL_NON_FINITE_P = {"w": 1 / 2, "bias": 1 / 4}
#: Per dtype: the smallest subnormal's exponent and the number of subnormal magnitudes.
SUBNORMALS: dict[str, tuple[int, int]] = {
    "float32": (-149, 2**23),
    "float16": (-24, 2**10),
    "bfloat16": (-133, 2**7),
    "float64": (-1074, 2**52),
}


def _specials(case: Case, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The ``special`` fill's changes to the uniform values (see :func:`make_inputs`)."""
    rng = np.random.default_rng([case.seed, FILL_STREAM])
    exponent, count = SUBNORMALS[case.dtype]
    out = []
    for name, a in zip(("x", "w", "bias"), arrays):
        a = a.copy()
        kind = rng.random(a.shape)
        signs = np.where(rng.random(a.shape) < 0.5, -1.0, 1.0)
        steps = rng.integers(1, count, size=a.shape).astype(np.float64)
        subnormal = signs * np.ldexp(steps, exponent)
        a = np.where(kind < SPECIAL_FINITE_RATE, -0.0, a)
        a = np.where((kind >= SPECIAL_FINITE_RATE) & (kind < 2 * SPECIAL_FINITE_RATE), subnormal, a)
        if name == "x":
            n_bad = int(rng.integers(1, 4))
        else:
            n_bad = int(rng.random() < SPECIAL_NON_FINITE_P[name])
        if a.size:
            flat = a.reshape(-1)
            where = rng.choice(a.size, size=min(n_bad, a.size), replace=False)
            flat[where] = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=len(where))
        out.append(a)
    return out


def _int_fill(
    case: Case, rng: np.random.Generator, shapes: list[tuple[int, ...]]
) -> list[np.ndarray]:
    m = int_magnitude(case)
    if m >= 1:
        return [
            rng.integers(-m, m, size=shape, endpoint=True).astype(np.float64) for shape in shapes
        ]
    # Even +-1 everywhere could pass L: cap the nonzero weights per output channel (each output
    # element's products use one output channel's weights, each weight at most once).
    x, w, *b = (
        rng.integers(-1, 1, size=shape, endpoint=True).astype(np.float64) for shape in shapes
    )
    keep = EXACT_INTEGER_LIMIT[case.dtype] - int(case.bias)
    flat = w.reshape(w.shape[0], -1) if w.size else w
    if w.size and flat.shape[1] > keep:
        pick = np.random.default_rng([case.seed, FILL_STREAM])
        signs = np.where(pick.random(flat.shape) < 0.5, -1.0, 1.0)
        order = np.argsort(pick.random(flat.shape), axis=1)
        flat = np.zeros(flat.shape)
        np.put_along_axis(flat, order[:, :keep], np.take_along_axis(signs, order[:, :keep], 1), 1)
        w = flat.reshape(w.shape)
    return [x, w, *b]


def check_case(case: Case) -> tuple[int, ...]:
    """The case's output shape, checked as the reference checks its arguments but with the
    case's own sizes: a negative batch, channel count, spatial or kernel size (which the input
    arrays cannot hold: :func:`make_inputs` makes it 0) is rejected with its real value.
    ValueError naming op, parameter and value otherwise."""
    p = check_params(case.op, case.ndim, transposed=case.transposed, **case.params())  # type: ignore[arg-type]
    return check_shapes(p, case.x_shape, case.w_shape, case.bias_shape)


def run_reference(case: Case, inputs: Inputs | None = None) -> ConvResult:
    """The oracle: float64 output plus error-bound inputs. Raises ValueError for invalid cases
    (:func:`check_case` first, so a negative size is named with its value)."""
    check_case(case)
    inputs = inputs or make_inputs(case)
    res = reference_output(case, inputs.x, inputs.w, inputs.bias, with_bound=True)
    assert isinstance(res, ConvResult)
    return res if inputs.bias is None else replace(res, bias=inputs.bias)


def reference_output(
    case: Case,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    *,
    with_bound: bool = False,
    **options: object,
) -> np.ndarray | ConvResult:
    """The reference's forward output of ``case``'s op and parameters on these arrays (float64;
    with its bound inputs when ``with_bound``); ``options`` go to
    :func:`reference.ops.run_op` (e.g. ``formulation``)."""
    return run_op(
        case.op,
        case.ndim,
        case.transposed,
        x,
        w,
        bias,
        with_bound=with_bound,
        **case.params(),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
