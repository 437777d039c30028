"""Backends with planted bugs that only the non-uniform input fills show (``tests/test_fills.py``;
``--plugin tests.planted_fills:BACKENDS``).

Uniform inputs (:func:`conformance.inputs.make_inputs`) never hold an exact zero, so a kernel that
breaks on one passes every uniform case; the ``sparse`` fill exposes it.
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs
from reference.ops import run_op


class NanOnZeroInput(Backend):
    """The reference result, correctly rounded, but NaN at every output element whose receptive
    field holds an input element that is exactly 0 (as a kernel that divides by, or takes the log
    of, its inputs somewhere would). Runs every op."""

    name = "planted-nan-zero"
    description = "NaN wherever an input element in the receptive field is 0 (planted bug)"

    def probe(self) -> Availability:
        return Availability(True, "planted bug (test only)")

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        kw = case.params()
        out = run_op(case.op, case.ndim, case.transposed, inputs.x, inputs.w, inputs.bias, **kw)
        # The op on the zero indicator with an all-ones weight counts, per output element, the
        # zero inputs its taps read (within its group).
        zeros = (inputs.x == 0).astype(np.float64)
        hits = run_op(
            case.op, case.ndim, case.transposed, zeros, np.ones(inputs.w.shape), None, **kw
        )
        return round_to(np.where(hits > 0, np.nan, out), case.dtype)


BACKENDS = [NanOnZeroInput]
