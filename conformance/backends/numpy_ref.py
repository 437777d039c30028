"""``numpy-ref``: the reference itself as a backend, correctly rounded to the case dtype.

It checks the plumbing end to end (inputs, layouts, diffing) and is the yardstick for timing; its
errors are at most half an ULP of the case dtype. Every direction: the backward ones are the
reference's VJPs (:mod:`reference.grad`), rounded once.
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend, gradients_for
from conformance.case import DIRECTIONS, Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs
from reference import grad as RG
from reference.ops import run_op


class NumpyReference(Backend):
    name = "numpy-ref"
    description = "float64 NumPy reference, rounded to the case dtype"
    directions = DIRECTIONS

    def probe(self) -> Availability:
        return Availability(True, "NumPy on the host CPU", {"numpy": np.__version__})

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        if case.direction == "fwd":
            out = run_op(
                case.op,
                case.ndim,
                case.transposed,
                inputs.x,
                inputs.w,
                inputs.bias,
                **case.params(),
            )
            return round_to(out, case.dtype)
        g = RG.vjp(case.op, inputs.x, inputs.w, inputs.dy, bias=case.bias, **case.params())
        grads = [g.input.out, g.weight.out] + ([g.bias.out] if g.bias is not None else [])
        return gradients_for(case, [round_to(a, case.dtype) for a in grads])
