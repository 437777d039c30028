"""Backend registry: every adapter the harness knows, in report order.

Built in: ``numpy-ref``; upstream MLX (``mlx-cpu``, ``mlx-gpu``); PyTorch (``torch-cpu``,
``torch-cpu-cl``, ``torch-cuda``, ``torch-cuda-cl``, ``torch-mps``); and the kernels under
development in ``kernels/`` (``kernels-host``, ``kernels-cuda``, ``kernels-metal``).

Extra backends (a kernel under development, a planted-bug adapter in the harness's own tests) are
loaded from ``module:attribute`` specs given with ``--plugin`` or in ``CONVCHECK_PLUGINS``
(comma-separated); the attribute is a :class:`Backend` instance, a zero-argument factory, or a
list of either.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

from conformance.backends.base import Availability, Backend, LayoutError
from conformance.backends.mlx_backend import MLXBackend
from conformance.backends.numpy_ref import NumpyReference
from conformance.backends.torch_backend import TorchBackend

__all__ = ["Availability", "Backend", "LayoutError", "builtin_backends", "load_plugins", "resolve"]


def builtin_backends(*, allow_tf32: bool = False) -> list[Backend]:
    # Our own kernels (kernels/): host (g++), CUDA and Metal launches of the same bodies.
    from kernels.backends import KernelsCuda, KernelsHost, KernelsMetal

    return [
        NumpyReference(),
        MLXBackend("cpu"),
        MLXBackend("gpu"),
        TorchBackend("cpu"),
        TorchBackend("cpu", memory_format="channels_last"),
        TorchBackend("cuda", allow_tf32=allow_tf32),
        TorchBackend("cuda", memory_format="channels_last", allow_tf32=allow_tf32),
        TorchBackend("mps"),
        KernelsHost(),
        KernelsCuda(),
        KernelsMetal(),
    ]


def load_plugins(specs: Iterable[str]) -> list[Backend]:
    found: list[Backend] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        module_name, sep, attr = spec.partition(":")
        if not sep or not attr:
            raise ValueError(f"plugin {spec!r} must be written module:attribute")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"plugin {spec!r} cannot be loaded: {exc}") from None
        items = obj if isinstance(obj, (list, tuple)) else [obj]
        for item in items:
            backend = item if isinstance(item, Backend) else item()
            if not isinstance(backend, Backend):
                raise ValueError(f"plugin {spec!r} gave {backend!r}, not a Backend")
            backend.plugin_spec = spec
            found.append(backend)
    return found


def resolve(
    names: Iterable[str] | None = None,
    *,
    plugins: Iterable[str] = (),
    allow_tf32: bool = False,
) -> list[Backend]:
    """All known backends (built-in, then plugins), or just ``names`` in that order."""
    env = os.environ.get("CONVCHECK_PLUGINS", "").split(",")
    backends = builtin_backends(allow_tf32=allow_tf32) + load_plugins([*env, *plugins])
    if names is None:
        return backends
    by_name = {b.name: b for b in backends}
    wanted = list(names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]
