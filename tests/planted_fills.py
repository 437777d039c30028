"""Backends with planted bugs that only the non-uniform input fills show (``tests/test_fills.py``;
``--plugin tests.planted_fills:BACKENDS``).

Uniform inputs (:func:`conformance.inputs.make_inputs`) never hold an exact zero, NaN, infinity,
-0 or subnormal, and their results are never exact, so a kernel that breaks on one of those passes
every uniform case: the ``sparse``, ``special`` and ``int`` fills expose them.
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs, reference_output
from reference.params import PADDING_MODES
from reference.special import flush_subnormals


class NanOnZeroInput(Backend):
    """The reference result, correctly rounded, but NaN at every output element whose receptive
    field holds an input element that is exactly 0 (as a kernel that divides by, or takes the log
    of, its inputs somewhere would). Runs every op."""

    name = "planted-nan-zero"
    padding_modes = PADDING_MODES  # the reference's own numbers for them
    description = "NaN wherever an input element in the receptive field is 0 (planted bug)"

    def probe(self) -> Availability:
        return Availability(True, "planted bug (test only)")

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = reference_output(case, inputs.x, inputs.w, inputs.bias, with_bound=False)
        # The op on the zero indicator with an all-ones weight counts, per output element, the
        # zero inputs its taps read (within its group).
        zeros = (inputs.x == 0).astype(np.float64)
        hits = reference_output(case, zeros, np.ones(inputs.w.shape), None, with_bound=False)
        return round_to(np.where(hits > 0, np.nan, out), case.dtype)


class _Corrupted(Backend):
    """The reference result with one planted bug on top; runs every op."""

    padding_modes = PADDING_MODES  # the reference's own numbers for them

    def probe(self) -> Availability:
        return Availability(True, "planted bug (test only)")

    def reference(self, case: Case, x, w, bias) -> np.ndarray:
        return np.asarray(reference_output(case, x, w, bias, with_bound=False))


class FlushesSubnormals(_Corrupted):
    """Runs with denormals-are-zero and flush-to-zero: subnormal inputs and results (below
    float32's normal range) are read and written as zeros, as a CPU with DAZ/FTZ set (XLA's CPU
    backend does) or a GPU kernel compiled with flush-to-zero would. So a subnormal times an
    infinity is NaN, not an infinity, and a subnormal result is 0."""

    name = "planted-daz"
    description = "reads and writes subnormals as zero (DAZ/FTZ; planted bug)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        x, w, b = (flush_subnormals(a) for a in (inputs.x, inputs.w, inputs.bias))
        with np.errstate(invalid="ignore"):
            return round_to(flush_subnormals(self.reference(case, x, w, b)), case.dtype)


class SquashesNaN(_Corrupted):
    """Returns 0 where the result is NaN, as an epilogue built on fmax (a fused ReLU or clamp:
    ``fmax(NaN, 0)`` is 0) or a "safe" kernel that scrubs NaN would."""

    name = "planted-nan-squash"
    description = "NaN results become 0 (planted bug)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = self.reference(case, inputs.x, inputs.w, inputs.bias)
        return round_to(np.where(np.isnan(out), 0.0, out), case.dtype)


class NegatedSum(_Corrupted):
    """Computes ``-conv(x, -w) - (-b)``: the same values, but an exact zero from cancelling terms
    comes out -0 instead of +0 (a kernel that negates its weights once to share code with
    another op would)."""

    name = "planted-neg-zero"
    description = "exact zero sums come out -0 (planted bug)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        b = None if inputs.bias is None else -inputs.bias
        out = -self.reference(case, inputs.x, -inputs.w, b)
        return round_to(out, case.dtype)


BACKENDS = [NanOnZeroInput, FlushesSubnormals, SquashesNaN, NegatedSum]
