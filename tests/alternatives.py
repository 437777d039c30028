"""Correct implementations with other summation orders: the harness must pass every one of them.

They calibrate the diff engine's statistical tier (:mod:`conformance.precision`): each computes
in float32, as a float32 kernel does, from the same inputs, in its own order of products and
sums, and rounds once to the case dtype (float32 accumulation for float16 and bfloat16 inputs).
Load them as plugins: ``--plugin tests.alternatives:BACKENDS`` (``nox -s calibrate``).

* ``alt-f32-per-tap``: one float32 matrix product per kernel tap (inner dimension
  ``C_in/groups``), added tap by tap;
* ``alt-f32-im2col``: one float32 product over all taps at once (inner dimension
  ``taps * C_in/groups``), the order of a GEMM-lowered convolution;
* ``alt-f32-split``: the input channels in two halves, each half per tap in float32, the two
  partial outputs added in float32 (a split-K kernel); groups of one channel fall back to
  per-tap.
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs
from reference.ops import run_op


class _Float32(Backend):
    formulation = "per-tap"

    def probe(self) -> Availability:
        return Availability(True, "float32 NumPy (test only: a correct alternative order)")

    def float32(self, case: Case, x: np.ndarray, w: np.ndarray, bias) -> np.ndarray:
        return run_op(
            case.op,
            case.ndim,
            case.transposed,
            x,
            w,
            bias,
            formulation=self.formulation,
            compute_dtype=np.float32,
            **case.params(),
        )

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        return round_to(self.float32(case, inputs.x, inputs.w, inputs.bias), case.dtype)


class Float32PerTap(_Float32):
    name = "alt-f32-per-tap"
    description = "float32, one product per kernel tap (test only)"


class Float32Im2col(_Float32):
    name = "alt-f32-im2col"
    description = "float32, one product over all taps (test only)"
    formulation = "im2col"


class Float32ChannelSplit(_Float32):
    name = "alt-f32-split"
    description = "float32, input channels in two halves summed at the end (test only)"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        g = case.groups
        c_in_g = case.in_channels // g if g > 0 else 0
        if c_in_g < 2:
            return super().run(case, inputs)
        half = c_in_g // 2
        # Per group, the first ``half`` input channels and the rest; the weight's last axis
        # holds a group's input channels.
        x = inputs.x.reshape(*inputs.x.shape[:-1], g, c_in_g)
        lo_x = np.ascontiguousarray(x[..., :half]).reshape(*x.shape[:-2], g * half)
        hi_x = np.ascontiguousarray(x[..., half:]).reshape(*x.shape[:-2], g * (c_in_g - half))
        lo = self.float32(case, lo_x, np.ascontiguousarray(inputs.w[..., :half]), inputs.bias)
        hi = self.float32(case, hi_x, np.ascontiguousarray(inputs.w[..., half:]), None)
        return round_to(lo + hi, case.dtype)  # float32 + float32: one more float32 rounding


BACKENDS = [Float32PerTap, Float32Im2col, Float32ChannelSplit]
