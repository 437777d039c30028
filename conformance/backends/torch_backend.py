"""PyTorch adapters: ``torch-cpu``, ``torch-cuda``, ``torch-mps`` (``torch.nn.functional``).

Layout translation, done here once:

* input ``(N, *S, C_in)`` -> ``(N, C_in, *S)``; output back the other way;
* forward weight ``(C_out, *K, C_in/g)`` -> ``(C_out, C_in/g, *K)``;
* transposed weight ``(C_out, *K, C_in/g)`` -> ``(C_in, C_out/g, *K)``, where PyTorch's
  ``weight[g*C_in_g + ci, co, *k]`` is our ``w[g*C_out_g + co, *k, ci]``.

Tensors reach PyTorch in one of two memory formats, each its own backend:

* ``torch-cpu``, ``torch-cuda``: default contiguous format with canonical strides (what
  ``torch.randn`` gives; size-1 axes get canonical strides too, which matters: PyTorch infers a
  memory format from strides);
* ``torch-cpu-cl``, ``torch-cuda-cl``: channels-last strides for input and weight
  (``memory_format=torch.channels_last`` / ``channels_last_3d``, and the same stride order for
  1-D), the layout performance-tuned PyTorch code uses.

Backward directions: ``torch.autograd.grad`` of the functional op with respect to the input,
weight and bias together (as training computes them), the cotangent in the same memory format;
``bwd_d`` returns the first, ``bwd_w`` the others; the
weight gradient goes back to MLX layout with :func:`~conformance.backends.base.mlx_weight`.

Input layouts (:mod:`conformance.layouts`): ``torch-cpu``, ``torch-cuda`` and ``torch-mps``
receive the input as a strided, permuted (last two axes swapped in memory) or expanded view, or
unbatched ``(C, *S)`` (the cotangent too, for a backward case); the ``-cl`` backends are a
memory format of their own and take the contiguous layout only.

Padding modes: a ``psame`` / ``pvalid`` case passes ``padding='same'`` / ``'valid'`` (stride 1
only for ``'same'``: PyTorch raises for strided ones, so those cases are unsupported).

dtypes: float32, float16, bfloat16 and float64 (not on MPS, which has no float64).

On CUDA, TF32 is disabled for convolutions and matmuls unless the backend is built with
``allow_tf32=True`` (``--tf32`` on the command line), so the default run checks strict float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from conformance.backends.base import (
    Availability,
    Backend,
    channels_first,
    channels_first_weight,
    channels_last,
    gradients_for,
    mlx_weight,
)
from conformance.case import DIRECTIONS, Case
from conformance.dtypes import ALL_DTYPES
from conformance.inputs import Inputs
from conformance.layouts import LAYOUTS, Views, batched, laid_out
from reference.params import PADDING_MODES

MEMORY_FORMATS = ("contiguous", "channels_last")


def with_memory_format(t, memory_format: str):
    """A copy of ``t`` (channels-first shape) with canonical contiguous or channels-last strides."""
    import torch

    if memory_format == "channels_last":
        return t.movedim(1, -1).contiguous().movedim(-1, 1)
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    out.copy_(t)
    return out


class TorchBackend(Backend):
    ops_note = (
        "PyTorch has no general convolution (separate low and high padding, input dilation, "
        "kernel flip)"
    )

    def __init__(
        self, device: str, *, memory_format: str = "contiguous", allow_tf32: bool = False
    ) -> None:
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}"
            )
        self.device = device
        self.memory_format = memory_format
        self.allow_tf32 = allow_tf32
        self.name = f"torch-{device}" + ("-cl" if memory_format == "channels_last" else "")
        self.directions = DIRECTIONS
        self.padding_modes = PADDING_MODES
        if device != "mps":  # MPS has no float64
            self.dtypes = ALL_DTYPES
        else:
            self.dtype_note = "MPS has no float64"
        if memory_format == "contiguous":
            self.layouts = LAYOUTS
        else:
            self.layout_note = "its channels-last memory format is its layout"
        # Channels-last bfloat16 convs segfault (see cases/known_failures/torch-cpu-cl.toml).
        self.crash_prone = memory_format == "channels_last"
        self.description = (
            f"torch.nn.functional on {device}, {memory_format.replace('_', '-')} tensors"
            + (", TF32 allowed" if allow_tf32 else "")
        )

    def probe(self) -> Availability:
        try:
            import torch
        except ImportError as exc:
            return Availability(False, f"PyTorch is not installed ({exc})")
        versions = {"torch": torch.__version__}
        if self.device == "cuda":
            if not torch.cuda.is_available():
                return Availability(False, "PyTorch has no CUDA device here", versions)
            versions["cuda"] = str(torch.version.cuda)
            versions["cudnn"] = str(torch.backends.cudnn.version())
            detail = f"{torch.cuda.get_device_name(0)}, TF32 {'on' if self.allow_tf32 else 'off'}"
            return Availability(True, detail, versions)
        if self.device == "mps":
            if not torch.backends.mps.is_available():
                return Availability(
                    False, "PyTorch has no MPS device here (Apple silicon only)", versions
                )
            return Availability(True, "Apple MPS", versions)
        return Availability(True, f"CPU, {torch.get_num_threads()} threads", versions)

    def unsupported_reason(self, case: Case) -> str | None:
        if case.padding_mode == "same" and any(s != 1 for s in case.stride):
            return "PyTorch's padding='same' takes stride 1 only (strided convolutions raise)"
        return None

    def _torch_dtype(self, dtype: str):
        import torch

        return {
            "float32": torch.float32,
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float64": torch.float64,
        }[dtype]

    def _apply_tf32(self) -> None:
        """On CUDA, allow TF32 in convolutions and matmuls only if the backend says so."""
        import torch

        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.allow_tf32
            torch.backends.cudnn.allow_tf32 = self.allow_tf32

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        """The case through :meth:`_callable`: forward under ``no_grad``; backward as
        ``torch.autograd.grad`` with respect to the input and every parameter at once, as a
        training step computes them (one ``convolution_backward`` with every output asked for:
        its code paths differ from those of one gradient alone), in the case dtype; results back
        in MLX layout."""
        import torch

        self._apply_tf32()
        dt = self._torch_dtype(case.dtype)

        def to_torch(a: np.ndarray):
            t = torch.from_numpy(np.array(a, copy=True)).to(device=self.device, dtype=dt)
            return with_memory_format(t, self.memory_format) if t.ndim > 1 else t

        views = Views(to_torch, lambda t: t.transpose(-1, -2), lambda t, shape: t.expand(shape))
        x = laid_out(case.layout, channels_first(inputs.x), views)
        w = to_torch(channels_first_weight(case, inputs.w))
        b = None if inputs.bias is None else to_torch(inputs.bias)
        call, params = self._callable(case, w, b, dt)
        dy = None
        if case.direction != "fwd":
            dy = channels_first(inputs.dy)
            dy = to_torch(dy[0] if case.layout == "unbatched" else dy)
        with warnings.catch_warnings():
            # padding='same' with an even kernel extent pads a copy first: what is checked.
            warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)
            return self._call(case, call, params, x, dy)

    def _call(self, case: Case, call: Callable, params: list, x, dy):
        """The forward output, or the gradients for cotangent ``dy``, of ``call`` on ``x``,
        back in MLX layout."""
        import torch

        if case.direction == "fwd":
            with torch.no_grad():
                y = call(x)
            self._sync()
            return channels_last(batched(case.layout, to_host(y)))
        wrt = [x, *params]
        for t in wrt:
            t.requires_grad_(True)
        grads = torch.autograd.grad(call(x), wrt, grad_outputs=dy)
        self._sync()
        host = [to_host(g) for g in grads]
        grad_input = channels_last(batched(case.layout, host[0]))
        return gradients_for(case, [grad_input, mlx_weight(case, host[1]), *host[2:]])

    def _callable(self, case: Case, w, b, dt) -> tuple[Callable, list]:
        """What the case calls on the input, and the parameters its gradients are taken for:
        here ``torch.nn.functional``'s op with the weight and bias tensors."""
        import torch.nn.functional as F

        fn = getattr(F, case.op)
        kw = case.api_params()
        return (lambda x: fn(x, w, b, **kw)), [w] + ([b] if b is not None else [])

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def to_host(t) -> np.ndarray:
    """A tensor as a float32 NumPy array on the host (float64 for a float64 tensor)."""
    import torch

    dt = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to(device="cpu", dtype=dt).numpy()
