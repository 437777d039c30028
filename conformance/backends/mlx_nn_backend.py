"""MLX module adapters: ``mlx-cpu-nn`` and ``mlx-gpu-nn`` (``mlx.nn`` layers, not ``mlx.core`` ops).

What is built: for each case, a fresh ``mlx.nn.Conv1d/2d/3d`` or ``mlx.nn.ConvTranspose1d/2d/3d``
with the case's ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``padding``,
``dilation``, ``groups`` and ``output_padding`` (each only where the installed MLX's constructor
takes it: :func:`missing_parameter` reads the signature with :mod:`inspect`) and
``bias=case.bias``; 1-D modules get ints, as MLX's 1-D layers take them.

How the weight gets in: the module is cast to the case dtype (``module.set_dtype``), then the
case's weight and bias, already in MLX layout ``(C_out, *K, C_in/g)``, replace the module's own
random ones with ``module.update({"weight": ..., "bias": ...})`` (shapes checked first: the
module must lay its weight out the way the case does); the module is called on the input and
its output returned. The bias is the module's own add.

Directions: forward calls the module; ``bwd_d`` and ``bwd_w`` take ``mx.vjp`` of a function of
(input, weight[, bias]) that puts the parameters into the module with ``module.update`` and
calls it, for the case's cotangent, in the case dtype; what is returned per direction is what
``mlx-cpu``/``mlx-gpu`` return (:func:`~conformance.backends.base.gradients_for`).

Device and availability are those of :class:`~conformance.backends.mlx_backend.MLXBackend`
(subclassed): everything runs inside ``mx.stream(mx.cpu / mx.gpu)``.

Layouts: as the functional adapters (a strided, permuted or expanded view of the input);
``unbatched`` is unsupported, as MLX's layers call the conv ops, which need a batch axis.

Ops: the six conv and conv_transpose ops; the general convolutions (``conv_general*``, which
``mlx-cpu`` runs with ``mx.conv_general``) have no module and are unsupported.

Limitations (``unsupported``, reason naming the parameter): the installed MLX's ``Conv3d`` and
``ConvTranspose*`` take no ``groups``, so 3-D grouped convolutions and every grouped transposed
convolution are out (the functional ``mlx.core.conv_transpose*`` ops take groups).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from conformance.backends.mlx_backend import MLXBackend
from conformance.case import OPS, Case
from conformance.inputs import Inputs

#: Constructor parameters a case may need beyond the channels and kernel size, and the value
#: that means "not needed" (a module without the parameter behaves as this value).
_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}


def module_name(op: str) -> str:
    """``conv2d`` -> ``Conv2d``, ``conv_transpose3d`` -> ``ConvTranspose3d`` (the names of both
    ``mlx.nn`` and ``torch.nn``); ValueError for an op no module computes."""
    if op not in OPS:
        raise ValueError(f"no conv module computes {op}")
    return "ConvTranspose" + op[-2:] if op.startswith("conv_transpose") else "Conv" + op[-2:]


def _is_default(name: str, value: object) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(v == _DEFAULTS[name] for v in values)


def missing_parameter(cls: type, case: Case) -> str | None:
    """Why ``cls`` (a module class) cannot express ``case``: the first parameter the case needs
    (a value other than its default) that the constructor does not take; None when it takes
    them all."""
    taken = inspect.signature(cls).parameters
    for name, value in case.params().items():
        if name not in taken and not _is_default(name, value):
            shown = value if not isinstance(value, tuple) else "x".join(map(str, value))
            return f"mlx.nn.{cls.__name__} takes no {name} parameter (the case has {name} {shown})"
    return None


class MLXNNBackend(MLXBackend):
    """``mlx.nn`` conv modules on the CPU or GPU stream (probe and layouts of MLXBackend)."""

    def __init__(self, device: str) -> None:
        super().__init__(device)
        self.name = f"mlx-{device}-nn"
        self.description = f"mlx.nn Conv*/ConvTranspose* modules on the {device.upper()} stream"
        # MLXBackend also runs the general convolutions (mx.conv_general): no module calls it.
        self.ops = tuple(OPS)
        self.ops_note = "mlx.nn has modules for the six conv and conv_transpose ops only"

    def unsupported_reason(self, case: Case) -> str | None:
        if case.op not in OPS:  # unsupported() names the op first
            return None
        try:
            import mlx.nn as nn
        except ImportError:  # not available: the runner never asks
            return None
        return missing_parameter(getattr(nn, module_name(case.op)), case)

    def build(self, case: Case):
        """A fresh module with the case's parameters (those its constructor takes)."""
        import mlx.nn as nn

        cls = getattr(nn, module_name(case.op))
        taken = inspect.signature(cls).parameters
        kw = {k: v for k, v in case.params().items() if k in taken}
        kernel: object = case.kernel
        if case.ndim == 1:  # mlx's 1-D layers take ints, not 1-tuples
            kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
            kernel = case.kernel[0]
        return cls(case.in_channels, case.out_channels, kernel, **kw, bias=case.bias)

    def load(self, mx, module, case: Case, inputs: Inputs, dt) -> None:
        """The case's weight and bias (MLX layout) into the module's own parameters, in the
        case dtype."""
        module.set_dtype(dt)
        params = {"weight": mx.array(inputs.w).astype(dt)}
        if inputs.bias is not None:
            params["bias"] = mx.array(inputs.bias).astype(dt)
        for key, value in params.items():
            own = tuple(module[key].shape)
            if own != tuple(value.shape):
                raise ValueError(
                    f"{type(module).__name__}.{key} has shape {own}, the case's {key} "
                    f"{tuple(value.shape)}"
                )
        module.update(params)

    def _callable(self, mx, case: Case, inputs: Inputs, dt, stream) -> tuple[Callable, list]:
        """A fresh module holding the case's weight and bias; the call puts the weight (and
        bias) it is given into the module with ``module.update`` and calls the module, so
        gradients are those of the module's own parameters."""
        module = self.build(case)
        self.load(mx, module, case, inputs, dt)

        def call(x, w, *b):
            module.update({"weight": w, **({"bias": b[0]} if b else {})})
            return module(x)

        return call, [module.weight] + ([module.bias] if case.bias else [])
