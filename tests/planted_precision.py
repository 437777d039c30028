"""Backends with planted precision bugs: errors within the proven bound that the statistical
tier (:mod:`conformance.precision`) must catch. ``--plugin tests.planted_precision:BACKENDS``.

* ``planted-tf32``: float32 inputs rounded to TF32 (10-bit mantissa) before the products, float32
  accumulation: what a GPU kernel with TF32 tensor cores left on does. float16 and bfloat16
  inputs are exact in TF32, so those cases are right.
* ``planted-one-bad``: the correct output with its last element 1000 ulps (of the case dtype)
  off: a race or a tail loop that clobbers one element.
* ``planted-f16-acc``: each kernel tap's products summed in float32, the taps' partial sums
  added in float16 (a kernel accumulating in its input dtype; beyond 16 taps, runs of
  consecutive taps share a partial sum); one-tap cases are right.
"""

from __future__ import annotations

import math

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs, reference_output
from reference.params import PADDING_MODES

#: Mantissa bits of each case dtype (for "1000 ulps").
MANTISSA_BITS = {"float32": 23, "float16": 10, "bfloat16": 7}


def round_to_tf32(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to nearest-even with a 10-bit mantissa (TF32), as float32."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    keep = bits + np.uint32(0xFFF) + ((bits >> np.uint32(13)) & np.uint32(1))
    return (keep & np.uint32(0xFFFFE000)).view(np.float32)


class _PlantedPrecision(Backend):
    padding_modes = PADDING_MODES  # the reference's own numbers for them

    def probe(self) -> Availability:
        return Availability(True, "planted precision bug (test only)")

    def reference(self, case: Case, x, w, bias, **kw) -> np.ndarray:
        return reference_output(case, x, w, bias, **kw)


class Tf32Inputs(_PlantedPrecision):
    name = "planted-tf32"
    description = "inputs rounded to TF32, float32 accumulation (test only)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        x, w = round_to_tf32(inputs.x), round_to_tf32(inputs.w)
        # Per tap, like the correct float32 alternative it is compared with (calibration).
        out = self.reference(
            case, x, w, inputs.bias, compute_dtype=np.float32, formulation="per-tap"
        )
        return round_to(out, case.dtype)


class OneBadElement(_PlantedPrecision):
    name = "planted-one-bad"
    description = "the last output element 1000 ulps off (test only)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = round_to(self.reference(case, inputs.x, inputs.w, inputs.bias), case.dtype)
        if out.size:
            flat = out.reshape(-1)
            v = float(flat[-1])
            exponent = math.frexp(v)[1] - 1 if v else -126
            ulp = 2.0 ** (exponent - MANTISSA_BITS[case.dtype])
            flat[-1] = round_to(np.array([v + 1000 * ulp]), case.dtype)[0]
        return out


#: Float16Accumulation adds at most this many partial sums in float16 (consecutive taps share
#: one float32 partial sum beyond it), so a 7x7x7 kernel costs 16 reference calls, not 343.
MAX_PARTIALS = 16


class Float16Accumulation(_PlantedPrecision):
    name = "planted-f16-acc"
    description = "taps' partial sums added in float16 (test only)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        taps = math.prod(case.kernel)
        chunks = np.array_split(np.arange(taps), min(taps, MAX_PARTIALS))
        acc: np.ndarray | None = None
        for chunk in chunks:
            # The weight with every tap outside the chunk zeroed: the chunk's products, summed
            # over channels in float32.
            w = np.zeros_like(inputs.w)
            for t in chunk:
                index = (slice(None), *np.unravel_index(int(t), case.kernel), slice(None))
                w[index] = inputs.w[index]
            part = self.reference(case, inputs.x, w, None, compute_dtype=np.float32)
            part16 = part.astype(np.float16)
            acc = part16 if acc is None else (acc + part16).astype(np.float16)
        assert acc is not None
        if inputs.bias is not None:
            acc = (acc + inputs.bias.astype(np.float16)).astype(np.float16)
        return round_to(acc.astype(np.float64), case.dtype)


BACKENDS = [Tf32Inputs, OneBadElement, Float16Accumulation]


class Float64InFloat32(_PlantedPrecision):
    """A float64 conv computed in float32 (inputs rounded to float32, float32 accumulation) and
    returned as float64: what a backend that silently downcasts does."""

    name = "planted-f64-as-f32"
    description = "float64 cases computed in float32 (test only)"
    dtypes = ("float32", "float64")

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        x, w = inputs.x.astype(np.float32), inputs.w.astype(np.float32)
        bias = None if inputs.bias is None else inputs.bias.astype(np.float32)
        out = self.reference(case, x, w, bias, compute_dtype=np.float32, formulation="per-tap")
        return np.asarray(out, np.float32).astype(
            np.float64 if case.dtype == "float64" else np.float32
        )
