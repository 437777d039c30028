"""Run a backend in a worker process, so a crash or a hang costs one case, not the run.

:class:`IsolatedBackend` wraps a backend: it starts one worker process for it, reuses it across
cases and starts a new one after a crash or a timeout (from the first such loss on, a spare
worker is kept started, so the next loss costs no start). Workers are forked from a fork server
that has imported only the harness (:func:`worker_context`; spawned off Linux): each imports its
backend's library itself, so no library state is forked. The worker's stdout and stderr go to a
file whose last lines are reported with the crash.

A case can be handed to the worker (:meth:`IsolatedBackend.submit`) and its result read later
(:meth:`IsolatedBackend.collect`), so that the caller hands one case to every backend's worker
before it waits for any (:meth:`conformance.runner.Runner.run_cases`); ``run`` does both.

* the worker dies (segfault, abort, SIGFPE, OOM kill) -> :class:`WorkerCrashed`;
* the backend runs out of memory (the worker's memory limit, see below) ->
  :class:`WorkerOutOfMemory` (a :class:`WorkerCrashed`; the worker is replaced);
* no answer within ``timeout`` seconds -> the worker is killed -> :class:`WorkerTimeout`;
* the backend raises in the worker -> :class:`RemoteError` with the original type name;
* the backend hits a GPU fault that leaves its context unusable (an illegal instruction or
  memory access, a launch failure: :data:`DEVICE_FAULT_MARKERS`) -> :class:`WorkerDeviceFault`
  (a :class:`WorkerCrashed`; the worker is replaced, so the cases after it run on a fresh
  context instead of failing with the same sticky error, as a worker kept alive would make them);
* the backend writes into its input arrays (read-only views, checked after the call against a
  copy of their bytes, or their fingerprint when large, :mod:`conformance.guard`) ->
  :meth:`IsolatedBackend.take_mutated` names them;
* the worker cannot even start (load its backend) under its memory limit, and a worker
  without the limit needs more -> :class:`WorkerStartError`, a configuration error that ends
  the run (the message says how much it needs), instead of a crash for every case.

The runner turns these into the verdicts ``crashed``, ``timeout`` and ``raised``/``both-rejected``.

Memory limit: each worker sets ``RLIMIT_DATA`` to ``memory_mb`` MiB before it imports the backend
(0: no limit). On Linux (4.7+) that limit counts the private writable memory a process maps
(heap and anonymous ``mmap``: every array a backend allocates), not the address space it only
reserves, so a CUDA or MLX runtime that reserves terabytes of virtual addresses still starts,
which ``RLIMIT_AS`` would not allow. A backend that allocates past the limit gets an allocation
failure: ``MemoryError`` from NumPy, a "can't allocate memory" error from PyTorch's allocator, a
``std::bad_alloc`` or a crash from C++ code; each of these is reported as the worker running out
of memory (verdict ``crashed``, "out of memory" in the detail). macOS does not enforce the limit.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.guard import FIELDS, fingerprint, read_only
from conformance.inputs import Inputs
from conformance.messages import cap_text

DEFAULT_TIMEOUT = 120.0
#: Per-worker memory limit in MiB (0: none): generous, it is there to stop a runaway backend.
DEFAULT_MEMORY_MB = 16384
#: Seconds a worker may take to start and load its backend (importing torch on a loaded 2-core
#: machine takes several): a short per-case --timeout must not turn a slow start into a timeout.
START_TIMEOUT = 60.0
STDERR_TAIL_LINES = 12


@dataclass(frozen=True)
class TimeBudget:
    """Seconds one case may take per backend: a default and per-backend overrides.

    A slow backend (MLX on the CPU is ~100x slower than PyTorch on DCGAN-sized conv_transpose)
    can get a larger budget, or a smaller one to keep a run short; a case over its backend's
    budget is verdict ``timeout`` for that backend and the run goes on. Only isolated backends
    can be stopped, so the budget applies to them.
    """

    default: float = DEFAULT_TIMEOUT
    per_backend: tuple[tuple[str, float], ...] = ()

    def for_backend(self, name: str) -> float:
        return dict(self.per_backend).get(name, self.default)

    @classmethod
    def parse(cls, items: Iterable[str], option: str = "--timeout") -> TimeBudget:
        """From ``SECONDS`` (the default) and ``BACKEND=SECONDS`` items; ValueError naming
        ``option`` and the rule for a bad one."""
        default, per = DEFAULT_TIMEOUT, {}
        for item in items:
            name, sep, value = item.rpartition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = float("nan")
            if not seconds > 0 or seconds == float("inf"):
                raise ValueError(
                    f"{option} {item!r}: seconds must be a finite number > 0 "
                    "(SECONDS, or BACKEND=SECONDS for one backend)"
                )
            if sep and not name.strip():
                raise ValueError(f"{option} {item!r}: the backend name before '=' is empty")
            if sep:
                per[name.strip()] = seconds
            else:
                default = seconds
        return cls(default, tuple(sorted(per.items())))

    def describe(self) -> str:
        parts = [f"{self.default:g} s"] + [f"{n} {s:g} s" for n, s in self.per_backend]
        return ", ".join(parts)


#: Messages of allocation failures that are not a ``MemoryError`` (PyTorch, C++, libc).
OUT_OF_MEMORY_MARKERS = (
    "MemoryError",
    "can't allocate memory",
    "std::bad_alloc",
    "Cannot allocate memory",
    "out of memory",
)


#: CUDA errors after which every later call in the process fails ("sticky" errors).
DEVICE_FAULT_MARKERS = (
    "an illegal instruction was encountered",
    "an illegal memory access was encountered",
    "unspecified launch failure",
    "misaligned address",
    "device-side assert triggered",
    "operation not supported on global/shared address space",
    "invalid program counter",
    "hardware stack error",
)


def looks_like_device_fault(message: str) -> bool:
    """Whether an error message reports a GPU fault that leaves the context unusable."""
    return any(m in message for m in DEVICE_FAULT_MARKERS)


def looks_out_of_memory(type_name: str, message: str) -> bool:
    """Whether an error (by type name and message) is an allocation failure."""
    if type_name == "MemoryError":
        return True
    return any(m in message for m in OUT_OF_MEMORY_MARKERS)


class WorkerCrashed(RuntimeError):
    """The worker died: by a signal, or it exited. The message says how, with the last lines it
    printed (stdout and stderr)."""

    def __init__(
        self, backend: str, exitcode: int | None, stderr_tail: str, message: str | None = None
    ) -> None:
        self.exitcode = exitcode
        self.stderr_tail = stderr_tail
        if message is None:
            if exitcode is not None and exitcode < 0:
                try:
                    how = f"killed by {signal.Signals(-exitcode).name} (signal {-exitcode})"
                except ValueError:
                    how = f"killed by signal {-exitcode}"
                if exitcode == -signal.SIGKILL:
                    how += ", not sent by convcheck (the kernel's OOM killer?)"
            else:
                how = f"exited with code {exitcode}"
            oom = ", out of memory" if looks_out_of_memory("", stderr_tail) else ""
            tail = f"; last output (stdout + stderr): {stderr_tail}" if stderr_tail else ""
            message = f"{backend} worker {how}{oom}{tail}"
        super().__init__(message)


class WorkerOutOfMemory(WorkerCrashed):
    """The backend failed to allocate memory in its worker (usually: the worker's limit)."""

    def __init__(self, backend: str, limit_mb: int, type_name: str, message: str) -> None:
        self.limit_mb = limit_mb
        limit = f"limit {limit_mb} MiB" if limit_mb > 0 else "no limit set"
        super().__init__(
            backend,
            None,
            "",
            f"{backend} worker out of memory ({limit}): {type_name}: {message}; worker replaced",
        )


class WorkerDeviceFault(WorkerCrashed):
    """The backend hit a GPU fault; its context is unusable, so the worker was replaced."""

    def __init__(self, backend: str, type_name: str, message: str) -> None:
        super().__init__(
            backend,
            None,
            "",
            f"{backend} device fault: {type_name}: {message}; the GPU context is unusable "
            "after it, worker replaced",
        )


class WorkerTimeout(RuntimeError):
    def __init__(self, backend: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"{backend} gave no result within {seconds:g} s; worker killed")


class WorkerStartError(ValueError):
    """A backend's worker died or failed before its first case: a configuration error (a
    memory limit too small to load the library, a plugin that cannot be imported there), not
    a verdict. The runner lets it through; the CLI prints it and exits 2."""


def data_mib() -> int | None:
    """This process's data segment in MiB (what ``RLIMIT_DATA`` limits); None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return -(-int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    return None


class RemoteError(Exception):
    """An exception raised by the backend inside the worker, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)


def limit_memory(memory_mb: int) -> str | None:
    """Set this process's data limit to ``memory_mb`` MiB (0: leave it); None or why not."""
    if memory_mb <= 0:
        return None
    try:
        import resource
    except ImportError:  # not POSIX
        return "resource module not available"
    limit = memory_mb << 20
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY and hard < limit:
            limit = hard
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError) as exc:
        return f"cannot set RLIMIT_DATA: {exc}"
    return None


#: Modules every worker imports before its backend's library: on Linux the fork server that
#: workers are forked from imports them once (:func:`worker_context`), instead of each new
#: interpreter (about 0.35 s of CPU per worker start, and MLX's worker dies dozens of times in a
#: release run). Only the harness: the backend's library is imported after the fork.
WORKER_PRELOAD = ("conformance.isolation", "conformance.backends", "kernels.backends")


def worker_context() -> mp.context.BaseContext:
    """How worker processes are started: on Linux forked from a fork server that has imported
    :data:`WORKER_PRELOAD` (started once per process, on first use); elsewhere spawned (on
    macOS a fork is unsafe once system frameworks are loaded). Either way the worker imports
    its backend's library itself, and takes this process's current environment
    (``_worker_main``'s ``env``)."""
    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def _adopt_environment(env: dict[str, str] | None) -> None:
    """Make ``env`` this process's environment: a worker forked from the fork server would
    otherwise have the server's, as it was when the server started."""
    if env is not None and env != os.environ:
        os.environ.clear()
        os.environ.update(env)


def _yield_on_wakeup() -> None:
    """Mark this worker as batch work (Linux ``SCHED_BATCH``: the same share of the CPU, but a
    worker woken by a case does not preempt the process that sent it). The parent hands a case
    to every worker at once and then works out the reference: on a machine with few cores each
    wake-up preempting it made it the bottleneck. Elsewhere: nothing."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _worker_main(
    conn,
    name: str,
    plugins: tuple[str, ...],
    allow_tf32: bool,
    stderr_path: str,
    memory_mb: int = 0,
    env: dict[str, str] | None = None,
) -> None:
    _adopt_environment(env)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    # stdout too: native libraries report there before they give up (OpenBLAS's xerbla prints
    # "On entry to SGEMM parameter number 13 had an illegal value" and exits), and that line
    # belongs in the crash report, not in the middle of the parent's progress output.
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # Ctrl-C reaches the whole process group: the parent handles it and ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    problem = limit_memory(memory_mb)
    if problem:
        print(f"convcheck worker: memory limit not set: {problem}", file=sys.stderr)
    # Several workers share the cores and take turns; OpenMP threads that spin while their
    # worker waits would steal the CPU from the one that runs (20x slower torch on 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _yield_on_wakeup()
    try:
        from conformance.backends import resolve

        (backend,) = resolve([name], plugins=plugins, allow_tf32=allow_tf32)
        # Import the library now (the probe does): a worker that cannot load it under its
        # memory limit fails here, before its first case, not with a crash on every case.
        availability = backend.availability
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("start-failed", type(exc).__name__, cap_text(str(exc))))
        return
    if not availability.available:
        conn.send(("start-failed", "BackendUnavailable", cap_text(availability.detail)))
        return
    conn.send(("ready", data_mib()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        start = time.perf_counter()
        reply = _serve_case(backend, *msg)
        # The exception (and with it whatever the backend allocated) is gone here.
        try:
            conn.send((reply, time.perf_counter() - start))
        except MemoryError as exc:  # pickling a large output
            reply = ("oom", "MemoryError", f"sending the output back: {exc}")
            conn.send((reply, time.perf_counter() - start))
        if reply[0] in ("oom", "fault"):
            # The parent replaces this worker: its memory may be fragmented or leaked, or its
            # GPU context is unusable.
            return


#: Inputs up to this many bytes in all are checked for writes by a copy of their bytes, larger
#: ones by fingerprint (:mod:`conformance.guard`): for the small inputs of nearly every case a
#: copy and a compare cost a few microseconds where hashing costs tens, twice per call; a large
#: input is not held twice.
SNAPSHOT_MAX_BYTES = 1 << 20


def _inputs_state(inputs: Inputs) -> tuple:
    """What :func:`_serve_case` compares before and after the call, field by field
    (:data:`conformance.guard.FIELDS`): shape, dtype and bytes, or the fingerprint."""
    arrays = [getattr(inputs, f, None) for f in FIELDS]
    if sum(a.nbytes for a in arrays if a is not None) > SNAPSHOT_MAX_BYTES:
        return fingerprint(inputs)
    return tuple(None if a is None else (a.shape, a.dtype.str, a.tobytes()) for a in arrays)


def _serve_case(backend: Backend, case: Case, inputs: Inputs) -> tuple:
    """The worker's reply for one case: ``("ok", output)``, ``(kind, type name, message)`` for
    a failure (kind ``oom``, ``fault`` or ``error``), wrapped as ``("mutated", fields, reply)``
    when the backend wrote into its inputs (this worker's own copies, unpickled)."""
    before = _inputs_state(inputs)
    try:
        got = backend.run(case, read_only(inputs))
        # One array, or a tuple of them (a bwd_w case with a bias: both gradients).
        out = tuple(map(np.asarray, got)) if isinstance(got, (tuple, list)) else np.asarray(got)
        reply: tuple = ("ok", out)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back as data
        type_name, message = type(exc).__name__, str(exc)
        kind = "oom" if looks_out_of_memory(type_name, message) else "error"
        if looks_like_device_fault(message):
            kind = "fault"
        reply = (kind, type_name, cap_text(message))
    if reply[0] not in ("oom", "fault"):
        mutated = [f for f, old, new in zip(FIELDS, before, _inputs_state(inputs)) if old != new]
        if mutated:
            reply = ("mutated", mutated, reply)
    return reply


@dataclass
class Ticket:
    """A case sent to an isolated backend's worker, its reply not read yet
    (:meth:`IsolatedBackend.submit`, then :meth:`IsolatedBackend.collect`)."""

    #: ``time.perf_counter()`` when the case was handed over.
    sent: float
    #: Seconds this process took to hand it over (waiting for a starting worker, pickling).
    send_seconds: float = 0.0
    #: Why the worker could not take the case: raised by collect, in the backend's turn.
    error: Exception | None = None
    #: Set by collect: the call's cost, the worker's own seconds on the case plus this
    #: process's sending and receiving (the seconds since ``sent`` for a crash or a timeout).
    seconds: float | None = None


@dataclass(frozen=True)
class _Spare:
    """A worker started ahead of need, loading its backend (see ``IsolatedBackend._start``)."""

    proc: mp.process.BaseProcess
    conn: Connection


def _from_inner(name: str) -> property:
    """A read-only property that is the wrapped backend's attribute ``name``."""
    return property(lambda self: getattr(self.inner, name), doc=f"The inner backend's {name}.")


class IsolatedBackend(Backend):
    """``inner`` run in a worker process; same name, availability and limitations.

    Once a worker was lost to a case (crash, timeout, out of memory, device fault) a spare
    worker is kept started: the next loss swaps it in at once instead of making the next case
    wait for a fresh process to import its library (MLX's groups=0 cases crash by dozens in a
    release run, PyTorch takes seconds to import on a loaded machine).
    """

    isolated = True

    def __init__(
        self,
        inner: Backend,
        *,
        plugins: tuple[str, ...] = (),
        allow_tf32: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        memory_option: str = "--worker-memory-mb",
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.plugin_spec = inner.plugin_spec
        self.description = inner.description
        self.plugins = tuple(plugins)
        self.allow_tf32 = allow_tf32
        self.timeout = timeout
        self.memory_mb = memory_mb
        #: The option that set ``memory_mb``, named when the worker cannot start under it.
        self.memory_option = memory_option
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        #: The worker said it has loaded its backend.
        self._ready = False
        #: The input fields the last case's backend call wrote into (see take_mutated).
        self._mutated: tuple[str, ...] = ()
        #: The case sent and not collected yet.
        self._pending: Ticket | None = None
        #: A worker was lost to a case: keep a spare one started from then on.
        self._keep_spare = False
        self._spare: _Spare | None = None
        #: Output files of the active worker and of the spare (swapped when it takes over).
        self._stderr = _stderr_file(inner.name)
        self._spare_stderr: Path | None = None
        #: :meth:`stop` has asked the active worker to exit.
        self._asked_to_exit = False

    def probe(self) -> Availability:
        return self.inner.availability

    def unsupported_reason(self, case: Case) -> str | None:
        return self.inner.unsupported_reason(case)

    # What the inner backend computes and takes (ops, directions, dtypes, layouts, padding
    # modes, and the reasons for the rest): read from it, so unsupported() judges as it would.
    directions = _from_inner("directions")
    ops = _from_inner("ops")
    ops_note = _from_inner("ops_note")
    dtypes = _from_inner("dtypes")
    dtype_note = _from_inner("dtype_note")
    layouts = _from_inner("layouts")
    layout_note = _from_inner("layout_note")
    padding_modes = _from_inner("padding_modes")
    padding_mode_note = _from_inner("padding_mode_note")

    def _spawn(self, stderr: Path) -> tuple[mp.process.BaseProcess, Connection]:
        """A new worker process writing its output to ``stderr`` (emptied first)."""
        ctx = worker_context()
        parent, child = ctx.Pipe()
        stderr.write_bytes(b"")
        proc = ctx.Process(
            target=_worker_main,
            args=(
                child,
                self.name,
                self.plugins,
                self.allow_tf32,
                str(stderr),
                self.memory_mb,
                dict(os.environ),
            ),
            daemon=True,
            name=f"convcheck-{self.name}",
        )
        proc.start()
        child.close()
        return proc, parent

    def _start(self) -> None:
        """Make a worker the active one: the spare if it is alive, else a new process."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.proc.is_alive():
            assert self._spare_stderr is not None
            self._proc, self._conn = spare.proc, spare.conn
            self._stderr, self._spare_stderr = self._spare_stderr, self._stderr
        else:
            if spare is not None:
                _end_process(spare.proc, spare.conn)
            self._proc, self._conn = self._spawn(self._stderr)
        self._ready = False
        self._asked_to_exit = False
        if self._keep_spare:
            self._start_spare()

    def _start_spare(self) -> None:
        if self._spare is not None:
            return
        if self._spare_stderr is None:
            self._spare_stderr = _stderr_file(self.name)
        self._spare = _Spare(*self._spawn(self._spare_stderr))

    def _stderr_tail(self) -> str:
        try:
            lines = self._stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-STDERR_TAIL_LINES:])

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        conn, self._conn = self._conn, None
        self._pending = None
        return _end_process(proc, conn)

    def _lose_worker(self) -> int | None:
        """Kill the active worker after a case cost it (its exit code); from now on a spare
        is kept started, beginning now, so the next case does not wait for a start."""
        code = self._kill()
        self._keep_spare = True
        self._start_spare()
        return code

    def _crashed(self) -> WorkerCrashed:
        """The error for the active worker that died on a case: how it ended and what it
        printed last; the worker is replaced."""
        assert self._proc is not None
        self._proc.join(timeout=10)
        tail = self._stderr_tail()
        return WorkerCrashed(self.name, self._lose_worker(), tail)

    def start(self) -> None:
        """Start the worker now (it imports its backend while the caller goes on); optional."""
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()

    def check_start(self) -> None:
        """Start the worker if needed and wait until it has loaded its backend.

        A worker that cannot start under its memory limit (one without the limit needs more)
        raises :class:`WorkerStartError`; otherwise a worker that dies first raises
        :class:`WorkerCrashed`, one whose backend fails to load :class:`RemoteError`, one that
        does not answer in time :class:`WorkerTimeout`, as a case would."""
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
        if self._ready:
            return
        assert self._conn is not None and self._proc is not None
        wait = max(self.timeout, START_TIMEOUT)
        try:
            if not self._conn.poll(wait):
                self._kill()
                raise WorkerTimeout(self.name, wait)
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=10)
            tail = self._stderr_tail()
            crash = WorkerCrashed(self.name, self._kill(), tail)
            raise self._limit_error(str(crash)) or crash from None
        if reply[0] == "ready":
            self._ready = True
            return
        self._kill()
        _, type_name, message = reply
        raise self._limit_error(f"{type_name}: {message}") or RemoteError(type_name, message)

    def _limit_error(self, how: str) -> WorkerStartError | None:
        """The error for a worker that failed before its first case because of its memory
        limit: a worker without the limit starts, and needs more than the limit. None when
        no limit is set or it is not the cause."""
        if self.memory_mb <= 0:
            return None
        need = start_mib(self.inner.name, self.plugins, self.allow_tf32)
        if need is None or need <= self.memory_mb:
            return None
        return WorkerStartError(
            f"{self.memory_option} {self.memory_mb} is too small to start the {self.name} "
            f"worker (needs about {need} MiB before its first case); give more, or 0 for no "
            f"limit. Under the limit the worker failed with: {how}"
        )

    def take_mutated(self) -> tuple[str, ...]:
        """The input fields (``x``, ``w``, ``bias``) the last call wrote into; cleared."""
        mutated, self._mutated = self._mutated, ()
        return mutated

    def submit(self, case: Case, inputs: Inputs) -> Ticket:
        """Send ``case`` to the worker (started first if need be) and return without waiting
        for the result, which :meth:`collect` reads: the caller can do other work, or hand the
        case to other workers, meanwhile. An error that keeps the worker from taking the case
        is kept in the ticket and raised by :meth:`collect`."""
        if self._pending is not None:
            self.abandon()
        self._mutated = ()
        ticket = Ticket(sent=time.perf_counter())
        try:
            self.check_start()
            assert self._conn is not None
            self._conn.send_bytes(_case_message(case, inputs))
            self._pending = ticket
        except (EOFError, BrokenPipeError, ConnectionResetError):
            ticket.error = self._crashed()
        except Exception as exc:  # noqa: BLE001 - raised by collect, as run would raise it
            ticket.error = exc
        ticket.send_seconds = time.perf_counter() - ticket.sent
        return ticket

    def collect(self, ticket: Ticket) -> np.ndarray:
        """The output of the case ``ticket`` was given for, or what the case raised or did to
        the worker (see the module docstring). The time budget counts from this call, so a
        case whose result is collected late never gets less than ``timeout`` seconds."""
        if ticket.error is not None:
            ticket.seconds = ticket.send_seconds
            raise ticket.error
        if ticket is not self._pending:
            raise RuntimeError(f"{self.name}: this ticket's case is no longer pending")
        self._pending = None
        assert self._conn is not None
        try:
            if not self._conn.poll(self.timeout):
                ticket.seconds = time.perf_counter() - ticket.sent
                self._lose_worker()
                raise WorkerTimeout(self.name, self.timeout)
            received = time.perf_counter()
            reply, worker_seconds = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            ticket.seconds = time.perf_counter() - ticket.sent
            raise self._crashed() from None
        ticket.seconds = ticket.send_seconds + worker_seconds + time.perf_counter() - received
        return self._output(reply)

    def _output(self, reply: tuple) -> np.ndarray:
        """The output in a worker's reply, or the error it reports."""
        if reply[0] == "mutated":
            self._mutated = tuple(reply[1])
            reply = reply[2]
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "oom":
            self._lose_worker()
            raise WorkerOutOfMemory(self.name, self.memory_mb, reply[1], reply[2])
        if reply[0] == "fault":
            self._lose_worker()
            raise WorkerDeviceFault(self.name, reply[1], reply[2])
        raise RemoteError(reply[1], reply[2])

    def abandon(self) -> None:
        """Give up the case sent and not collected (its caller failed in between): the worker
        is stopped, or its reply would be read as the next case's."""
        if self._pending is not None:
            self._kill()

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        return self.collect(self.submit(case, inputs))

    def stop(self) -> None:
        """Ask the worker to exit, without waiting (see :meth:`close`): a caller with several
        backends asks them all first, so that they wind down together."""
        if self._conn is not None and self._pending is None and not self._asked_to_exit:
            self._asked_to_exit = True
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass

    def close(self) -> None:
        """Stop the worker (asked to exit, killed if it does not within 5 s) and the spare
        (killed: it holds nothing); remove their output files."""
        spare, self._spare = self._spare, None
        if spare is not None:
            _end_process(spare.proc, spare.conn)
        self.stop()
        if self._proc is not None and self._pending is None:
            self._proc.join(timeout=5)
        self._kill()
        for path in (self._stderr, self._spare_stderr):
            if path is not None:
                path.unlink(missing_ok=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _LastMessage:
    """The pickled message that hands a case and its inputs to a worker, made once for all
    the backends the case goes to: the last one is kept, keyed by the identity of the case and
    inputs objects (which it holds, so the identities stay theirs)."""

    def __init__(self) -> None:
        self._objects: tuple[Case, Inputs] | None = None
        self._payload = b""

    def __call__(self, case: Case, inputs: Inputs) -> bytes:
        held = self._objects
        if held is None or held[0] is not case or held[1] is not inputs:
            self._payload = bytes(ForkingPickler.dumps((case, inputs)))
            self._objects = (case, inputs)
        return self._payload


_case_message = _LastMessage()


def _stderr_file(name: str) -> Path:
    """A new file for a worker's stdout and stderr."""
    fd, path = tempfile.mkstemp(prefix=f"convcheck-{name}-", suffix=".stderr")
    os.close(fd)
    return Path(path)


def _end_process(proc: mp.process.BaseProcess | None, conn: Connection | None) -> int | None:
    """Close ``conn`` and kill ``proc`` if it still runs; its exit code (None: no process)."""
    if conn is not None:
        conn.close()
    if proc is None:
        return None
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)
    return proc.exitcode


@functools.cache
def start_mib(name: str, plugins: tuple[str, ...] = (), allow_tf32: bool = False) -> int | None:
    """:func:`measure_start_mib`, measured once per backend and process."""
    return measure_start_mib(name, plugins, allow_tf32)


def measure_start_mib(
    name: str, plugins: tuple[str, ...] = (), allow_tf32: bool = False, timeout: float = 300
) -> int | None:
    """Start a worker for backend ``name`` without a memory limit: its data segment in MiB
    once it has loaded the backend, or None if it cannot start either (or off Linux)."""
    ctx = worker_context()
    parent, child = ctx.Pipe()
    fd, stderr = tempfile.mkstemp(prefix=f"convcheck-{name}-probe-", suffix=".stderr")
    os.close(fd)
    proc = ctx.Process(
        target=_worker_main,
        args=(child, name, tuple(plugins), allow_tf32, stderr, 0, dict(os.environ)),
        daemon=True,
        name=f"convcheck-{name}-probe",
    )
    try:
        proc.start()
        child.close()
        reply = parent.recv() if parent.poll(timeout) else None
        if reply is not None and reply[0] == "ready":
            parent.send(None)
            return reply[1]
        return None
    except (EOFError, OSError):
        return None
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)
        parent.close()
        Path(stderr).unlink(missing_ok=True)
