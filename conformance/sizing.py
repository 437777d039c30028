"""A case is sized before it runs: its inputs, outputs and the reference's temporaries.

:func:`estimate_bytes` is an upper estimate of the memory one case takes in the process that
runs it (inputs, reference, diff; a backend in the same process adds its own output), computed
from the shapes alone, before any array exists. A case over the cap gets the verdict
``too-large`` on every backend (with the estimate, the cap and the option that raises it) and
the run goes on, instead of a ``MemoryError`` traceback or a machine that swaps for an hour.

The cap defaults to a quarter of the machine's physical memory (:func:`default_cap_bytes`);
``run`` / ``replay --max-case-memory-mb MB`` and pytest's ``--conformance-max-case-memory-mb MB``
change it (0: no cap).
"""

from __future__ import annotations

import math
import os

from conformance.case import Case
from reference.core import BLOCK_BYTES

#: The cap where the machine's memory is unknown.
FALLBACK_CAP_BYTES = 4 * 2**30
OPTIONS = "--max-case-memory-mb MB (run, replay) or --conformance-max-case-memory-mb MB (pytest)"


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_cap_bytes() -> int:
    """A quarter of the physical memory (4 GiB where that is unknown)."""
    total = physical_memory_bytes()
    return total // 4 if total else FALLBACK_CAP_BYTES


def cap_bytes(max_case_memory_mb: int | None) -> int:
    """The cap in bytes: the default for None, none (0) for 0."""
    if max_case_memory_mb is None:
        return default_cap_bytes()
    return max(0, max_case_memory_mb) << 20


def parse_mb(text: object, option: str) -> int:
    """A whole number of MiB >= 0 given to ``option``; ValueError naming the option."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{option} {text!r}: give a whole number of MiB >= 0 (0: no limit)")
    return value


def _elements(shape: tuple[int, ...] | None) -> int:
    return 0 if shape is None else math.prod(max(s, 0) for s in shape)


def output_shape(case: Case) -> tuple[int, ...] | None:
    """The output shape, or None for a case the reference rejects."""
    from conformance.inputs import check_case

    try:
        return check_case(case)
    except ValueError:
        return None


def estimate_bytes(case: Case) -> int:
    """Upper estimate of the bytes one case takes in the process that runs it: the float32
    (float64) inputs (and the float64 draw of the largest), the reference's |x|, |w| and
    float64 weight copies, its blocks and its kernel taps (a few hundred bytes of Python
    objects each: a 1000^3 kernel is gigabytes before any product), and per output element
    the float64 output, sum |x||w| and terms, the error bound's and the diff's temporaries and
    a backend's output (measured: about 100 bytes). An invalid case is sized by its inputs."""
    x, w, b = (_elements(s) for s in (case.x_shape, case.w_shape, case.bias_shape))
    shape = output_shape(case)
    out = _elements(shape)
    carried = 8 if case.dtype == "float64" else 4  # conformance.dtypes.carrier
    inputs = carried * (x + w + b) + 8 * max(x, w, b)
    reference = 8 * (x + b) + 24 * w + 2 * BLOCK_BYTES
    taps = 0 if shape is None else _elements(case.kernel) * (120 + 220 * case.ndim)
    outputs = 128 * out
    return inputs + reference + taps + outputs


def human(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{math.ceil(n / 2**20)} MiB"


def too_large_detail(estimate: int, cap: int, default: bool) -> str:
    where = " (a quarter of this machine's memory)" if default else ""
    return (
        f"not run: needs about {human(estimate)} (inputs, outputs and the reference's "
        f"temporaries), over the cap of {human(cap)} per case{where}; raise the cap with "
        f"{OPTIONS}"
    )
