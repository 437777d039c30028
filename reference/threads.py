"""BLAS threads per call: a small product never wakes the BLAS thread pool, and no product
spins threads on cores that other processes are using.

NumPy's OpenBLAS splits every product over all cores and spins its threads while they wait.
Measured on a 2-core machine (``nox -s bench``; one thread over two, the reference with its
bound, on the real-network corpus layers):

* idle, two threads win on products above ~10^7 multiply-adds (1.1-1.7x) and tie below;
* beside one busy process, one thread wins at every size, by 1.3-3.4x: the spinning thread and
  the one that lost its core stall each other.

So an op runs on one BLAS thread when its products are small (:data:`SMALL_OP_MACS`), and
otherwise on as many as there are cores that no other process is running on now (Linux:
``procs_running`` of ``/proc/stat`` less this process's own running threads), never more than
the library's default. Elsewhere only the size rule applies. The limit goes through
``threadpoolctl`` (a dependency); without it the calls are unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

#: Multiply-adds (output and bound together) below which an op runs on one BLAS thread.
SMALL_OP_MACS = 1 << 24


@cache
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    return ThreadpoolController()


def _default_threads(controller) -> int:
    return max(
        (lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"),
        default=1,
    )


def _own_running_threads() -> int:
    running = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        running += stat[stat.rindex(")") + 2] == "R"
    return running


#: How long a reading of the free cores is reused (reading costs ~0.25 ms; ops take ~1 ms up).
FREE_CORES_TTL = 0.05
_last_reading: tuple[float, int | None] = (-1.0, None)


def free_cores() -> int | None:
    """Cores not running another process's thread now (read at most every FREE_CORES_TTL
    seconds), or None where that is unknown."""
    global _last_reading
    now = time.monotonic()
    if now - _last_reading[0] > FREE_CORES_TTL:
        _last_reading = (now, _read_free_cores())
    return _last_reading[1]


def _read_free_cores() -> int | None:
    try:
        with open("/proc/stat") as fh:
            line = next(line for line in fh if line.startswith("procs_running"))
        others = int(line.split()[1]) - _own_running_threads()
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(1, (os.cpu_count() or 1) - max(others, 0))


def threads_for(macs: int, default: int) -> int:
    """BLAS threads for an op of ``macs`` multiply-adds, given the library's ``default``."""
    if macs < SMALL_OP_MACS:
        return 1
    free = free_cores()
    return default if free is None else max(1, min(default, free))


@contextmanager
def blas_threads_for(macs: int) -> Iterator[None]:
    """Run the block with :func:`threads_for` BLAS threads (unchanged if that is the default)."""
    controller = _controller()
    if controller is None:
        yield
        return
    default = _default_threads(controller)
    threads = threads_for(macs, default)
    if threads >= default:
        yield
        return
    with controller.limit(limits=threads, user_api="blas"):
        yield
