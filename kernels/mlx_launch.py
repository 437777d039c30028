"""The GPU dialects: launch the kernel bodies through ``mx.fast.cuda_kernel`` (CUDA) and
``mx.fast.metal_kernel`` (Metal).

Both paths are the same code with a different ``mx.fast`` constructor: same input names
(:func:`kernels.source.input_names`: ``x, w, bias, params`` forward, ``x, dy, params`` for the
weight gradient), same header (parameter slots + the dialect's prelude), same source
(the dialect's entry line, the tile size, the body), one template argument ``T`` (the element
type), a 1-D grid of the plan's threads in threadgroups of :data:`THREADGROUP`. MLX compiles each
(kernel, tile, dtype) once per process and caches it; the parameters are data, so no shape
recompiles.

A case without bias passes a one-element dummy bias that the body never reads. :func:`run` runs
a forward plan, :func:`run_weight_grad` a weight-gradient one.
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
        input_names=list(source.input_names(op)),
        output_names=list(source.OUTPUT_NAMES),
        source=source.kernel_source(dialect, op, tile),
        header=source.header(dialect),
        ensure_row_contiguous=True,
    )


def device_inputs(plan: Plan, dtype: str, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None):
    """The launch's inputs as MLX arrays of ``dtype`` (evaluated, so on the device): x, w, bias
    (a one-element dummy when the case has none) and the int32 parameters."""
    b = bias if bias is not None else np.zeros(1, np.float32)
    return _device_arrays(plan, dtype, [x, w, b])


def _device_arrays(plan: Plan, dtype: str, arrays: list[np.ndarray]) -> list:
    """``arrays`` as evaluated MLX arrays of ``dtype``, then the int32 parameters."""
    mx = import_mlx()
    dt = _dtype(mx, dtype)
    # float32 -> float16/bfloat16 is exact: the harness's inputs are exact in the case dtype.
    out = [mx.array(np.ascontiguousarray(a, np.float32)).astype(dt) for a in arrays]
    out.append(mx.array(np.ascontiguousarray(plan.params, np.int32)))
    mx.eval(*out)
    return out


def launch(dialect: str, plan: Plan, inputs: list, *, verbose: bool = False):
    """Enqueue the kernel on device-resident ``inputs`` (from :func:`device_inputs`, or the
    weight gradient's x, dy, params); returns the output as a lazy MLX array of the inputs'
    dtype (``mx.eval`` runs it)."""
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
    """Run one planned forward case on the GPU; returns float32 values of ``dtype``, MLX
    layout."""
    if plan.total == 0:
        return np.zeros(plan.out_shape, np.float32)
    return _fetch(launch(dialect, plan, device_inputs(plan, dtype, x, w, bias), verbose=verbose))


def run_weight_grad(
    dialect: str,
    plan: Plan,
    dtype: str,
    x: np.ndarray,
    dy: np.ndarray,
    *,
    verbose: bool = False,
) -> np.ndarray:
    """Run one planned weight gradient (:func:`kernels.plan.make_weight_grad_plan`) of input
    ``x`` and cotangent ``dy`` on the GPU; returns float32 values of ``dtype``."""
    if plan.total == 0 or x.size == 0 or dy.size == 0:  # an empty sum: nothing to launch
        return np.zeros(plan.out_shape, np.float32)
    return _fetch(launch(dialect, plan, _device_arrays(plan, dtype, [x, dy]), verbose=verbose))


def _fetch(out) -> np.ndarray:
    mx = import_mlx()
    out = out.astype(mx.float32)
    mx.eval(out)
    return np.array(out, copy=True)
