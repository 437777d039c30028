"""PyTorch module adapters: ``torch-cpu-nn``, ``torch-cuda-nn``, ``torch-mps-nn`` (``torch.nn``
layers, not ``torch.nn.functional``).

What is built: for each case, a fresh ``torch.nn.Conv1d/2d/3d`` or
``torch.nn.ConvTranspose1d/2d/3d`` with the case's ``in_channels``, ``out_channels``,
``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups`` and ``bias``, in the case
dtype on the device.

How the weight gets in: the case's weight in PyTorch's layout
(:func:`~conformance.backends.base.channels_first_weight`: ``(C_out, C_in/g, *K)``, transposed
``(C_in, C_out/g, *K)``) and its bias are copied into the module's own ``module.weight`` and
``module.bias`` (``copy_`` under ``no_grad``, shapes checked first: the module must lay its
weight out the way the adapter does).

``output_size``: a transposed module is built with ``output_padding=0`` and called as
``module(x, output_size=<the case's output spatial size>)`` (:meth:`~conformance.case.Case.
output_spatial`), so the module itself must find the output padding that gives that size. An
invalid case without an output size (stride 0, say) has none to ask for: its module is built
with the case's ``output_padding`` and called without ``output_size``.

Directions: forward calls the module under ``no_grad``; ``bwd_d`` and ``bwd_w`` take
``torch.autograd.grad`` of the module call with respect to the input, ``module.weight`` and
``module.bias`` at once for the case's cotangent, and return what ``torch-cpu`` etc. return
(:func:`~conformance.backends.base.gradients_for`, the weight gradient back in MLX layout with
:func:`~conformance.backends.base.mlx_weight`).

Device, availability and TF32 (off on CUDA unless ``allow_tf32``) are those of
:class:`~conformance.backends.torch_backend.TorchBackend` (subclassed, default contiguous
memory format).

Layouts: all of :data:`conformance.layouts.LAYOUTS`, as the functional ``torch-cpu``: the input
as a strided, permuted or expanded view, or unbatched ``(C, *S)`` (the modules take it; the
cotangent is unbatched too).

Ops: the six conv and conv_transpose ops (the general convolutions have no module). Padding
modes: ``Conv*d(padding='same' / 'valid')`` for the ``psame`` / ``pvalid`` cases (stride 1 for
``'same'``, as the functional backends).

Limitations: ``ConvTranspose*d``'s ``output_size`` admits output sizes up to ``stride - 1``
past the smallest one only, while the op accepts ``output_padding < max(stride, dilation)``: a
valid case with ``output_padding >= stride`` (allowed by its dilation) raises
(``cases/known_failures/torch-cpu-nn.toml``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from conformance.backends.mlx_nn_backend import module_name
from conformance.backends.torch_backend import TorchBackend
from conformance.case import OPS, Case


class TorchNNBackend(TorchBackend):
    """``torch.nn`` conv modules on one device (probe, TF32 and layouts of TorchBackend)."""

    def __init__(self, device: str, *, allow_tf32: bool = False) -> None:
        super().__init__(device, allow_tf32=allow_tf32)
        self.name = f"torch-{device}-nn"
        self.description = (
            f"torch.nn Conv*d/ConvTranspose*d modules on {device} (transposed: output_size=)"
            + (", TF32 allowed" if allow_tf32 else "")
        )
        self.ops = tuple(OPS)  # the general convolutions (MLX's conv_general) have no module
        self.ops_note = "torch.nn has modules for the six conv and conv_transpose ops only"

    def build(self, case: Case, dt):
        """A fresh module with the case's parameters, in ``dt`` on the device; transposed with
        ``output_padding=0`` when the case has an output size to ask for."""
        import torch

        cls = getattr(torch.nn, module_name(case.op))
        kw = case.api_params()  # the six ops' parameters (a module computes no general op)
        if case.transposed:
            no_size = case.output_spatial() is None
            kw["output_padding"] = case.output_padding if no_size else (0,) * case.ndim
        with warnings.catch_warnings():  # a zero-channel (invalid) case's empty weight
            warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
            return cls(
                case.in_channels,
                case.out_channels,
                case.kernel,
                **kw,
                bias=case.bias,
                device=self.device,
                dtype=dt,
            )

    def load(self, module, case: Case, w, b) -> None:
        """The case's weight (channels-first tensor) and bias into ``module.weight`` and
        ``module.bias``."""
        import torch

        with torch.no_grad():
            for param, value, name in ((module.weight, w, "weight"), (module.bias, b, "bias")):
                if value is None:
                    continue
                if tuple(param.shape) != tuple(value.shape):
                    raise ValueError(
                        f"{type(module).__name__}.{name} has shape {tuple(param.shape)}, the "
                        f"case's {name} {tuple(value.shape)}"
                    )
                param.copy_(value)

    def call_kwargs(self, case: Case) -> dict[str, object]:
        """``output_size`` for a transposed module (the case's full output spatial size)."""
        size = case.output_spatial() if case.transposed else None
        return {} if size is None else {"output_size": list(size)}

    def _callable(self, case: Case, w, b, dt) -> tuple[Callable, list]:
        """A fresh module holding the case's weight and bias, called on the input (transposed:
        with ``output_size=``); its own ``weight`` and ``bias`` are what gradients are taken for."""
        module = self.build(case, dt)
        self.load(module, case, w, b)
        kw = self.call_kwargs(case)
        params = [module.weight] + ([module.bias] if case.bias else [])
        return (lambda x: module(x, **kw)), params
