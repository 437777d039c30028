"""The GPU dialects: launch the kernel bodies through ``mx.fast.cuda_kernel`` (CUDA) and
``mx.fast.metal_kernel`` (Metal).

Both paths are the same code with a different ``mx.fast`` constructor: same input names
(``x, w, bias, params``), same header (parameter slots + the dialect's prelude), same source
(the dialect's entry line, the tile size, the body), one template argument ``T`` (the element
type), a 1-D grid of the plan's threads in threadgroups of :data:`THREADGROUP`. MLX compiles each
(kernel, tile, dtype) once per process and caches it; the parameters are data, so no shape
recompiles.

A case without bias passes a one-element dummy bias that the body never reads.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from kernels import source
from kernels.plan import Plan

THREADGROUP = 256


def import_mlx():
    import mlx.core as mx

    return mx


def _dtype(mx, dtype: str):
    return {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}[dtype]


@cache
def kernel(dialect: str, op: str, tile: int):
    """The ``mx.fast`` kernel object for ``op`` with ``tile`` output channels per thread in
    ``dialect`` ("cuda" or "metal")."""
    mx = import_mlx()
    factory = {"cuda": mx.fast.cuda_kernel, "metal": mx.fast.metal_kernel}[dialect]
    return factory(
        name=source.kernel_name(op, tile),
        input_names=list(source.INPUT_NAMES),
        output_names=list(source.OUTPUT_NAMES),
        source=source.kernel_source(dialect, op, tile),
        header=source.header(dialect),
        ensure_row_contiguous=True,
    )


def device_inputs(plan: Plan, dtype: str, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None):
    """The launch's inputs as MLX arrays of ``dtype`` (evaluated, so on the device): x, w, bias
    (a one-element dummy when the case has none) and the int32 parameters."""
    mx = import_mlx()
    dt = _dtype(mx, dtype)
    # float32 -> float16/bfloat16 is exact: the harness's inputs are exact in the case dtype.
    xa = mx.array(np.ascontiguousarray(x, np.float32)).astype(dt)
    wa = mx.array(np.ascontiguousarray(w, np.float32)).astype(dt)
    ba = (
        mx.array(np.ascontiguousarray(bias, np.float32)).astype(dt)
        if bias is not None
        else mx.zeros((1,), dtype=dt)
    )
    pa = mx.array(np.ascontiguousarray(plan.params, np.int32))
    mx.eval(xa, wa, ba, pa)
    return [xa, wa, ba, pa]


def launch(dialect: str, plan: Plan, inputs: list, *, verbose: bool = False):
    """Enqueue the kernel on device-resident ``inputs`` (from :func:`device_inputs`); returns
    the output as a lazy MLX array of the inputs' dtype (``mx.eval`` runs it)."""
    mx = import_mlx()
    dt = inputs[0].dtype
    (out,) = kernel(dialect, plan.op, plan.tile)(
        inputs=inputs,
        template=[("T", dt)],
        grid=(plan.threads, 1, 1),
        threadgroup=(THREADGROUP, 1, 1),
        output_shapes=[plan.out_shape],
        output_dtypes=[dt],
        verbose=verbose,
        stream=mx.gpu,
    )
    return out


def run(
    dialect: str,
    plan: Plan,
    dtype: str,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    *,
    verbose: bool = False,
) -> np.ndarray:
    """Run one planned case on the GPU; returns float32 values of ``dtype``, MLX layout."""
    mx = import_mlx()
    if plan.total == 0:
        return np.zeros(plan.out_shape, np.float32)
    out = launch(dialect, plan, device_inputs(plan, dtype, x, w, bias), verbose=verbose)
    out = out.astype(mx.float32)
    mx.eval(out)
    return np.array(out, copy=True)
