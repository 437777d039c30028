"""The diff engine: judge one backend output against the reference and describe the difference.

Tolerance is per element, from the reference's error-bound inputs, not a fixed rtol::

    bound = c * (u_acc * terms * sum|x||w|         (accumulation, Higham's gamma_n bound)
                 + terms * eta_acc)                 (products that underflow, eta_acc each)
          + u_out * (|want| + [bias] * sum|x||w|)  (rounding of the output; one more when a bias
                                                    is added as a separate op, as MLX does)
          + half the smallest subnormal of the dtype (rounding near zero)

* ``terms``: the number of products (plus one for the bias) that feed the element;
  ``sum|x||w|``: the sum of their absolute values (plus ``|bias|``). Both come from the reference.
* ``u_acc``: unit roundoff of the accumulation precision a backend must meet. Default float32
  for the float32, float16 and bfloat16 cases: float16/bfloat16 inputs are expected to
  accumulate in float32, as MLX, PyTorch and cuDNN do. A float64 case is judged with float64
  accumulation whatever :attr:`Tolerance.accumulation` says (:func:`accumulation_of`), and its
  bound holds the reference's own float64 accumulation error once more (the reference is no
  more exact than the backend there); it takes no statistical tier: a backend that computes it
  in float32 is thousands to millions of times over the proven bound already.
* ``u_out``: unit roundoff of the case dtype (2**-24 float32, 2**-11 float16, 2**-8 bfloat16,
  2**-53 float64).
* ``eta_acc``: half the smallest subnormal of the accumulation precision (2**-150 for float32):
  a product below the normal range is rounded absolutely, not relatively; additions there are
  exact. It matters only for outputs near the subnormal range (``special`` fill inputs).
* ``c``: :attr:`Tolerance.factor`, default 1.0. With c = 1 the bound is a proven worst case for
  any summation order of the products in ``u_acc`` arithmetic; algorithms outside that model
  (Winograd, FFT) may need a larger c, which must be asked for explicitly.

Input fills (``Case.fill``, drawn by :func:`conformance.inputs.make_inputs`):

* ``int``: every product and partial sum is an exact integer within the dtype's exact-integer
  range, so the reference output is exact in the dtype and so is any conforming result, in any
  summation order: the comparison is exact (:func:`exact_comparison`; the bound is half a
  subnormal, below the gap between any two values of the dtype), and it takes no statistical
  tier or precision hint. A tolerance factor above 1 (an algorithm outside the summation model,
  Winograd, FFT) or an accumulation precision too short for the dtype's integers turns this
  off: such a kernel need not be exact on integers, and the case is judged by the bound.
  Zero signs are judged here: where the exact result is 0 and some term is nonzero, only +0
  conforms (:func:`_negative_zeros`; -0 is a ``value-mismatch``).
* ``wide``: float16 outputs overflow for some elements: the reference rounds them to inf, and a
  backend must return inf of the same sign there (NaN or a finite value: ``nan-inf-mismatch``).
  Where the reference is within the bound of the overflow threshold (:data:`OVERFLOW`), a
  conforming result may round either way: inf with the reference's sign passes, and a finite
  result is judged by the bound against the exact (float64) reference. The statistical tier is
  not applied to ``wide`` (:data:`STATISTICAL_FILLS`): its terms span dozens of binades, outside
  the random-sign model the tier was calibrated on (sequential float32 summation of ~10^4 of
  them reaches its RMS threshold).
* ``special``: NaN, +-inf, -0 and subnormal inputs. The reference gives each output element its
  IEEE value (:mod:`reference.special`): a backend must return NaN exactly where it is NaN, inf
  of the same sign where it is infinite (else ``nan-inf-mismatch``), and the finite elements are
  judged by the bound of their finite terms. Where a kernel that multiplies padding (or a
  transposed op's inserted zeros) by a NaN or infinite weight gets NaN
  (``ConvResult.nan_allowed``), NaN passes too. Subnormal inputs are ordinary terms: a kernel
  that flushes them to zero fails only where that moves an element past its bound. Not judged
  by the statistical tier (:data:`STATISTICAL_FILLS`): the finite elements are the uniform
  fill's, which it judges in the uniform cases.
* ``sparse`` and ``uniform``: the bound and both tiers as above. Signed zeros are not judged
  outside the ``int`` fill: -0 and +0 compare equal (err 0, 0 ulps), as a result that is not
  exact may round to a zero of either sign.

Besides the verdict it reports abs/rel/ULP errors, error over bound, the elements over tolerance,
the worst element by logical index, the spatial/channel pattern of failures, and whether the error
profile fits a known lower-precision cause (TF32, float16 or bfloat16 accumulation; float32 for a
float64 case).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from conformance import precision as P
from conformance.case import Case
from conformance.dtypes import (
    UNDERFLOW_HALF_STEP,
    UNIT_ROUNDOFF,
    carrier,
    round_to,
    ulp_between,
)
from conformance.inputs import EXACT_INTEGER_LIMIT
from reference.core import ConvResult

PASS = "pass"
SHAPE_MISMATCH = "shape-mismatch"
DTYPE_MISMATCH = "dtype-mismatch"
VALUE_MISMATCH = "value-mismatch"
#: Within the proven bound, but not what correct float32 accumulation gives (the statistical
#: tier, :mod:`conformance.precision`).
PRECISION_MISMATCH = "precision-mismatch"
NAN_INF_MISMATCH = "nan-inf-mismatch"
RAISED = "raised"
BOTH_REJECTED = "both-rejected"
ACCEPTED_INVALID = "accepted-invalid"
UNSUPPORTED = "unsupported"
CRASHED = "crashed"
TIMEOUT = "timeout"
#: The backend wrote into its input arrays (conformance.guard).
MUTATED_INPUT = "mutated-input"
#: Not run: the case needs more memory than the per-case cap (conformance.sizing).
TOO_LARGE = "too-large"

#: Every verdict, and whether it counts as a failure of the backend.
VERDICTS: dict[str, bool] = {
    PASS: False,
    SHAPE_MISMATCH: True,
    DTYPE_MISMATCH: True,
    VALUE_MISMATCH: True,
    PRECISION_MISMATCH: True,
    NAN_INF_MISMATCH: True,
    RAISED: True,
    BOTH_REJECTED: False,
    ACCEPTED_INVALID: True,
    UNSUPPORTED: False,
    CRASHED: True,
    TIMEOUT: True,
    MUTATED_INPUT: True,
    TOO_LARGE: False,
}


def is_failure(verdict: str) -> bool:
    return VERDICTS[verdict]


@dataclass(frozen=True)
class Tolerance:
    """The knobs of the error bound (see the module docstring)."""

    factor: float = 1.0
    accumulation: str = "float32"
    #: Also the statistical tier (precision-mismatch); False judges by the proven bound alone.
    statistical: bool = True

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"tolerance factor must be > 0, got {self.factor}")
        if self.accumulation not in UNIT_ROUNDOFF:
            raise ValueError(
                f"tolerance accumulation must be one of {', '.join(UNIT_ROUNDOFF)}, "
                f"got {self.accumulation!r}"
            )


#: Fills the statistical tier judges (its random-sign model; see the module docstring).
STATISTICAL_FILLS = frozenset({"uniform", "sparse"})

#: Per dtype, the smallest magnitude that rounds to inf (the largest finite value plus half its
#: ulp; a tie rounds to inf, the largest finite value's significand being odd).
OVERFLOW: dict[str, float] = {
    "float32": (2 - UNIT_ROUNDOFF["float32"]) * 2.0**127,
    "float16": (2 - UNIT_ROUNDOFF["float16"]) * 2.0**15,
    "bfloat16": (2 - UNIT_ROUNDOFF["bfloat16"]) * 2.0**127,
    # 2^1024 - 2^970 is no float64: only an infinite reference is past it.
    "float64": np.inf,
}


def accumulation_of(case: Case, tol: Tolerance) -> str:
    """The accumulation precision ``case`` is judged with: float64 for a float64 case (a float32
    accumulation bound would pass a backend that computes it in float32), else
    :attr:`Tolerance.accumulation`."""
    return "float64" if case.dtype == "float64" else tol.accumulation


def exact_comparison(case: Case, ref: ConvResult, tol: Tolerance) -> bool:
    """Whether a conforming output must equal the reference exactly: an ``int`` fill case
    (:func:`conformance.inputs.make_inputs`) whose reference output is integers within the
    dtype's exact-integer limit ``L``, judged under the summation model: a tolerance factor of at
    most 1 and an accumulation precision that holds integers up to ``L`` exactly (float32, the
    default, does for every dtype; ``Tolerance(accumulation="float16")`` not for float32).

    The reference condition holds for every forward ``int`` case by construction; it is checked
    so that other outputs of such a case (gradients, whose cotangent is uniform) keep the bound.
    """
    limit = EXACT_INTEGER_LIMIT[case.dtype]
    if (
        case.fill != "int"
        or tol.factor > 1
        or UNIT_ROUNDOFF[accumulation_of(case, tol)] * limit > 1
    ):
        return False
    out = ref.out
    return bool(np.all(out == np.rint(out)) and np.abs(out).max(initial=0.0) <= limit)


def _negative_zeros(got: np.ndarray, ref: ConvResult) -> np.ndarray:
    """Elements that are -0 where the sign of zero is defined: the exact result is 0 and some
    term (or the bias) is nonzero. Round-to-nearest addition gives +0 for an exact zero sum
    unless both operands are -0, so every partial sum holding a nonzero term that comes to zero
    is +0, in any order (sequential, tree, FMA chains). For ``int`` fill outputs, whose nonzero
    terms are at least 1 in magnitude and whose sums are exact (:func:`exact_comparison`)."""
    assert ref.abs_sum is not None
    return (got == 0) & np.signbit(got) & (ref.out == 0) & (ref.abs_sum >= 0.5)


def error_bound(
    case: Case, ref: ConvResult, tol: Tolerance, exact: bool | None = None
) -> np.ndarray:
    """Per-element bound on |got - want| for a conforming backend; with ``exact``
    (default: :func:`exact_comparison`) only half a subnormal, so any difference fails."""
    assert ref.abs_sum is not None and ref.terms is not None
    if exact is None:
        exact = exact_comparison(case, ref, tol)
    if exact:
        return np.full(ref.out.shape, UNDERFLOW_HALF_STEP[case.dtype])
    acc = accumulation_of(case, tol)
    u_acc = UNIT_ROUNDOFF[acc]
    u_out = UNIT_ROUNDOFF[case.dtype]
    # Products that underflow lose up to half a subnormal each, relative bounds aside (sums
    # in the subnormal range are exact): one such error per term.
    underflow = ref.terms * UNDERFLOW_HALF_STEP[acc]
    accumulation = tol.factor * (u_acc * ref.terms * ref.abs_sum + underflow)
    if case.dtype == "float64":  # the reference's own float64 sums err as much
        accumulation = accumulation + u_acc * ref.terms * ref.abs_sum + underflow
    size = np.abs(ref.out)
    if ref.nan_allowed is not None:  # non-finite inputs: the bound of the finite elements
        size = np.where(np.isfinite(size), size, 0.0)
    rounding = u_out * (size + (ref.abs_sum if case.bias else 0.0))
    return accumulation + rounding + UNDERFLOW_HALF_STEP[case.dtype]


@dataclass(frozen=True)
class WorstElement:
    """The element with the largest error over bound, by logical index (MLX layout)."""

    batch: int
    position: tuple[int, ...]
    channel: int
    got: float
    want: float
    abs_error: float
    bound: float
    ulp: int


@dataclass(frozen=True)
class DiffMetrics:
    elements: int
    max_abs_error: float
    max_rel_error: float | None
    max_ulp: int
    max_error_over_bound: float
    over_tolerance: int
    over_fraction: float
    worst: WorstElement | None
    pattern: str | None = None
    precision_hint: str | None = None
    #: For failing outputs: |err| / bound on a 2-D slice through the worst element (max-pooled to
    #: at most ERROR_MAP_MAX per side), rows x columns as named by ``error_map_axes``. A
    #: non-finite mismatch is written as 1e300 (JSON has no infinity); readers treat >= 1e299
    #: as "non-finite".
    error_map: list[list[float]] | None = None
    error_map_axes: tuple[str, str] | None = None
    #: The statistical tier's ratios to their thresholds (> 1 fails; None: not judged by it):
    #: largest err / (lambda sqrt(n) u S + rounding), RMS of err / (u sqrt(n) S) over RHO, and
    #: the largest isolated-element ratio (see conformance.precision).
    statistical_ratio: float | None = None
    rms_ratio: float | None = None
    outlier_ratio: float | None = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        if self.worst is not None:
            d["worst"]["position"] = list(self.worst.position)
        if self.error_map_axes is not None:
            d["error_map_axes"] = list(self.error_map_axes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> DiffMetrics:
        d = dict(d)
        worst = d.get("worst")
        if worst is not None:
            w = dict(worst)  # type: ignore[arg-type]
            w["position"] = tuple(w["position"])
            d["worst"] = WorstElement(**w)
        if d.get("error_map_axes") is not None:
            d["error_map_axes"] = tuple(d["error_map_axes"])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Diff:
    verdict: str
    metrics: DiffMetrics | None = None
    detail: str = ""


def _worst(
    got: np.ndarray,
    want: np.ndarray,
    err: np.ndarray,
    bound: np.ndarray,
    ratio: np.ndarray,
    ulp: np.ndarray,
) -> WorstElement | None:
    """The element with the largest ``ratio`` (err / bound; inf for a non-finite mismatch)."""
    if err.size == 0:
        return None
    flat = int(np.argmax(ratio))
    idx = np.unravel_index(flat, err.shape)
    return WorstElement(
        batch=int(idx[0]),
        position=tuple(int(i) for i in idx[1:-1]),
        channel=int(idx[-1]),
        got=float(got[idx]),
        want=float(want[idx]),
        abs_error=float(err[idx]),
        bound=float(bound[idx]),
        ulp=int(ulp[idx]),
    )


ERROR_MAP_MAX = 48


def _max_pool(a: np.ndarray, limit: int) -> np.ndarray:
    for axis in (0, 1):
        n = a.shape[axis]
        if n > limit:
            step = -(-n // limit)
            pad = step * (-(-n // step)) - n
            widths = [(0, 0), (0, 0)]
            widths[axis] = (0, pad)
            a = np.pad(a, widths)
            shape = list(a.shape)
            shape[axis : axis + 1] = [shape[axis] // step, step]
            a = a.reshape(shape).max(axis=axis + 1)
    return a


def error_map(ratio: np.ndarray, worst: WorstElement) -> tuple[list[list[float]], tuple[str, str]]:
    """A 2-D slice of ``ratio`` (err / bound) through the worst element, for heatmaps.

    1-D ops: position x channel at the worst batch. 2-D: H x W at the worst batch and channel.
    3-D: H x W at the worst batch, depth and channel.
    """
    nd = ratio.ndim - 2
    b, c, pos = worst.batch, worst.channel, worst.position
    if nd == 1:
        sl, axes = ratio[b], ("position", "channel")
    elif nd == 2:
        sl, axes = ratio[b, :, :, c], ("row (H)", "column (W)")
    else:
        sl, axes = ratio[b, pos[0], :, :, c], (f"row (H) at depth {pos[0]}", "column (W)")
    pooled = _max_pool(np.asarray(sl, np.float64), ERROR_MAP_MAX)
    pooled = np.where(np.isfinite(pooled), pooled, 1e300)
    return [[float(f"{v:.4g}") for v in row] for row in pooled], axes


def describe_pattern(case: Case, over: np.ndarray) -> str | None:
    """Where the elements over tolerance sit: batches, channels/groups, edges, stride phases."""
    if not over.any():
        return None
    if over.all():
        return "every element is over tolerance"
    coords = np.nonzero(over)
    notes: list[str] = []
    n, *out_sp, c_out = over.shape
    batches = np.unique(coords[0])
    if len(batches) < n:
        notes.append(f"only batch {_short_list(batches)}")
    channels = np.unique(coords[-1])
    if len(channels) < c_out:
        if case.groups > 1 and c_out % case.groups == 0:
            groups = np.unique(channels // (c_out // case.groups))
            if len(groups) < case.groups:
                notes.append(f"only group {_short_list(groups)} of {case.groups}")
        notes.append(f"only output channels {_short_list(channels)} of {c_out}")
    for axis, size in enumerate(out_sp):
        pos = coords[1 + axis]
        lo, hi = int(pos.min()), int(pos.max())
        if lo > 0 and hi == size - 1:
            notes.append(f"only the last {size - lo} of {size} positions along spatial axis {axis}")
        elif hi < size - 1 and lo == 0:
            notes.append(f"only the first {hi + 1} of {size} positions along spatial axis {axis}")
        s = case.stride[axis]
        if s > 1 and size >= s:
            phases = np.unique(pos % s)
            if len(phases) < s:
                notes.append(
                    f"only positions = {_short_list(phases)} (mod stride {s}) "
                    f"along spatial axis {axis}"
                )
    frac = over.mean()
    head = f"{frac:.1%} of elements over tolerance"
    return head + ("; " + "; ".join(notes) if notes else ", spread over the output")


def _short_list(values: np.ndarray, limit: int = 8) -> str:
    items = [str(int(v)) for v in values[:limit]]
    return ", ".join(items) + (", ..." if len(values) > limit else "")


def precision_hint(
    case: Case, err: np.ndarray, ref: ConvResult, tol: Tolerance, statistical: bool = False
) -> str | None:
    """Name the first (least lossy) lower-precision arithmetic whose error bound covers every
    element.

    Each candidate rounds the inputs with unit roundoff ``u_in`` (0: exact) and accumulates in a
    precision of unit roundoff ``u_acc`` whose partial sums below its normal range are rounded
    absolutely, by up to half its smallest subnormal ``eta_acc`` each (float16's 2^-25 shows on
    outputs near 1e-6). Proven bounds: ``(2 u_in + n u_acc) S + n eta_acc``. With
    ``statistical`` (an output that failed the statistical tier), probabilistic ones: ``lambda
    (4 u_in / sqrt(n) + sqrt(n) u_acc) S + n eta_acc``; ``4 S / sqrt(n)`` stands for twice
    ``sqrt(sum t^2)`` of random-sign terms, the scale of input-rounding errors, which do not grow
    with partial sums."""
    assert ref.abs_sum is not None and ref.terms is not None
    s = ref.abs_sum
    u32 = UNIT_ROUNDOFF["float32"]
    ubf = UNIT_ROUNDOFF["bfloat16"]
    utf = UNIT_ROUNDOFF["tfloat32"]
    candidates: list[tuple[str, float, str]] = []  # (name, u_in, accumulation dtype)
    if case.dtype == "float64":
        candidates += [
            (
                "float32 arithmetic (inputs rounded to float32, float32 accumulation)",
                u32,
                "float32",
            ),
            ("TF32 (inputs rounded to a 10-bit mantissa, float32 accumulation)", utf, "float32"),
        ]
    elif case.dtype == "float32":
        candidates += [
            ("TF32 (inputs rounded to a 10-bit mantissa, float32 accumulation)", utf, "float32"),
            ("bfloat16-rounded inputs with float32 accumulation", ubf, "float32"),
            ("float16 accumulation", 0.0, "float16"),
            ("bfloat16 accumulation", 0.0, "bfloat16"),
        ]
    elif case.dtype == "float16":
        candidates.append(("float16 accumulation", 0.0, "float16"))
    else:
        candidates.append(("bfloat16 accumulation", 0.0, "bfloat16"))
    base = error_bound(case, ref, Tolerance(tol.factor, "float64"), exact=False)
    if statistical:
        root_n = np.sqrt(ref.terms)
        inputs_scale, acc_scale = P.LAMBDA * 4 / np.maximum(root_n, 1), P.LAMBDA * root_n
    else:
        inputs_scale, acc_scale = 2.0, ref.terms
    for name, u_in, acc in candidates:
        u_acc, eta_acc = UNIT_ROUNDOFF[acc], UNDERFLOW_HALF_STEP[acc]
        allowed = (u_in * inputs_scale + u_acc * acc_scale) * s + ref.terms * eta_acc
        if np.all(err <= tol.factor * allowed + base):
            return f"error profile is consistent with {name}"
    return None


def _always_on_grid(stored: np.dtype, dtype: str) -> bool:
    """Whether every value of NumPy dtype ``stored`` is representable in the case ``dtype``."""
    return (
        (stored == np.float16 and dtype != "bfloat16")
        or (stored == np.float32 and dtype == "float32")
        or (stored == np.float64 and dtype == "float64")
    )


def _count_off_grid(
    got: np.ndarray, got64: np.ndarray, finite: np.ndarray, all_finite: bool, dtype: str
) -> int:
    """How many finite values of ``got`` are not representable in ``dtype``."""
    if got.dtype == np.float32 and dtype == "bfloat16":
        # bfloat16 is the top half of a float32: on its grid iff the low 16 bits are zero.
        low = (got.view(np.uint32) & 0xFFFF) != 0
        return int(np.count_nonzero(low if all_finite else low & finite))
    values = got64 if all_finite else got64[finite]
    return int(np.count_nonzero(round_to(values, dtype) != values))


def compare(case: Case, got: np.ndarray, ref: ConvResult, tol: Tolerance = Tolerance()) -> Diff:
    """Judge ``got`` (MLX layout, values of the case dtype) against the reference result."""
    got = np.asarray(got)
    want = ref.out
    if got.shape != want.shape:
        return Diff(
            SHAPE_MISMATCH,
            detail=f"shape {tuple(got.shape)} but the reference has {tuple(want.shape)}",
        )
    if got.dtype.kind != "f":
        return Diff(DTYPE_MISMATCH, detail=f"output has NumPy dtype {got.dtype}, not a float type")
    if case.dtype == "float64" and got.dtype != np.float64:
        return Diff(
            DTYPE_MISMATCH,
            detail=f"output has NumPy dtype {got.dtype}: a float64 case needs float64 output",
        )
    got64 = got.astype(np.float64)
    finite_got = np.isfinite(got64)
    all_got_finite = bool(finite_got.all())
    if not _always_on_grid(got.dtype, case.dtype):
        off_grid = _count_off_grid(got, got64, finite_got, all_got_finite, case.dtype)
        if off_grid:
            return Diff(
                DTYPE_MISMATCH,
                detail=f"{off_grid} output value(s) are not representable in {case.dtype}: "
                f"the backend did not produce {case.dtype} output",
            )
    want32 = round_to(want, case.dtype)  # the dtype's carrier (float32 or 64); may be inf
    got32 = got64.astype(carrier(case.dtype))  # exact: got is on the dtype's grid
    exact = exact_comparison(case, ref, tol)
    bound = error_bound(case, ref, tol, exact)
    if all_got_finite and bool(np.isfinite(want32).all()):
        # The common case: no masks, no copies of masked elements.
        mismatch = np.zeros(got64.shape, bool)
        finite = np.ones(got64.shape, bool)
        err = np.abs(got64 - want)
        ulp = ulp_between(got32, want32, case.dtype)
    else:
        want_rounded = want32.astype(np.float64)
        bad_got = ~finite_got
        bad_want = ~np.isfinite(want_rounded)
        nan_got = np.isnan(got64)
        with np.errstate(invalid="ignore"):
            wrong_special = (nan_got != np.isnan(want_rounded)) | (
                ~nan_got & (np.sign(got64) != np.sign(want_rounded))
            )
        mismatch = (bad_got != bad_want) | (bad_got & bad_want & wrong_special)
        if ref.nan_allowed is not None:
            # A kernel that multiplies padding by a non-finite weight gets NaN there.
            mismatch &= ~(ref.nan_allowed & nan_got)
        # Within the bound of the overflow threshold a conforming result may round either way:
        # inf with the reference's sign, or a finite value judged by the bound (below).
        with np.errstate(invalid="ignore"):
            size = np.abs(want)
            either = (size + bound >= OVERFLOW[case.dtype]) & (size - bound < OVERFLOW[case.dtype])
        if either.any():
            inf_ok = bad_got & (got64 == np.copysign(np.inf, want))
            mismatch &= ~(either & (inf_ok | ~bad_got))
            finite = ~bad_got & (~bad_want | either)
        else:
            finite = ~bad_got & ~bad_want
        with np.errstate(invalid="ignore"):
            err = np.where(finite, np.abs(got64 - want), 0.0)
        ulp = np.zeros(err.shape, np.int64)
        ulp[finite] = ulp_between(got32[finite], want32[finite], case.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(finite & (want != 0), err / np.abs(want), 0.0)
    negative_zero = _negative_zeros(got64, ref) if exact else None
    over = (err > bound) | mismatch
    if negative_zero is not None:
        over |= negative_zero
    any_nonzero = bool(np.any(finite & (want != 0)))
    over_bound = err / bound
    stat = None
    statistical = (
        tol.statistical
        and not exact
        and case.fill in STATISTICAL_FILLS
        and case.dtype != "float64"  # calibrated on float32 accumulation (module docstring)
    )
    if statistical and err.size and not over.any():
        stat = P.scores(case.dtype, case.bias, err, ref, tol.factor)
    if stat is not None and stat.fails:
        # Judged by the statistical tier: the map, worst element and pattern show its view.
        flagged, shown_bound = stat.flagged, stat.bound
    else:
        flagged, shown_bound = over, bound
    ratio = np.where(mismatch, np.inf, err / shown_bound)
    worst = _worst(got64, want, np.where(mismatch, np.inf, err), shown_bound, ratio, ulp)
    emap, eaxes = error_map(ratio, worst) if flagged.any() and worst is not None else (None, None)
    if exact:
        hint = None  # an error on exact inputs is a wrong result, not a precision profile
    elif over.any() and not mismatch.any():
        hint = precision_hint(case, err, ref, tol)
    elif stat is not None and (stat.element_ratio > 1 or stat.rms_ratio > 1):
        # Elements out of line alone are no lower-precision arithmetic: no hint for them.
        hint = precision_hint(case, err, ref, tol, statistical=True)
    else:
        hint = None
    metrics = DiffMetrics(
        elements=int(err.size),
        max_abs_error=float(err.max(initial=0.0)),
        max_rel_error=float(rel.max(initial=0.0)) if any_nonzero else None,
        max_ulp=int(ulp.max(initial=0)),
        max_error_over_bound=float(over_bound.max(initial=0.0)),
        over_tolerance=int(over.sum()),
        over_fraction=float(over.mean()) if over.size else 0.0,
        worst=worst,
        pattern=describe_pattern(case, flagged),
        precision_hint=hint,
        error_map=emap,
        error_map_axes=eaxes,
        statistical_ratio=None if stat is None else stat.element_ratio,
        rms_ratio=None if stat is None else stat.rms_ratio,
        outlier_ratio=None if stat is None else stat.outlier_ratio,
    )
    if mismatch.any():
        where = np.argwhere(mismatch)[0]
        return Diff(
            NAN_INF_MISMATCH,
            metrics,
            f"{int(mismatch.sum())} element(s) non-finite in only one of got/want; first at "
            f"{tuple(int(i) for i in where)}: got {got64[tuple(where)]}, "
            f"want {want_rounded[tuple(where)]}",
        )
    if negative_zero is not None and negative_zero.any():
        return Diff(
            VALUE_MISMATCH,
            metrics,
            f"{int(negative_zero.sum())} element(s) are -0 where the exact result is +0: a sum "
            f"with a nonzero term that cancels to zero is +0 in round-to-nearest, in any order",
        )
    if over.any() and exact:
        return Diff(
            VALUE_MISMATCH,
            metrics,
            f"{metrics.over_tolerance} element(s) differ from the exact result (int fill: every "
            f"product and partial sum is an exact integer, so the reference is exact in "
            f"{case.dtype} and any difference is an error)",
        )
    if over.any():
        return Diff(VALUE_MISMATCH, metrics, f"{metrics.over_tolerance} element(s) over tolerance")
    if stat is not None and stat.fails:
        return Diff(PRECISION_MISMATCH, metrics, "within the proven bound, but " + stat.describe())
    return Diff(PASS, metrics)
