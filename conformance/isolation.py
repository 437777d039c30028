"""Run a backend in a worker process, so a crash or a hang costs one case, not the run.

:class:`IsolatedBackend` wraps a backend: it starts one worker process for it (spawned, so no
forked library state), reuses it across cases and starts a new one after a crash or a timeout.
The worker's stderr goes to a file whose last lines are reported with the crash.

* the worker dies (segfault, abort, SIGFPE, OOM kill) -> :class:`WorkerCrashed`;
* no answer within ``timeout`` seconds -> the worker is killed -> :class:`WorkerTimeout`;
* the backend raises in the worker -> :class:`RemoteError` with the original type name.

The runner turns these into the verdicts ``crashed``, ``timeout`` and ``raised``/``both-rejected``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
from pathlib import Path

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.inputs import Inputs

DEFAULT_TIMEOUT = 120.0
STDERR_TAIL_LINES = 12


class WorkerCrashed(RuntimeError):
    def __init__(self, backend: str, exitcode: int | None, stderr_tail: str) -> None:
        self.exitcode = exitcode
        self.stderr_tail = stderr_tail
        if exitcode is not None and exitcode < 0:
            try:
                how = f"killed by {signal.Signals(-exitcode).name} (signal {-exitcode})"
            except ValueError:
                how = f"killed by signal {-exitcode}"
        else:
            how = f"exited with code {exitcode}"
        tail = f"; last stderr: {stderr_tail}" if stderr_tail else ""
        super().__init__(f"{backend} worker {how}{tail}")


class WorkerTimeout(RuntimeError):
    def __init__(self, backend: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"{backend} gave no result within {seconds:g} s; worker killed")


class RemoteError(Exception):
    """An exception raised by the backend inside the worker, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)


def _worker_main(
    conn, name: str, plugins: tuple[str, ...], allow_tf32: bool, stderr_path: str
) -> None:
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    # Several workers share the cores and take turns; OpenMP threads that spin while their
    # worker waits would steal the CPU from the one that runs (20x slower torch on 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from conformance.backends import resolve

    (backend,) = resolve([name], plugins=plugins, allow_tf32=allow_tf32)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        case_dict, x, w, b = msg
        try:
            out = backend.run(Case.from_dict(case_dict), Inputs(x, w, b))
            conn.send(("ok", np.asarray(out)))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as data
            conn.send(("error", type(exc).__name__, str(exc)))


class IsolatedBackend(Backend):
    """``inner`` run in a worker process; same name, availability and limitations."""

    isolated = True

    def __init__(
        self,
        inner: Backend,
        *,
        plugins: tuple[str, ...] = (),
        allow_tf32: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.plugin_spec = inner.plugin_spec
        self.description = inner.description
        self.plugins = tuple(plugins)
        self.allow_tf32 = allow_tf32
        self.timeout = timeout
        self._proc: mp.process.BaseProcess | None = None
        self._conn = None
        self._stderr = Path(
            tempfile.mkstemp(prefix=f"convcheck-{inner.name}-", suffix=".stderr")[1]
        )

    def probe(self) -> Availability:
        return self.inner.availability

    def unsupported_reason(self, case: Case) -> str | None:
        return self.inner.unsupported_reason(case)

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._stderr.write_bytes(b"")
        proc = ctx.Process(
            target=_worker_main,
            args=(child, self.name, self.plugins, self.allow_tf32, str(self._stderr)),
            daemon=True,
            name=f"convcheck-{self.name}",
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _stderr_tail(self) -> str:
        try:
            lines = self._stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-STDERR_TAIL_LINES:])

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        return proc.exitcode

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
        assert self._conn is not None
        try:
            self._conn.send((case.to_dict(), inputs.x, inputs.w, inputs.bias))
            if not self._conn.poll(self.timeout):
                self._kill()
                raise WorkerTimeout(self.name, self.timeout)
            reply = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            assert self._proc is not None
            self._proc.join(timeout=10)
            tail = self._stderr_tail()
            raise WorkerCrashed(self.name, self._kill(), tail) from None
        if reply[0] == "ok":
            return reply[1]
        raise RemoteError(reply[1], reply[2])

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(timeout=5)
        self._kill()
        self._stderr.unlink(missing_ok=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
