"""What a case's direction computes, what the reference expects, and how the outputs are judged.

One pipeline serves every direction (:data:`conformance.case.DIRECTIONS`): the runner asks
:func:`expected` for the reference's outputs, a backend's ``run`` returns its outputs, and
:func:`judge` compares them with :func:`conformance.diff.compare`, one verdict per record.

* ``fwd``: ``y = op(x, w) [+ b]``, shape ``(N, *S_out, C_out)``.
* ``bwd_d``: ``grad_input = dL/dx`` for the cotangent ``dy`` (:func:`conformance.inputs.cotangent`),
  shape ``(N, *S, C_in)``, judged like an output.
* ``bwd_w``: ``grad_weight = dL/dw``, ``(C_out, *K, C_in/groups)``, and with a bias
  ``grad_bias = dL/db``, ``(C_out,)``: a backend returns both, as a tuple, in that order.

The expected values are the reference's float64 VJPs (:mod:`reference.grad`, proven by their
adjoint identities) with their error-bound inputs: ``terms`` counts every product a gradient
accumulates (over batch *and* positions for the weight, over batch and positions for the bias),
so the usual bound applies as it is.

Judging a gradient (:func:`_diff_view`): no bias rounding term (adding the bias does not touch
any gradient's arithmetic); the weight gradient without group or stride patterns (its axes are
not an output's: in its summary "batch" is the output channel, "position" the kernel tap and
"channel" the input channel in its group); the bias gradient as a one-position output, so the
engine's (batch, position, channel) indexing holds. A ``bwd_w`` record carries the verdict of
its first failing output (``grad_weight`` before ``grad_bias``), its detail named after it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from conformance import diff as D
from conformance.case import Case
from conformance.inputs import Inputs, check_case, run_reference
from reference import grad as RG
from reference.core import ConvResult

_WEIGHT_AXES = (
    "grad_weight is (C_out, *K, C_in/groups): 'batch' is the output channel, 'position' the "
    "kernel tap, 'channel' the input channel in its group"
)


@dataclass(frozen=True)
class Expected:
    """The reference's outputs of one case, by name, in the order a backend returns them."""

    names: tuple[str, ...]
    results: tuple[ConvResult, ...]

    @property
    def first(self) -> ConvResult:
        return self.results[0]


def output_names(case: Case) -> tuple[str, ...]:
    """What a backend returns for ``case``, in order."""
    if case.direction == "fwd":
        return ("output",)
    if case.direction == "bwd_d":
        return ("grad_input",)
    return ("grad_weight", "grad_bias") if case.bias else ("grad_weight",)


def expected(case: Case, inputs: Inputs) -> Expected:
    """The reference's outputs with their bound inputs. Raises ValueError for an invalid case
    (checked as the forward op checks it, with the case's own sizes)."""
    if case.direction == "fwd":
        return Expected(("output",), (run_reference(case, inputs),))
    check_case(case)
    results = gradients(case, inputs.x, inputs.w, inputs.dy, with_bound=True)
    return Expected(output_names(case), tuple(results))  # type: ignore[arg-type]


def gradients(
    case: Case, x: np.ndarray, w: np.ndarray, dy: np.ndarray | None, *, with_bound: bool
) -> list[np.ndarray] | list[ConvResult]:
    """The reference's gradients a backward ``case`` asks for (:func:`output_names`), with
    their bound inputs when ``with_bound``, from the reference's VJPs."""
    assert dy is not None, "a backward case's inputs hold its cotangent"
    kw = {**case.params(), "with_bound": with_bound}
    if case.direction == "bwd_d":
        return [RG.grad_input(case.op, x.shape, w, dy, **kw)]
    grads = [RG.grad_weight(case.op, x, w.shape, dy, **kw)]
    if case.bias:
        grads.append(RG.grad_bias(dy, with_bound=with_bound))
    return grads


def as_outputs(got: object) -> tuple[np.ndarray, ...]:
    """A backend's return value as a tuple of arrays (one array, or a tuple/list of them)."""
    if isinstance(got, (tuple, list)):
        return tuple(np.asarray(a) for a in got)
    return (np.asarray(got),)


def _diff_view(case: Case, name: str, arr: np.ndarray) -> tuple[Case, np.ndarray]:
    """The case and array shape the diff engine judges output ``name`` with."""
    if name == "output":
        return case, arr
    view = replace(case, bias=False)
    if name == "grad_weight":
        view = replace(view, groups=1, stride=(1,) * case.ndim)
    if name == "grad_bias":
        arr = np.asarray(arr).reshape(1, *(1,) * case.ndim, -1)
    return view, arr


def _judge_one(case: Case, name: str, got: np.ndarray, ref: ConvResult, tol: D.Tolerance) -> D.Diff:
    view, got_v = _diff_view(case, name, got)
    if name == "grad_bias":
        if got.shape != ref.out.shape:
            return D.Diff(
                D.SHAPE_MISMATCH,
                detail=f"shape {tuple(got.shape)} but the reference has {ref.out.shape}",
            )
        ref = ConvResult(*(_diff_view(case, name, a)[1] for a in (ref.out, ref.abs_sum, ref.terms)))
    result = D.compare(view, got_v, ref, tol)
    if name == "grad_weight" and D.is_failure(result.verdict):
        result = replace(result, detail=f"{result.detail} ({_WEIGHT_AXES})")
    return result


def judge(case: Case, got: object, want: Expected, tol: D.Tolerance = D.Tolerance()) -> D.Diff:
    """The verdict on a backend's outputs for ``case`` (see the module docstring)."""
    outputs = as_outputs(got)
    if len(outputs) != len(want.names):
        return D.Diff(
            D.SHAPE_MISMATCH,
            detail=f"returned {len(outputs)} array(s) for {case.direction}; expected "
            f"{len(want.names)}: {', '.join(want.names)}",
        )
    diffs = [
        _judge_one(case, name, out, ref, tol)
        for name, out, ref in zip(want.names, outputs, want.results)
    ]
    if len(diffs) == 1:
        return diffs[0]
    for name, diff in zip(want.names, diffs):
        if D.is_failure(diff.verdict):
            return replace(diff, detail=f"{name}: {diff.detail}")
    return max(diffs, key=_largest_ratio)


def _largest_ratio(diff: D.Diff) -> float:
    return diff.metrics.max_error_over_bound if diff.metrics is not None else 0.0


@dataclass(frozen=True)
class Adjoint:
    """A ``bwd_d`` case as a forward one: the input gradient of a convolution is the transposed
    convolution of ``dy`` with the regrouped weight (:func:`reference.grad.regroup_weight`,
    channels' roles swapped), same stride, padding and dilation, and the output padding that
    gives back the input's size; that of a transposed convolution is the convolution of ``dy``
    the same way, its first ``S`` positions per axis (with output padding >= stride the forward
    convolution reaches further: those extra positions are no input's). A forward-only kernel
    runs ``case`` on ``dy`` and :meth:`weight` with no bias, then :meth:`crop`."""

    case: Case
    spatial: tuple[int, ...]

    def weight(self, w: np.ndarray, groups: int) -> np.ndarray:
        return RG.regroup_weight(np.asarray(w), groups)

    def crop(self, out: np.ndarray) -> np.ndarray:
        return out[(slice(None), *(slice(0, n) for n in self.spatial), slice(None))]


def adjoint(case: Case) -> Adjoint:
    """The forward case whose output is ``case``'s input gradient (``case`` valid, one of the six
    ops; any direction: the kernels' ``bwd_w`` also runs on its geometry)."""
    out_spatial = check_case(case)[1:-1]
    nd = case.ndim
    if case.transposed:
        op, output_padding = f"conv{nd}d", (0,) * nd
    else:
        op = f"conv_transpose{nd}d"
        output_padding = tuple(
            (n + 2 * p - d * (k - 1) - 1) % s
            for n, p, d, k, s in zip(
                case.spatial, case.padding, case.dilation, case.kernel, case.stride
            )
        )
    forward = replace(
        case,
        op=op,
        in_channels=case.out_channels,
        out_channels=case.in_channels,
        spatial=out_spatial,
        output_padding=output_padding,
        bias=False,
        direction="fwd",
        layout="contiguous",
    )
    return Adjoint(forward, case.spatial)
