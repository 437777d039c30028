"""Input layouts: how the input array a backend receives is laid out in memory.

A case's ``layout`` (:data:`LAYOUTS`) says how its input ``x`` reaches the library, as a view
in the library's own array type (never a copy made contiguous first), as PyTorch's and MLX's own
conv tests pass them:

* ``contiguous`` (the default, never written in ids): canonical strides.
* ``strided``: a slice of a larger array: every axis but the last starts one element in (a
  storage offset), the last takes every other element. The elements the view skips are NaN, so
  a kernel that reads storage as if it were contiguous returns NaN, not a plausible number.
* ``permuted``: the last two axes of the library's layout are swapped in memory and swapped back
  by a transpose view (MLX: ``(N, *S, C)`` stored as ``(N, ..., C, S_last)``; PyTorch: ``(N, C,
  *S)`` stored with its last two axes swapped).
* ``expanded``: the batch axis has stride 0 (``expand`` / ``broadcast_to`` of one sample), so
  every sample of the input is the same (:func:`conformance.inputs.make_inputs` draws it so).
* ``unbatched``: the input (and, for a backward case, the cotangent) without its batch axis,
  ``(C, *S)`` in PyTorch; the case has batch 1 and the adapter puts the axis back on the result.

A library's views are taken with its own operations (:class:`Views`), so the conversion to the
case dtype happens on the storage, before the view: what the op receives is a real view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The layouts, the default first.
LAYOUTS: tuple[str, ...] = ("contiguous", "strided", "permuted", "expanded", "unbatched")


@dataclass(frozen=True)
class Views:
    """How one library makes arrays and views: ``array`` turns a float32 NumPy array into the
    library's array in the case dtype (on its device); ``swap_last`` swaps the last two axes;
    ``expand`` broadcasts a size-1 batch axis to a shape."""

    array: Callable[[np.ndarray], Any]
    swap_last: Callable[[Any], Any]
    expand: Callable[[Any, tuple[int, ...]], Any]


NUMPY = Views(
    array=lambda a: a,
    swap_last=lambda a: np.swapaxes(a, -1, -2),
    expand=lambda a, shape: np.broadcast_to(a, shape),
)


def check_layout(layout: str, batch: int) -> None:
    """ValueError naming the rule a layout breaks for a case with ``batch`` samples."""
    if layout not in LAYOUTS:
        raise ValueError(f"Case.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "unbatched" and batch != 1:
        raise ValueError(f"Case.layout 'unbatched' needs batch 1, got batch {batch}")


def laid_out(layout: str, a: np.ndarray, views: Views) -> Any:
    """``a`` (in the library's own axis order, batch first) as the library receives it under
    ``layout``: a view of a library array, built with ``views``."""
    if layout == "contiguous":
        return views.array(a)
    if layout == "unbatched":
        return views.array(a[0])
    if layout == "expanded":
        if a.shape[0] and not np.array_equal(a, np.broadcast_to(a[:1], a.shape), equal_nan=True):
            raise ValueError("layout 'expanded' needs the same values in every sample of the batch")
        return views.expand(views.array(np.ascontiguousarray(a[:1])), a.shape)
    if layout == "permuted":
        return views.swap_last(views.array(np.ascontiguousarray(np.swapaxes(a, -1, -2))))
    if layout == "strided":
        storage = np.full((*(s + 1 for s in a.shape[:-1]), 2 * a.shape[-1]), np.nan, a.dtype)
        window = (*(slice(1, None) for _ in a.shape[:-1]), slice(None, None, 2))
        storage[window] = a
        return views.array(storage)[window]
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def batched(layout: str, y: np.ndarray) -> np.ndarray:
    """A result computed from an unbatched input, with its batch axis back (others unchanged)."""
    return y[None] if layout == "unbatched" else y
