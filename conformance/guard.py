"""Inputs guarded against backends that write into them.

Every backend of a case gets the same input arrays. In this process the runner hands each
backend read-only views and compares a fingerprint (shape, dtype and a BLAKE2 hash of the bytes)
of every array before and after the call, so a backend that flips the writeable flag or writes
through a raw pointer is caught too; the arrays are then restored (regenerated from the case
seed), so the backends after it and later uses of the cached inputs see the original values.
An isolated worker (:mod:`conformance.isolation`) does the same check on its own copies and
reports what changed. A backend that changed its inputs gets the verdict ``mutated-input``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from conformance.case import Case
from conformance.inputs import Inputs, make_inputs

FIELDS = ("x", "w", "bias", "dy")
#: How the fields are named in messages.
LABELS = {"x": "x", "w": "w (the weight)", "bias": "bias", "dy": "dy (the cotangent)"}


def _digest(a: np.ndarray) -> tuple[object, ...]:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return (a.shape, a.dtype.str, h.digest())


Fingerprint = tuple[tuple[object, ...] | None, ...]


def fingerprint(inputs: Inputs) -> Fingerprint:
    """Shape, dtype and hash of each input array (None for a missing bias)."""
    return tuple(
        None if getattr(inputs, f) is None else _digest(np.asarray(getattr(inputs, f)))
        for f in FIELDS
    )


def changed(inputs: Inputs, before: Fingerprint) -> list[str]:
    """The fields of ``inputs`` whose contents differ from ``before``."""
    return [f for f, old, new in zip(FIELDS, before, fingerprint(inputs)) if old != new]


def _read_only_view(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    view = a.view()
    view.setflags(write=False)
    return view


def read_only(inputs: Inputs) -> Inputs:
    """Read-only views of the arrays (a view's flag cannot be set back while its base is
    read-only; a backend that writes anyway is caught by :func:`changed`)."""
    return Inputs(*(_read_only_view(getattr(inputs, f)) for f in FIELDS))


def restore(case: Case, inputs: Inputs, fields: list[str]) -> None:
    """Put fresh arrays of ``case`` (from its seed, read-only) in place of the changed
    ``fields`` of ``inputs``, which is the cached object :func:`make_inputs` returns."""
    fresh = make_inputs.__wrapped__(case)
    for f in fields:
        object.__setattr__(inputs, f, getattr(fresh, f))


def mutation_detail(fields: list[str] | tuple[str, ...]) -> str:
    names = ", ".join(LABELS.get(f, f) for f in fields)
    return (
        f"wrote into its input {names} in place (inputs are read-only; the other backends "
        "and the reference got the original values)"
    )
