"""JAX adapters: ``jax-cpu`` (XLA's CPU backend) and ``jax-cuda`` (XLA on an NVIDIA GPU).

The ops a JAX user calls:

* ``conv*d``: ``jax.lax.conv_general_dilated`` with ``rhs_dilation``, ``feature_group_count``
  and explicit ``(low, high)`` padding pairs (a ``psame`` / ``pvalid`` case: ``'SAME'`` /
  ``'VALID'``, lax's own padding strings);
* ``conv_transpose*d`` with ``groups == 1``: ``jax.lax.conv_transpose`` in PyTorch's convention,
  ``transpose_kernel=True`` and ``use_consistent_padding=True`` (its padding pairs are those of
  the forward conv this op is the gradient of). JAX has no ``output_padding``: it is the high
  padding made smaller, ``(p, p - output_padding)``;
* ``conv_transpose*d`` with ``groups > 1``: ``jax.lax.conv_transpose`` has no group count, so the
  op is spelled as ``conv_general_dilated`` over the input dilated by the stride
  (``lhs_dilation``), with the kernel flipped and padding
  ``(d*(k-1) - p, d*(k-1) - p + output_padding)``: what ``conv_transpose`` lowers to.

* ``conv_general*d`` (MLX's general convolution): ``conv_general_dilated`` with the low/high
  padding pairs and ``lhs_dilation`` (input dilation); JAX has no flip parameter, so a flipped
  case's kernel is reversed with ``jnp.flip`` first, as a JAX user writes it.

Layout translation is the ``dimension_numbers`` argument alone, no copy: input and output
``NWC``/``NHWC``/``NDHWC`` (ours), forward weight ``O..I`` (ours). For ``conv_transpose`` with
``transpose_kernel=True`` the kernel is read as the forward conv's, whose output channels are our
input channels, so our ``(C_out, *K, C_in)`` weight is spelled ``I..O``.

``output_padding`` is checked by the adapter, since JAX has no such parameter to check it: a case
with ``output_padding >= max(stride, dilation)`` or ``< 0`` raises :class:`LayoutError` (recorded
like a rejection). Every other parameter goes to JAX as it is, so JAX's own validation is what the
run records.

Each case is one jitted program (casts, op, bias add) that returns the case dtype; the cast to
float32 happens outside it, because inside, XLA's default "excess precision" would skip the
rounding to bfloat16 and the output would not be bfloat16 at all. float32 runs at
``Precision.HIGHEST``: on GPUs XLA's default precision rounds float32 operands to TF32
(``--tf32`` builds the CUDA backend with the default precision instead). float16 and bfloat16 use
JAX's default accumulation type for the input type. The bias is added after the op, in the case
dtype, as ``flax.linen.Conv`` does. Backward directions: ``jax.vjp`` of that program, jitted.

JAX preallocates 75% of a GPU's memory on first use; ``XLA_PYTHON_CLIENT_PREALLOCATE`` is set to
``false`` (unless already set) before JAX is imported, so workers share the device.
"""

from __future__ import annotations

import os

import numpy as np

from conformance.backends.base import Availability, Backend, LayoutError, gradients_for
from conformance.case import ALL_OPS, DIRECTIONS, Case
from conformance.inputs import Inputs
from reference.params import PADDING_MODES

#: Spatial axis letters of JAX's dimension-number strings, per number of spatial dims.
SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def _import_jax():
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    return jax


def dimension_numbers(case: Case, *, transpose_kernel: bool = False) -> tuple[str, str, str]:
    """``(lhs, rhs, out)`` specs that read our MLX-layout arrays as they are.

    With ``transpose_kernel`` (``lax.conv_transpose``) JAX swaps the kernel's I and O axes, so
    ours are named the other way round."""
    s = SPATIAL[case.ndim]
    rhs = f"I{s}O" if transpose_kernel else f"O{s}I"
    return f"N{s}C", rhs, f"N{s}C"


def check_output_padding(case: Case) -> None:
    """Raise :class:`LayoutError` for an output padding PyTorch and MLX define as invalid: JAX has
    no ``output_padding`` parameter, so the adapter is the one that must refuse it."""
    for axis, (op, st, d) in enumerate(zip(case.output_padding, case.stride, case.dilation)):
        if op < 0 or op >= max(st, d):
            raise LayoutError(
                f"output_padding ({op} on axis {axis}) must be >= 0 and smaller than "
                f"max(stride, dilation) = {max(st, d)}: JAX has no output_padding, and the "
                "adapter spells a valid one as reduced high padding only"
            )


def transposed_padding(case: Case) -> list[tuple[int, int]]:
    """The forward-conv padding pairs of ``lax.conv_transpose(use_consistent_padding=True)`` for
    a PyTorch-style ``(padding, output_padding)``: the high side is ``p - output_padding``."""
    return [(p, p - op) for p, op in zip(case.padding, case.output_padding)]


def dilated_input_padding(case: Case) -> list[tuple[int, int]]:
    """``conv_general_dilated`` padding of the stride-dilated input for a transposed op:
    ``(d*(k-1) - p, d*(k-1) - p + output_padding)`` per axis (negative pads crop)."""
    return [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, p, d, op in zip(case.kernel, case.padding, case.dilation, case.output_padding)
    ]


def forward(jax, case: Case, x, w, bias, *, precision):
    """``case``'s op on JAX arrays in MLX layout, bias added after the op; returns a JAX array."""
    lax = jax.lax
    if case.general:
        spatial_axes = tuple(range(1, 1 + case.ndim))
        y = lax.conv_general_dilated(
            x,
            jax.numpy.flip(w, axis=spatial_axes) if case.flip else w,
            window_strides=case.stride,
            padding=list(zip(case.padding, case.padding_hi)),
            lhs_dilation=case.input_dilation,
            rhs_dilation=case.dilation,
            dimension_numbers=dimension_numbers(case),
            feature_group_count=case.groups,
            precision=precision,
        )
    elif not case.transposed:
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=case.stride,
            padding=case.padding_mode.upper() if case.moded else [(p, p) for p in case.padding],
            rhs_dilation=case.dilation,
            dimension_numbers=dimension_numbers(case),
            feature_group_count=case.groups,
            precision=precision,
        )
    elif case.groups == 1:
        check_output_padding(case)
        y = lax.conv_transpose(
            x,
            w,
            strides=case.stride,
            padding=transposed_padding(case),
            rhs_dilation=case.dilation,
            dimension_numbers=dimension_numbers(case, transpose_kernel=True),
            transpose_kernel=True,
            precision=precision,
            use_consistent_padding=True,
        )
    else:
        check_output_padding(case)
        spatial_axes = tuple(range(1, 1 + case.ndim))  # our weight is (C_out, *K, C_in/g)
        y = lax.conv_general_dilated(
            x,
            jax.numpy.flip(w, axis=spatial_axes),
            window_strides=(1,) * case.ndim,
            padding=dilated_input_padding(case),
            lhs_dilation=case.stride,
            rhs_dilation=case.dilation,
            dimension_numbers=dimension_numbers(case),
            feature_group_count=case.groups,
            precision=precision,
        )
    return y if bias is None else y + bias


class JaxBackend(Backend):
    layout_note = "JAX arrays have no strides: a view reaches XLA as a contiguous array"

    def __init__(self, device: str, *, allow_tf32: bool = False) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        self.allow_tf32 = allow_tf32 and device == "cuda"
        self.name = f"jax-{device}"
        self.directions = DIRECTIONS
        self.ops = tuple(ALL_OPS)
        self.padding_modes = PADDING_MODES  # lax's 'SAME' / 'VALID'
        # XLA aborts the process compiling some transposed convs no rule narrows down to a region
        # yet (cases/known_failures/jax-cpu.toml): pytest runs it in a worker process.
        self.crash_prone = True
        self.description = f"jax.lax conv ops (XLA) on {device}" + (
            ", default precision (TF32 allowed)" if self.allow_tf32 else ""
        )

    def _device(self, jax):
        return jax.devices(self.device)[0]

    def probe(self) -> Availability:
        try:
            jax = _import_jax()
        except ImportError as exc:
            return Availability(False, f"JAX is not installed ({exc})")
        import jaxlib

        versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
        try:
            device = self._device(jax)
        except RuntimeError as exc:  # "Unknown backend cuda" / no devices of that platform
            text = " ".join(str(exc).split())
            return Availability(False, f"JAX has no {self.device} device here ({text})", versions)
        precision = "default precision" if self.allow_tf32 else "float32 at HIGHEST precision"
        return Availability(True, f"{device.device_kind}, {precision}", versions)

    def on_device(self, jax, *arrays: np.ndarray | None) -> list:
        """The given host arrays (None ones left out) as float32 on this backend's device."""
        device = self._device(jax)
        return [
            jax.device_put(np.asarray(a, dtype=np.float32), device) for a in arrays if a is not None
        ]

    def _precision(self, jax):
        return jax.lax.Precision.DEFAULT if self.allow_tf32 else jax.lax.Precision.HIGHEST

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        jax = _import_jax()
        dt = jax.numpy.dtype(case.dtype)
        precision = self._precision(jax)

        # One jitted program per case (dtype casts, op, bias): one XLA compile instead of one per
        # eager op, which is most of a small case's time. It returns the case dtype: a cast to
        # float32 inside the program would let XLA skip the rounding to bfloat16 (excess
        # precision, XLA's default), which no caller of a bfloat16 conv gets.
        @jax.jit
        def program(x, w, *b):
            bias = b[0].astype(dt) if b else None
            return forward(jax, case, x.astype(dt), w.astype(dt), bias, precision=precision)

        if case.direction != "fwd":
            return self._backward(jax, case, inputs, dt, precision)
        y = program(*self.on_device(jax, inputs.x, inputs.w, inputs.bias))
        return np.asarray(jax.device_get(y)).astype(np.float32)

    def _backward(self, jax, case: Case, inputs: Inputs, dt, precision):
        """``jax.vjp`` of the op plus the bias add, in the case dtype, jitted as one program
        (casts, op, bias, VJP) returning the case dtype, as the forward program does."""

        @jax.jit
        def program(dy, x, w, *b):
            def fn(x, w, *b):
                return forward(jax, case, x, w, b[0] if b else None, precision=precision)

            primals = [a.astype(dt) for a in (x, w, *b)]
            _, pullback = jax.vjp(fn, *primals)
            return pullback(dy.astype(dt))

        grads = program(*self.on_device(jax, inputs.dy, inputs.x, inputs.w, inputs.bias))
        host = [np.asarray(jax.device_get(g)).astype(np.float32) for g in grads]
        return gradients_for(case, host)
