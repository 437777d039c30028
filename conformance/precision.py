"""The statistical tier of the precision verdict: is this error what correct float32 accumulation
produces on these inputs?

The proven bound (:func:`conformance.diff.error_bound`, ``n u S`` per element with ``n`` terms and
``S = sum |x||w|``) holds for every summation order and every input, so it grows like ``n``. On
the harness's inputs (random signs, see :mod:`conformance.inputs`) a correct float32 kernel's
rounding errors largely cancel: its partial sums grow like ``sqrt(j)`` times a term, and its
error stays near ``u S`` whatever ``n``. On real layers it uses about 1e-4 of the proven bound,
which leaves room for TF32 inputs, float16 accumulation or one wrong element to pass. Outputs
within the proven bound therefore face three more tests, each a ratio to its threshold
(``> 1`` fails with ``precision-mismatch``):

1. **Per element, probabilistic bound** (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019):
   with rounding errors that are independent and of mean zero, an inner product of ``n`` terms
   has ``|err| <= lambda sqrt(n) u S`` except with probability at most ``2 n exp(-lambda^2 (1 -
   u)^2 / 2)``; :data:`LAMBDA` = 8 makes that ``n * 2.5e-14`` per element. Plus the output's
   rounding and half a subnormal, as in the proven bound. It assumes nothing about the signs.
2. **Error level, aggregate**: ``z = err / (u S + rounding)`` is the error in units of what
   float32 accumulation of random-sign terms gives (``rounding``: the output's, as above). Its
   root mean square over the output must stay below :data:`RHO`. TF32 inputs or float16
   accumulation raise every element's ``z``: by ``2^13 / sqrt(n)`` and ``2^13`` times.
3. **Out of line**: no element's ``z`` above both :data:`TAU` times the output's RMS of ``z``
   and :data:`Z_FLOOR`. One wrong element in a big output (a race, an off-by-one tail) moves
   neither the RMS nor an ``n``-scaled bound: 1000 ulps of a typical element of ``n = 4608``
   random terms is ``z`` of 20-40, against an RMS of 0.02-0.8 for correct kernels. An output
   needs more than ``TAU^2`` elements for this test to fire (an element's share of the mean).

Tests 2 and 3 rest on the harness's inputs having random signs; float16 and bfloat16 outputs
are dominated by their final rounding, which ``rounding`` absorbs. The thresholds were
calibrated on correct implementations with different summation orders (README: "Precision
verdicts", ``python -m conformance.calibrate``), which reached at most a fraction of them.
Kernels whose algorithm is outside the model (Winograd, FFT: their error scales with the
transformed operands, not with ``S``) are judged by the proven bound alone with
``--proven-bound-only`` (``Tolerance(statistical=False)``); ``--tolerance-factor`` scales both
tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformance.dtypes import UNDERFLOW_HALF_STEP, UNIT_ROUNDOFF
from reference.core import ConvResult

#: Higham & Mary's lambda for the per-element probabilistic bound.
LAMBDA = 8.0
#: The error level ``z = err / (u S + rounding)``: its RMS over an output stays below RHO.
RHO = 2.0
#: An element is out of line with the rest of its output when its ``z`` is above both TAU times
#: the output's RMS of ``z`` and Z_FLOOR.
TAU = 24.0
Z_FLOOR = 10.0


@dataclass(frozen=True)
class PrecisionScores:
    """Each test's largest ratio to its threshold (``> 1`` fails) and the elements it flags."""

    element_ratio: float
    rms_ratio: float
    outlier_ratio: float
    over_element: np.ndarray
    outliers: np.ndarray
    #: The per-element probabilistic bound (:func:`statistical_bound`) the ratios used.
    bound: np.ndarray

    @property
    def fails(self) -> bool:
        return max(self.element_ratio, self.rms_ratio, self.outlier_ratio) > 1.0

    @property
    def flagged(self) -> np.ndarray:
        """Elements over the probabilistic bound or the error level (pattern, error map)."""
        return self.over_element | self.outliers

    def describe(self) -> str:
        parts = []
        if self.element_ratio > 1:
            parts.append(
                f"{int(self.over_element.sum())} element(s) over the probabilistic bound "
                f"lambda sqrt(n) u S (up to {self.element_ratio:.3g}x)"
            )
        if self.rms_ratio > 1:
            parts.append(
                f"the output's error level (RMS of err / u S) is {self.rms_ratio:.3g}x the most "
                "float32 accumulation gives"
            )
        if self.outlier_ratio > 1:
            parts.append(
                f"{int(self.outliers.sum())} element(s) out of line with the rest of the output "
                f"(err / u S above {TAU:g}x the output's RMS of it and above {Z_FLOOR:g}; up to "
                f"{self.outlier_ratio:.3g}x that)"
            )
        return "; ".join(parts)


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` without its broadcast axes (stride 0) as size-1 axes: ``terms`` is a per-position
    array broadcast over batch and channels, and ufuncs on the compact form stay small."""
    return a[
        tuple(slice(None) if st or n == 1 else slice(0, 1) for n, st in zip(a.shape, a.strides))
    ]


def _rounding(dtype: str, bias: bool, ref: ConvResult) -> np.ndarray:
    """What rounding the output to ``dtype`` may add, and half a subnormal; with a bias added as
    an op of its own (MLX does), also the rounding of the sum before it: ``u_out |want - b|``
    where the reference recorded the bias, else the proven bound's ``u_out S``. (For float16
    and bfloat16 outputs that term decides whether float16 accumulation shows: ``u_out S`` is
    many ulps of the output.) Plus half a float32 subnormal per term: products below the normal
    range are rounded absolutely, as in the proven bound."""
    assert ref.abs_sum is not None and ref.terms is not None
    u_out = UNIT_ROUNDOFF[dtype]
    size = np.abs(ref.out)
    if bias:
        size = size + (ref.abs_sum if ref.bias is None else np.abs(ref.out - ref.bias))
    underflow = _compact(ref.terms) * UNDERFLOW_HALF_STEP["float32"]
    return u_out * size + (UNDERFLOW_HALF_STEP[dtype] + underflow)


def statistical_bound(
    dtype: str, bias: bool, ref: ConvResult, factor: float = 1.0, rounding: np.ndarray | None = None
) -> np.ndarray:
    """Per element: ``factor * LAMBDA * sqrt(n) * u * S`` plus the output's rounding
    (:func:`_rounding`, unless given)."""
    assert ref.abs_sum is not None and ref.terms is not None
    if rounding is None:
        rounding = _rounding(dtype, bias, ref)
    root_n = np.sqrt(_compact(ref.terms))
    return (factor * LAMBDA * UNIT_ROUNDOFF["float32"]) * root_n * ref.abs_sum + rounding


def scores(
    dtype: str, bias: bool, err: np.ndarray, ref: ConvResult, factor: float = 1.0
) -> PrecisionScores:
    """The three tests on ``err`` (``|got - want|``, finite, within the proven bound)."""
    assert ref.abs_sum is not None and ref.terms is not None
    u = UNIT_ROUNDOFF["float32"]
    rounding = _rounding(dtype, bias, ref)
    bound = statistical_bound(dtype, bias, ref, factor, rounding)
    with np.errstate(divide="ignore", invalid="ignore"):
        element = err / bound
        level = err / (u * ref.abs_sum + rounding)  # rounding > 0: half a subnormal at least
    over_element = element > 1.0
    rms = float(np.sqrt(np.mean(np.square(level)))) if level.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = level / (TAU * factor * rms) if rms > 0 else np.zeros(level.shape)
    out_of_line = np.minimum(relative, level / (Z_FLOOR * factor))
    outliers = out_of_line > 1.0
    return PrecisionScores(
        element_ratio=float(element.max(initial=0.0)),
        rms_ratio=rms / (RHO * factor),
        outlier_ratio=float(out_of_line.max(initial=0.0)),
        over_element=over_element,
        outliers=outliers,
        bound=bound,
    )
