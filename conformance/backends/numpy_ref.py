"""``numpy-ref``: the reference itself as a backend, correctly rounded to the case dtype.

It checks the plumbing end to end (inputs, layouts, diffing) and is the yardstick for timing; its
errors are at most half an ULP of the case dtype. Every direction: the backward ones are the
reference's VJPs (:mod:`reference.grad`), rounded once. Every input layout: the reference reads
the NumPy view (an unbatched input gets its batch axis back as a view too).
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import ALL_OPS, DIRECTIONS, Case
from conformance.directions import gradients
from conformance.dtypes import ALL_DTYPES, round_to
from conformance.inputs import Inputs, reference_output
from conformance.layouts import LAYOUTS, NUMPY, batched, laid_out
from reference.params import PADDING_MODES


class NumpyReference(Backend):
    name = "numpy-ref"
    description = "float64 NumPy reference, rounded to the case dtype"
    directions = DIRECTIONS
    layouts = LAYOUTS
    ops = tuple(ALL_OPS)
    padding_modes = PADDING_MODES
    dtypes = ALL_DTYPES

    def probe(self) -> Availability:
        return Availability(True, "NumPy on the host CPU", {"numpy": np.__version__})

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        x = batched(case.layout, laid_out(case.layout, inputs.x, NUMPY))
        if case.direction == "fwd":
            out = reference_output(case, x, inputs.w, inputs.bias, with_bound=False)
            return round_to(out, case.dtype)  # type: ignore[arg-type]
        dy = inputs.dy
        if dy is not None and case.layout == "unbatched":
            dy = batched(case.layout, dy[0])
        grads = gradients(case, x, inputs.w, dy, with_bound=False)
        rounded = [round_to(g, case.dtype) for g in grads]  # type: ignore[arg-type]
        return tuple(rounded) if len(rounded) > 1 else rounded[0]
