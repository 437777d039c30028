"""Backend registry: every adapter the harness knows, in report order.

Built in: ``numpy-ref``; upstream MLX (``mlx-cpu``, ``mlx-gpu``) and its ``mlx.nn`` modules
(``mlx-cpu-nn``, ``mlx-gpu-nn``); PyTorch (``torch-cpu``, ``torch-cpu-cl``, ``torch-cuda``,
``torch-cuda-cl``, ``torch-mps``) and its ``torch.nn`` modules (``torch-cpu-nn``,
``torch-cuda-nn``, ``torch-mps-nn``); JAX (``jax-cpu``, ``jax-cuda``); ONNX Runtime
(``onnxruntime-cpu``, ``onnxruntime-cuda``); and the kernels under development in ``kernels/``
(``kernels-host``, ``kernels-cuda``, ``kernels-metal``).

Each ``-nn`` backend follows its functional counterpart(s) in the list.

Extra backends (a kernel under development, a planted-bug adapter in the harness's own tests) are
loaded from ``module:attribute`` specs given with ``--plugin`` or in ``CONVCHECK_PLUGINS``
(comma-separated); the attribute is a :class:`Backend` instance, a Backend subclass, a
zero-argument factory, or a list of these. A plugin backend's ``name`` must be new (not a built-in
backend's, not another plugin's) and match :data:`NAME_PATTERN`. The guide: README.md, "Adding a
backend"; a complete example: ``examples/direct_conv_backend.py``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Iterable

from conformance.backends.base import Availability, Backend, LayoutError
from conformance.backends.jax_backend import JaxBackend
from conformance.backends.mlx_backend import MLXBackend
from conformance.backends.mlx_nn_backend import MLXNNBackend
from conformance.backends.numpy_ref import NumpyReference
from conformance.backends.onnxruntime_backend import OnnxRuntimeBackend
from conformance.backends.torch_backend import TorchBackend
from conformance.backends.torch_nn_backend import TorchNNBackend

__all__ = [
    "NAME_PATTERN",
    "Availability",
    "Backend",
    "LayoutError",
    "builtin_backends",
    "load_plugins",
    "resolve",
]


def builtin_backends(*, allow_tf32: bool = False) -> list[Backend]:
    # Our own kernels (kernels/): host (g++), CUDA and Metal launches of the same bodies.
    from kernels.backends import KernelsCuda, KernelsHost, KernelsMetal

    return [
        NumpyReference(),
        MLXBackend("cpu"),
        MLXNNBackend("cpu"),
        MLXBackend("gpu"),
        MLXNNBackend("gpu"),
        TorchBackend("cpu"),
        TorchBackend("cpu", memory_format="channels_last"),
        TorchNNBackend("cpu"),
        TorchBackend("cuda", allow_tf32=allow_tf32),
        TorchBackend("cuda", memory_format="channels_last", allow_tf32=allow_tf32),
        TorchNNBackend("cuda", allow_tf32=allow_tf32),
        TorchBackend("mps"),
        TorchNNBackend("mps"),
        JaxBackend("cpu"),
        JaxBackend("cuda", allow_tf32=allow_tf32),
        OnnxRuntimeBackend("cpu"),
        OnnxRuntimeBackend("cuda", allow_tf32=allow_tf32),
        KernelsHost(),
        KernelsCuda(),
        KernelsMetal(),
    ]


#: A backend name: letters, digits, ``+``, ``.``, ``_`` and ``-``, starting with a letter or
#: digit. Names become file names (``cases/known_failures/NAME.toml``), pytest ids and items of
#: comma-separated and ``NAME=VALUE`` options.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")

_PLUGIN_RULE = (
    "give a Backend instance, a Backend subclass, a zero-argument factory that returns a Backend, "
    "or a list of these"
)


def _describe(obj: object) -> str:
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else f"{obj!r} ({type(obj).__name__})"


def _instantiate(spec: str, item: object) -> Backend:
    """The Backend a plugin item stands for; ValueError (one line, naming ``spec``) if none."""
    if isinstance(item, Backend):
        return item
    if isinstance(item, type):
        if not issubclass(item, Backend):
            raise ValueError(
                f"plugin {spec!r}: class {_describe(item)} is not a subclass of "
                f"conformance.backends.Backend; {_PLUGIN_RULE}"
            )
        if inspect.isabstract(item):
            missing = ", ".join(sorted(getattr(item, "__abstractmethods__", ())))
            raise ValueError(
                f"plugin {spec!r}: class {_describe(item)} is abstract: it must implement "
                f"{missing} (a Backend subclass defines probe() and run())"
            )
        kind = "class"
    elif callable(item):
        kind = "factory"
    else:
        raise ValueError(f"plugin {spec!r} gave {_describe(item)}, not a Backend; {_PLUGIN_RULE}")
    try:
        backend = item()
    except Exception as exc:
        text = " ".join(str(exc).split()) or "(no message)"
        raise ValueError(
            f"plugin {spec!r}: {kind} {_describe(item)}() raised {type(exc).__name__}: {text}"
        ) from None
    if not isinstance(backend, Backend):
        raise ValueError(
            f"plugin {spec!r}: {kind} {_describe(item)}() returned {_describe(backend)}, "
            f"not a Backend; {_PLUGIN_RULE}"
        )
    return backend


def load_plugins(specs: Iterable[str], *, reserved: Iterable[str] | None = None) -> list[Backend]:
    """The backends of plugin specs (``module:attribute``), in order; a spec given twice (say in
    ``CONVCHECK_PLUGINS`` and ``--plugin``) is loaded once.

    Every problem is a one-line ValueError that names the spec and the rule it broke: a spec that
    cannot be imported, an attribute that is no Backend (instance, subclass, factory or a list of
    these), an abstract subclass, a factory that raises, a missing or malformed ``name``
    (:data:`NAME_PATTERN`), a name of a built-in backend (``reserved``, default: the built-in
    names) or a name two plugin backends share.
    """
    taken = {b.name for b in builtin_backends()} if reserved is None else set(reserved)
    given_by: dict[str, str] = {}
    found: list[Backend] = []
    loaded: set[str] = set()
    for spec in specs:
        spec = spec.strip()
        if not spec or spec in loaded:
            continue
        loaded.add(spec)
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"plugin {spec!r} must be written module:attribute")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, or whatever the module raises on import
            text = " ".join(str(exc).split())
            raise ValueError(
                f"plugin {spec!r} cannot be loaded: {type(exc).__name__}: {text}"
            ) from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise ValueError(
                f"plugin {spec!r} cannot be loaded: module {module_name!r} has no attribute "
                f"{attr!r}"
            ) from None
        items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        for item in items:
            backend = _instantiate(spec, item)
            name = getattr(backend, "name", None)
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"plugin {spec!r}: backend {_describe(type(backend))} has no name; set the "
                    'class attribute name = "my-backend"'
                )
            if not NAME_PATTERN.match(name):
                raise ValueError(
                    f"plugin {spec!r}: backend name {name!r} is not valid: use letters, digits, "
                    "'+', '.', '_' and '-', starting with a letter or digit"
                )
            if name in taken:
                raise ValueError(
                    f"plugin {spec!r}: backend name {name!r} is a built-in backend's; "
                    "give the plugin backend another name"
                )
            if name in given_by:
                other = given_by[name]
                also = "twice by this plugin" if other == spec else f"also by plugin {other!r}"
                raise ValueError(f"plugin {spec!r}: backend name {name!r} is given {also}")
            given_by[name] = spec
            backend.plugin_spec = spec
            found.append(backend)
    return found


def resolve(
    names: Iterable[str] | None = None,
    *,
    plugins: Iterable[str] = (),
    allow_tf32: bool = False,
) -> list[Backend]:
    """All known backends (built-in, then plugins), or just ``names`` in that order.

    Plugins come from ``CONVCHECK_PLUGINS`` (comma-separated) and ``plugins``; ValueError (one
    line) for a bad plugin (see :func:`load_plugins`), a backend name known twice, an unknown
    name or a name asked for twice.
    """
    env = os.environ.get("CONVCHECK_PLUGINS", "").split(",")
    builtin = builtin_backends(allow_tf32=allow_tf32)
    backends = builtin + load_plugins([*env, *plugins], reserved=[b.name for b in builtin])
    by_name: dict[str, Backend] = {}
    for b in backends:
        if b.name in by_name:
            raise ValueError(f"backend name {b.name!r} is given twice")
        by_name[b.name] = b
    if names is None:
        return backends
    wanted = list(names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    twice = sorted({n for n in wanted if wanted.count(n) > 1})
    if twice:
        raise ValueError(f"backend(s) {', '.join(twice)} asked for twice")
    return [by_name[n] for n in wanted]
