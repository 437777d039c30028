"""Runs cases in worker processes: ``python -m conformance run --workers N`` (or ``-n N``).

A :class:`RunSpec` says how to build a :class:`~conformance.runner.Runner` (backends, isolation,
time budget, tolerance, known failures, saved regressions); the serial run builds one in this
process, and each of the N workers of a :class:`WorkerPool` builds its own. Each worker is a
spawned process that takes one case at a time and sends back its records and the seconds it
spent per stage; the pool hands the results back in the order the cases were given, so the
stream, the results JSON and the report of a parallel run are the same as a serial run's (only
the timings differ).

A worker runs the reference and the diffs itself; with isolation (the default) each worker
starts its own isolated process per backend, so a crash or a timeout costs one case in one
worker. Each worker gets ``cpus // N`` BLAS / OpenMP threads (at least one), so N workers do
not oversubscribe the cores.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from conformance.backends import Backend, resolve
from conformance.case import Case
from conformance.diff import Tolerance
from conformance.isolation import (
    DEFAULT_MEMORY_MB,
    IsolatedBackend,
    TimeBudget,
    WorkerStartError,
)
from conformance.known_failures import KnownFailures
from conformance.runner import Record, Runner
from conformance.timing import StageTimes

#: Environment variables that size the thread pools of OpenBLAS, MKL, OpenMP (torch) and MLX.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Cases sent ahead to each worker, so it never waits for the parent between cases.
IN_FLIGHT_PER_WORKER = 2
#: ``--workers auto`` takes one per CPU up to this many: each worker starts one process per
#: backend (about 0.3 GB each with PyTorch loaded), so 64 CPUs x 5 backends would be too many.
MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def parse_workers(text: str) -> int:
    """``auto`` (one per CPU, at most :data:`MAX_AUTO_WORKERS`) or a whole number >= 1;
    ValueError naming the option otherwise."""
    if text.strip().lower() == "auto":
        return min(available_cpus(), MAX_AUTO_WORKERS)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--workers {text!r}: give a whole number >= 1 or 'auto'")
    return n


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to build the runner of a run, in this process or in a worker."""

    backends: tuple[str, ...] | None = None
    plugins: tuple[str, ...] = ()
    allow_tf32: bool = False
    isolate: bool = True
    budget: TimeBudget = TimeBudget()
    memory_mb: int = DEFAULT_MEMORY_MB
    tolerance_factor: float = 1.0
    #: False: the proven bound alone, no statistical precision tier (--proven-bound-only).
    tolerance_statistical: bool = True
    regressions: frozenset[tuple[str, str]] = frozenset()
    #: The per-case memory cap in MiB (None: the default, 0: none; conformance.sizing).
    max_case_memory_mb: int | None = None

    def resolve(self) -> list[Backend]:
        """Every requested backend (available or not)."""
        return resolve(
            list(self.backends) if self.backends else None,
            plugins=list(self.plugins),
            allow_tf32=self.allow_tf32,
        )

    def runnable(self, backends: Sequence[Backend]) -> list[Backend]:
        """The available ones, each in its own worker process unless isolation is off."""
        available = [b for b in backends if b.availability.available]
        if not self.isolate:
            return available
        return [
            IsolatedBackend(
                b,
                plugins=self.plugins,
                allow_tf32=self.allow_tf32,
                timeout=self.budget.for_backend(b.name),
                memory_mb=self.memory_mb,
            )
            for b in available
        ]

    def runner(self, backends: Sequence[Backend] | None = None) -> Runner:
        return Runner(
            self.runnable(self.resolve() if backends is None else backends),
            tolerance=Tolerance(self.tolerance_factor, statistical=self.tolerance_statistical),
            known=KnownFailures.load(),
            regressions=set(self.regressions),
            max_case_memory_mb=self.max_case_memory_mb,
        )


def close_runner(runner: Runner) -> None:
    """Close the runner's isolated backends: all are asked to exit first, then each is waited
    for, so that their interpreters wind down together rather than one after another."""
    isolated = [b for b in runner.backends if isinstance(b, IsolatedBackend)]
    for b in isolated:
        b.stop()
    for b in isolated:
        b.close()


def start_isolated(runner: Runner, names: set[str] | None = None) -> None:
    """Start the isolated workers now, all at once (each imports its backend meanwhile)."""
    for b in runner.backends:
        if isinstance(b, IsolatedBackend) and (names is None or b.name in names):
            b.start()


#: Bytes of the note a pool worker keeps of the case and backend it is running.
NOTE_BYTES = 512


def _leave_note(note, case: Case, backend: Backend) -> None:
    note.value = f"{case.id} on {backend.name}".encode()[: NOTE_BYTES - 1]


def _worker_main(conn: Connection, spec: RunSpec, note=None) -> None:
    """A pool worker: build the runner, then run each case sent until ``None`` comes. Before
    each backend call it writes the case and backend to ``note`` (shared memory), which the
    parent reads if a backend in this process kills it (``--no-isolation``)."""
    runner = None
    try:
        runner = spec.runner()
        if note is not None:
            runner.before_call = lambda case, backend: _leave_note(note, case, backend)
        start_isolated(runner)
        conn.send(("ready", [b.name for b in runner.backends]))
        while (message := conn.recv()) is not None:
            index, case, names = message
            records, times = runner.run_case_on(case, names)
            if note is not None:
                note.value = b""
            conn.send(("done", index, records, times))
    except (EOFError, KeyboardInterrupt):
        pass
    except WorkerStartError as exc:  # a configuration error: its message says it all
        try:
            conn.send(("fatal", str(exc)))
        except OSError:
            pass
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        if runner is not None:
            close_runner(runner)


class WorkerError(RuntimeError):
    """A pool worker failed outside of a backend (which would be a record, not an error)."""


@contextmanager
def _threads_per_worker(threads: int) -> Iterator[None]:
    """Set the thread-count variables that spawned workers inherit; restore them after."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class WorkerPool:
    """N spawned workers, each with its own runner built from ``spec``."""

    def __init__(self, spec: RunSpec, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        self._notes = [ctx.Array(ctypes.c_char, NOTE_BYTES, lock=False) for _ in range(workers)]
        self.isolated = spec.isolate
        with _threads_per_worker(max(1, available_cpus() // workers)):
            for i in range(workers):
                parent, child = ctx.Pipe()
                # Not a daemon: an isolated backend is a child process of the worker.
                proc = ctx.Process(
                    target=_worker_main,
                    args=(child, spec, self._notes[i]),
                    name=f"convcheck-worker-{i}",
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        try:
            for conn in self._conns:
                self._receive(conn, "starting")
        except BaseException:
            self.close()  # the others are not daemons: left waiting, they would block exit
            raise

    def _died(self, conn: Connection, doing: str) -> WorkerError:
        """The error for a worker that went away while ``doing``: how it died, and the case
        and backend it was running if it left a note."""
        i = self._conns.index(conn)
        proc = self._procs[i]
        proc.join(timeout=10)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        note = self._notes[i].value.decode(errors="replace")
        doing = f"running {note}" if note else doing
        advice = (
            "a backend that crashes its process ends a --no-isolation run; drop --no-isolation "
            "to get the verdict crashed for that case and go on"
            if not self.isolated
            else "see its output above"
        )
        return WorkerError(f"worker {i} died while {doing} ({how}); {advice}")

    def _receive(self, conn: Connection, doing: str) -> tuple:
        try:
            reply = conn.recv()
        except (EOFError, OSError):  # OSError: ConnectionResetError with cases still unread
            raise self._died(conn, doing) from None
        if reply[0] == "error":
            raise WorkerError(f"worker failed while {doing}:\n{reply[1]}")
        if reply[0] == "fatal":
            raise WorkerError(reply[1])
        return reply

    def _send(self, conn: Connection, message: object, doing: str) -> None:
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
            raise self._died(conn, doing) from None

    def run(
        self, todo: Sequence[tuple[Case, Sequence[str]]]
    ) -> Iterator[tuple[Case, list[Record], StageTimes]]:
        """Each case's records (on the named backends) and stage times, in the order given."""
        pending = list(enumerate(todo))[::-1]
        busy: dict[Connection, int] = {c: 0 for c in self._conns}
        done: dict[int, tuple[list[Record], StageTimes]] = {}
        where: dict[int, Connection] = {}
        next_out = 0

        def feed(conn: Connection) -> None:
            while pending and busy[conn] < IN_FLIGHT_PER_WORKER:
                index, (case, names) = pending.pop()
                self._send(conn, (index, case, list(names)), f"running {case.id}")
                busy[conn] += 1
                where[index] = conn

        for conn in self._conns:
            feed(conn)
        while next_out < len(todo):
            while next_out in done:
                records, times = done.pop(next_out)
                yield todo[next_out][0], records, times
                next_out += 1
            if next_out >= len(todo):
                break
            for conn in wait([c for c, n in busy.items() if n]):
                assert isinstance(conn, Connection)
                case = todo[min(i for i, c in where.items() if c is conn)][0]
                _, index, records, times = self._receive(conn, f"running {case.id}")
                busy[conn] -= 1
                del where[index]
                done[index] = (records, times)
                feed(conn)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
