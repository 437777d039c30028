"""The adapter interface every backend implements.

An adapter takes a :class:`~conformance.case.Case` and its :class:`~conformance.inputs.Inputs`
(MLX layout, float32 arrays exact in the case dtype; float64 ones for a float64 case), runs the
op on its library and device in the case dtype, and returns the output in MLX layout as a NumPy
float array (float64 for a float64 case). Layout translation
lives in the adapter, once; the runner and diff engine only ever see MLX layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from conformance.case import OPS, Case
from conformance.dtypes import DTYPES
from conformance.inputs import Inputs


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; ``detail`` says why not, or what it runs on."""

    available: bool
    detail: str
    versions: dict[str, str] = field(default_factory=dict)


class LayoutError(ValueError):
    """The case cannot be expressed in the backend's own layout (e.g. an invalid group count
    that PyTorch's transposed-weight layout has no way to spell). Recorded like a rejection."""


class Backend(ABC):
    """One library on one device. Subclasses set ``name`` and implement the three hooks."""

    name: str = ""
    description: str = ""
    #: Set by :func:`conformance.backends.load_plugins` for backends that came from a plugin.
    plugin_spec: str | None = None
    #: Known to kill the process on cases no known-failures rule describes yet: pytest runs it
    #: in a worker process even without ``--isolate``.
    crash_prone: bool = False
    #: The case directions ``run`` computes (:data:`conformance.case.DIRECTIONS`); the others
    #: are ``unsupported`` (:func:`unsupported`). Forward only unless a backend says more.
    directions: tuple[str, ...] = ("fwd",)
    #: The ops ``run`` computes (:data:`conformance.case.ALL_OPS`); the others are ``unsupported``
    #: with :attr:`ops_note` as the reason. The six conv and conv_transpose ops unless a backend
    #: says more (the general convolutions ``conv_general*`` are MLX's ``conv_general``).
    ops: tuple[str, ...] = tuple(OPS)
    #: Why the other ops are not run (e.g. the library has no general convolution).
    ops_note: str = "it computes the six conv and conv_transpose ops only"
    #: The input layouts ``run`` hands to the library as views
    #: (:data:`conformance.layouts.LAYOUTS`); the others are ``unsupported``, with
    #: :attr:`layout_note` as the reason. Contiguous only unless a backend says more.
    layouts: tuple[str, ...] = ("contiguous",)
    #: Why the other layouts are not run (e.g. the library takes no strided arrays).
    layout_note: str = "it is given contiguous arrays only"
    #: The case dtypes ``run`` computes (:data:`conformance.dtypes.ALL_DTYPES`); the others are
    #: ``unsupported`` with :attr:`dtype_note` as the reason. float32, float16 and bfloat16
    #: unless a backend says more.
    dtypes: tuple[str, ...] = DTYPES
    #: Why the other dtypes are not run.
    dtype_note: str = "float64 is checked on backends whose conv ops compute it (PyTorch's)"
    #: How ``run`` gives the library a case's padding (:data:`reference.params.PADDING_MODES`):
    #: a backend that lists ``same`` / ``valid`` passes the API's string mode for the
    #: ``psame`` / ``pvalid`` cases; the others report them ``unsupported`` with
    #: :attr:`padding_mode_note` as the reason. Explicit numbers only unless a backend says more.
    padding_modes: tuple[str, ...] = ("explicit",)
    #: Why the string modes are not run (e.g. the API takes integer padding only).
    padding_mode_note: str = "its API takes explicit padding numbers only"

    @cached_property
    def availability(self) -> Availability:
        """Probed once per process; never raises."""
        try:
            return self.probe()
        except Exception as exc:  # an import that fails in an unexpected way is "not available"
            return Availability(False, f"probe failed: {type(exc).__name__}: {exc}")

    @abstractmethod
    def probe(self) -> Availability:
        """Import the library and check the device; no case is run."""

    def unsupported_reason(self, case: Case) -> str | None:
        """A documented limitation of the backend that rules ``case`` out, or ``None``."""
        return None

    @abstractmethod
    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run ``case`` and return what its direction computes, in MLX layout, as NumPy floats:
        ``fwd`` the output (N, *spatial, C_out); ``bwd_d`` the input's gradient (N, *spatial,
        C_in) for the cotangent ``inputs.dy``; ``bwd_w`` the weight's gradient (C_out, *K,
        C_in/groups) and, with a bias, the tuple of it and the bias's gradient (C_out,)
        (:mod:`conformance.directions`).

        Errors raised by the library propagate unchanged: the runner records them.
        """

    def __repr__(self) -> str:
        return f"<backend {self.name}>"


def unsupported(backend: Backend, case: Case) -> str | None:
    """Why ``backend`` does not run ``case``: an op, a direction or a dtype it does not compute,
    an input layout or a padding mode it does not take, or a documented limitation
    (:meth:`Backend.unsupported_reason`); None when it runs it."""
    if case.op not in backend.ops:
        return f"{backend.name} has no {case.op}: {backend.ops_note}"
    if case.direction not in backend.directions:
        return f"{backend.name} computes {', '.join(backend.directions)} only, not {case.direction}"
    if case.dtype not in backend.dtypes:
        return f"{backend.name} does not compute {case.dtype}: {backend.dtype_note}"
    if case.layout not in backend.layouts:
        return f"{backend.name} does not take the {case.layout} layout: {backend.layout_note}"
    if case.padding_mode not in backend.padding_modes:
        return f"{backend.name} has no padding={case.padding_mode!r}: {backend.padding_mode_note}"
    return backend.unsupported_reason(case)


def mlx_weight(case: Case, tw: np.ndarray) -> np.ndarray:
    """A channels-first weight (or weight gradient) back in MLX layout: the inverse of
    :func:`channels_first_weight`."""
    if not case.transposed:
        return channels_last(tw)
    g = case.groups
    c_in, c_out_g, *kernel = tw.shape
    wg = tw.reshape(g, c_in // g, c_out_g, *kernel)  # (G, C_in_g, C_out_g, *K)
    wg = np.moveaxis(wg, 1, -1)  # (G, C_out_g, *K, C_in_g)
    return np.ascontiguousarray(wg.reshape(g * c_out_g, *kernel, c_in // g))


def gradients_for(case: Case, grads: list[np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
    """What ``run`` returns for a backward ``case`` from all of its gradients (input, weight,
    and bias where the case has one), each in MLX layout."""
    if case.direction == "bwd_d":
        return grads[0]
    return (grads[1], grads[2]) if case.bias else grads[1]


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, *S, C) -> (N, C, *S), contiguous."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def channels_last(y: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N, *S, C), contiguous."""
    return np.ascontiguousarray(np.moveaxis(y, 1, -1))


def channels_first_weight(case: Case, w: np.ndarray) -> np.ndarray:
    """Our MLX-layout weight in the channels-first layout of PyTorch and ONNX for ``case.op``:
    ``(C_out, C_in/g, *K)`` for a conv, ``(C_in, C_out/g, *K)`` for a transposed conv, where
    ``weight[g*C_in_g + ci, co, *k]`` is our ``w[g*C_out_g + co, *k, ci]``."""
    if not case.transposed:
        return channels_first(w)
    g = case.groups
    c_out, *kernel, c_in_g = w.shape
    if g < 1 or c_out % g:
        raise LayoutError(
            f"groups ({g}) must divide output channels ({c_out}): the channels-first transposed "
            f"weight (C_in, C_out/groups, *K) cannot express this case"
        )
    wg = w.reshape(g, c_out // g, *kernel, c_in_g)
    wg = np.moveaxis(wg, -1, 1)  # (G, C_in_g, C_out_g, *K)
    return np.ascontiguousarray(wg.reshape(g * c_in_g, c_out // g, *kernel))
