"""``numpy-ref``: the reference itself as a backend, correctly rounded to the case dtype.

It checks the plumbing end to end (inputs, layouts, diffing) and is the yardstick for timing; its
errors are at most half an ULP of the case dtype.
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs
from reference.ops import run_op


class NumpyReference(Backend):
    name = "numpy-ref"
    description = "float64 NumPy reference, rounded to the case dtype"

    def probe(self) -> Availability:
        return Availability(True, "NumPy on the host CPU", {"numpy": np.__version__})

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = run_op(
            case.op, case.ndim, case.transposed, inputs.x, inputs.w, inputs.bias, **case.params()
        )
        return round_to(out, case.dtype)
