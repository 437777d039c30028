"""MLX adapters: ``mlx-cpu`` and ``mlx-gpu`` (Metal on Apple silicon, CUDA on NVIDIA).

MLX's layout is the harness's own, so no translation is needed: input ``(N, *S, C_in)``, weight
``(C_out, *K, C_in/g)`` for both ``conv*`` and ``conv_transpose*``. MLX's conv ops take no bias;
the adapter adds it after the convolution, as ``mlx.nn.Conv1d`` does. Backward directions:
``mx.vjp`` of the op plus the bias add, in the case dtype.

Input layouts (:mod:`conformance.layouts`): the input reaches the op as a strided slice
(``a[1:, ..., ::2]``), a permuted view (``mx.swapaxes`` of an array stored with its last two axes
swapped) or an expanded one (``mx.broadcast_to`` of one sample); MLX's conv ops need a batch
axis, so ``unbatched`` is unsupported.

The general convolutions (``conv_general1d/2d/3d`` cases) run ``mx.conv_general`` with the
case's low and high padding pair, kernel and input dilation, groups and flip (forward only).

MLX's CUDA backend caches one cuDNN plan per conv shape and raises once the cache is full, so
``MLX_CUDA_CONV_CACHE_SIZE`` is raised (unless already set) before MLX is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from conformance.backends.base import Availability, Backend, gradients_for
from conformance.case import ALL_OPS, DIRECTIONS, Case
from conformance.inputs import Inputs
from conformance.layouts import Views, laid_out

CONV_CACHE_SIZE = "1000000"


def _import_mlx():
    os.environ.setdefault("MLX_CUDA_CONV_CACHE_SIZE", CONV_CACHE_SIZE)
    import mlx.core as mx

    return mx


def _gpu_kind(mx) -> str | None:
    if getattr(mx, "metal", None) is not None and mx.metal.is_available():
        return "Metal"
    if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
        return "CUDA"
    return None


class MLXBackend(Backend):
    padding_mode_note = (
        "MLX's conv functions and layers take integer padding only (asymmetric padding is "
        "conv_general's, checked by the conv_general ops)"
    )

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"mlx-{device}"
        self.description = f"mlx.core conv ops on the {device.upper()} stream"
        self.directions = DIRECTIONS
        self.ops = tuple(ALL_OPS)
        self.layouts = ("contiguous", "strided", "permuted", "expanded")
        self.layout_note = "MLX conv ops need a batch axis"

    def probe(self) -> Availability:
        try:
            mx = _import_mlx()
        except ImportError as exc:
            return Availability(False, f"MLX is not installed ({exc})")
        versions = {"mlx": mx.__version__}
        if self.device == "gpu":
            kind = _gpu_kind(mx)
            if kind is None:
                return Availability(
                    False, "MLX has no GPU backend here (needs Metal or CUDA)", versions
                )
            return Availability(True, f"MLX GPU ({kind})", versions)
        return Availability(True, "MLX CPU backend", versions)

    def unsupported_reason(self, case: Case) -> str | None:
        if case.ndim == 3 and case.groups > 1:
            return "MLX supports groups != 1 only in 1-D and 2-D convolutions"
        return None

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        """The case through :meth:`_callable`, on the backend's stream in the case dtype:
        forward the call's output; backward ``mx.vjp`` of the call with respect to the input and
        every parameter at once. Results as float32 NumPy arrays in MLX layout."""
        mx = _import_mlx()
        stream = mx.gpu if self.device == "gpu" else mx.cpu
        dt = mlx_dtype(mx, case.dtype)
        views = Views(
            lambda a: mx.array(a).astype(dt),
            lambda a: mx.swapaxes(a, -1, -2),
            lambda a, shape: mx.broadcast_to(a, shape),
        )
        with mx.stream(stream):
            x = laid_out(case.layout, inputs.x, views)
            call, params = self._callable(mx, case, inputs, dt, stream)
            if case.direction == "fwd":
                y = call(x, *params).astype(mx.float32)
                mx.eval(y)
                return np.array(y)
            _, grads = mx.vjp(call, [x, *params], [mx.array(inputs.dy).astype(dt)])
            grads = [g.astype(mx.float32) for g in grads]
            mx.eval(grads)
        return gradients_for(case, [np.array(g) for g in grads])

    def _callable(self, mx, case: Case, inputs: Inputs, dt, stream) -> tuple[Callable, list]:
        """What the case calls, as a function of the input, the weight and (with one) the bias,
        and those parameters' values: here the ``mlx.core`` op plus the bias add."""
        w = mx.array(inputs.w).astype(dt)
        params = [w] + ([mx.array(inputs.bias).astype(dt)] if inputs.bias is not None else [])

        def call(x, w, *b):
            return forward(mx, case, x, w, b[0] if b else None, stream=stream)

        return call, params


def mlx_dtype(mx, dtype: str):
    return {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}[dtype]


def forward(mx, case: Case, x, w, bias, *, stream=None):
    """``case``'s op on MLX arrays (MLX layout), bias added after the op as ``mlx.nn`` does;
    returns the lazy result. ``stream``: None for MLX's default device."""
    if case.general:
        y = mx.conv_general(
            x,
            w,
            stride=list(case.stride),
            padding=(list(case.padding), list(case.padding_hi)),
            kernel_dilation=list(case.dilation),
            input_dilation=list(case.input_dilation),
            groups=case.groups,
            flip=case.flip,
            stream=stream,
        )
        return y if bias is None else mx.add(y, bias, stream=stream)
    kw = case.params()
    if case.ndim == 1:  # mlx's 1-D ops take ints, not 1-tuples
        kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    y = getattr(mx, case.op)(x, w, stream=stream, **kw)
    if bias is not None:
        y = mx.add(y, bias, stream=stream)
    return y
