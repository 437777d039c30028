"""A complete convcheck backend: a direct convolution in NumPy with float32 accumulation.

This is the example README.md's "Adding a backend" walks through. It implements all six ops
(conv1d/2d/3d with bias, conv_transpose1d/2d/3d) with every parameter, on its own: nothing from
``reference/``. Run it with::

    python -m conformance run --plugin examples.direct_conv_backend:DirectConv \\
        --backends direct-conv --max-examples 20

Everything is in the harness's (MLX's) layout: input ``(N, *spatial, C_in)``, weight
``(C_out, *kernel, C_in/groups)`` for conv *and* conv_transpose, output ``(N, *out, C_out)``.
Inputs arrive as float32 arrays whose values are exact in ``case.dtype``; the output must be in
that dtype, returned as a NumPy array (float32 holding values of the case dtype is fine).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from conformance.backends import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs

#: Multiply-adds above which a case is left out: the per-tap loop below is not fast.
MAX_MACS = 2e8


class DirectConv(Backend):
    name = "direct-conv"
    description = "example: direct NumPy convolution, float32 accumulation (examples/)"

    def probe(self) -> Availability:
        # Import the library and look for the device here; never run a case.
        return Availability(True, "NumPy on the host CPU", {"numpy": np.__version__})

    def unsupported_reason(self, case: Case) -> str | None:
        # Only documented limitations: a case named here is verdict "unsupported", not a failure.
        per_position = case.out_channels * math.prod(case.kernel) * case.in_channels
        macs = case.batch * math.prod(case.spatial) * per_position / max(case.groups, 1)
        if macs > MAX_MACS:
            return f"about {macs:.1e} multiply-adds: more than this example's {MAX_MACS:.0e}"
        return None

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        check(case)  # an invalid case must raise, like the library under test would
        x, w = inputs.x.astype(np.float32), inputs.w.astype(np.float32)
        if case.transposed:
            out = conv_transpose(x, w, case)
        else:
            out = conv(x, w, case)
        if inputs.bias is not None:
            out += inputs.bias.astype(np.float32)
        return round_to(out, case.dtype)  # one rounding from float32 to the case dtype


def check(case: Case) -> None:
    """Reject what is not a convolution, as a library would: ValueError with the reason."""
    for name in ("stride", "dilation", "kernel", "spatial"):
        if min(getattr(case, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(case, name)}")
    if min(case.padding) < 0 or min(case.output_padding) < 0:
        raise ValueError("padding and output_padding must be >= 0")
    g = case.groups
    if g < 1 or min(case.in_channels, case.out_channels) < 1 or case.batch < 0:
        raise ValueError("groups and channel counts must be >= 1, the batch >= 0")
    if case.in_channels % g or case.out_channels % g:
        raise ValueError(f"groups ({g}) must divide the input and output channels")
    for o, s, d in zip(case.output_padding, case.stride, case.dilation):
        if o >= max(s, d):
            raise ValueError(f"output_padding {o} must be smaller than max(stride, dilation)")
    if min(out_size(case, i) for i in range(case.ndim)) < 1:
        raise ValueError("the kernel's extent exceeds the padded input: empty output")


def out_size(case: Case, i: int) -> int:
    s, k = case.spatial[i], case.kernel[i]
    st, p, d = case.stride[i], case.padding[i], case.dilation[i]
    if case.transposed:
        return (s - 1) * st - 2 * p + d * (k - 1) + case.output_padding[i] + 1
    return (s + 2 * p - d * (k - 1) - 1) // st + 1


def grouped_matmul(x: np.ndarray, w_tap: np.ndarray, groups: int) -> np.ndarray:
    """(..., C_in) x (C_out, C_in/groups) -> (..., C_out), per group, in float32 (BLAS sgemm)."""
    c_out, c_in_g = w_tap.shape
    xg = x.reshape(-1, groups, c_in_g).transpose(1, 0, 2)  # (G, M, C_in/g)
    wg = w_tap.reshape(groups, c_out // groups, c_in_g).transpose(0, 2, 1)  # (G, C_in/g, C_out/g)
    y = np.matmul(xg, wg)  # (G, M, C_out/g)
    return y.transpose(1, 0, 2).reshape(*x.shape[:-1], c_out)


def conv(x: np.ndarray, w: np.ndarray, case: Case) -> np.ndarray:
    """out[n, o, co] = sum over taps k and channels of x_padded[n, o*stride + k*dilation, ci]
    * w[co, k, ci]: one grouped matmul per kernel tap, summed in float32."""
    nd = case.ndim
    outs = [out_size(case, i) for i in range(nd)]
    xp = np.pad(x, [(0, 0), *[(p, p) for p in case.padding], (0, 0)])
    out = np.zeros((case.batch, *outs, case.out_channels), np.float32)
    for tap in itertools.product(*(range(k) for k in case.kernel)):
        window = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, case.dilation, outs, case.stride)
        )
        out += grouped_matmul(xp[(slice(None), *window)], w[(slice(None), *tap)], case.groups)
    return out


def conv_transpose(x: np.ndarray, w: np.ndarray, case: Case) -> np.ndarray:
    """The adjoint of conv: each input position i scatters x[n, i, ci] * w[co, k, ci] to output
    position i*stride + k*dilation - padding (no kernel flip in this layout). Built on a canvas
    without the padding crop, which is cut off at the end."""
    full = [
        (s - 1) * st + d * (k - 1) + 1 + op
        for s, st, d, k, op in zip(
            case.spatial, case.stride, case.dilation, case.kernel, case.output_padding
        )
    ]
    canvas = np.zeros((case.batch, *full, case.out_channels), np.float32)
    for tap in itertools.product(*(range(k) for k in case.kernel)):
        target = tuple(
            slice(t * d, t * d + (s - 1) * st + 1, st)
            for t, d, s, st in zip(tap, case.dilation, case.spatial, case.stride)
        )
        canvas[(slice(None), *target)] += grouped_matmul(x, w[(slice(None), *tap)], case.groups)
    crop = tuple(slice(p, p + out_size(case, i)) for i, p in enumerate(case.padding))
    return canvas[(slice(None), *crop)]
