"""The runner: one case through the reference once and then through every backend.

Each backend gets one :class:`Record`. The reference result (with its error bound) is computed
once per case and shared by all backends.

A case goes through three steps: begun (its inputs made and handed to every isolated backend's
worker at once), gathered (the reference, then each backend's output or error, in order) and
finished (each output judged: the records). :meth:`Runner.run_cases` begins the next case as
soon as one is gathered, so the workers compute it while this process judges the first; the
records and their order are those of one case at a time (:meth:`Runner.run_case`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from conformance import diff as D
from conformance.backends import Backend
from conformance.backends.base import unsupported
from conformance.case import Case
from conformance.diff import DiffMetrics, Tolerance
from conformance.directions import expected, judge
from conformance.guard import Fingerprint, changed, fingerprint, mutation_detail, read_only, restore
from conformance.inputs import Inputs, make_inputs
from conformance.isolation import (
    RemoteError,
    Ticket,
    WorkerCrashed,
    WorkerStartError,
    WorkerTimeout,
)
from conformance.known_failures import KnownFailures
from conformance.messages import cap_text, detail_text
from conformance.sizing import cap_bytes, default_cap_bytes, estimate_bytes, too_large_detail
from conformance.timing import BACKEND_PREFIX, StageTimes


def _call_seconds(start: float, ticket: Ticket | None) -> float:
    """The seconds a backend call cost: what the worker measured plus the hand-over, for a
    case handed out ahead (its wall time overlaps other backends'), else the wall time."""
    if ticket is not None and ticket.seconds is not None:
        return ticket.seconds
    return time.perf_counter() - start


def tolerance_option(factor: float, statistical: bool = True) -> str:
    """The tolerance options of a replay command: `` --tolerance-factor C`` unless c is the
    default 1, and `` --proven-bound-only`` when the statistical tier was off; "" for the
    defaults."""
    option = "" if statistical else " --proven-bound-only"
    if factor == 1:
        return option
    text = f"{factor:g}"
    if float(text) != factor:  # more digits than %g keeps
        text = repr(float(factor))
    return f" --tolerance-factor {text}{option}"


def replay_command(
    case_id: str,
    backend: str,
    plugin: str | None = None,
    tolerance_factor: float = 1.0,
    tolerance_statistical: bool = True,
) -> str:
    """The command that reruns one case on one backend: with the plugin that provides the
    backend and the run's tolerance options where they are not the defaults."""
    extra = (f" --plugin {plugin}" if plugin else "") + tolerance_option(
        tolerance_factor, tolerance_statistical
    )
    return f"python -m conformance replay {case_id} --backends {backend}{extra}"


@dataclass(frozen=True)
class Record:
    """One case on one backend: the verdict and everything needed to act on it."""

    case_id: str
    backend: str
    verdict: str
    detail: str = ""
    seconds: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    reference_error: str | None = None
    metrics: DiffMetrics | None = None
    known_failure: str | None = None
    fixed: bool = False
    case: dict[str, object] = field(default_factory=dict)
    #: ``module:attribute`` of the plugin that provides the backend (None for built-ins).
    plugin: str | None = None
    #: ``c`` of the error bound the record was judged with (``--tolerance-factor``).
    tolerance_factor: float = 1.0
    #: False: judged by the proven error bound alone, without the statistical precision tier
    #: (``--proven-bound-only``; no ``precision-mismatch``).
    tolerance_statistical: bool = True
    #: The id of the failing case of the run this case was shrunk from (``run --shrink-budget``),
    #: or None for a case of the run's own list.
    shrunk_from: str | None = None

    @property
    def failed(self) -> bool:
        """A failure that is not covered by a known-failures entry."""
        return D.is_failure(self.verdict) and self.known_failure is None

    @property
    def replay(self) -> str:
        return replay_command(
            self.case_id,
            self.backend,
            self.plugin,
            self.tolerance_factor,
            self.tolerance_statistical,
        )

    def summary(self) -> str:
        """A multi-line, human-readable account of this record (used by pytest and the CLI)."""
        lines = [f"{self.case_id} on {self.backend}: {self.verdict}"]
        if self.shrunk_from:
            lines.append(f"  shrunk during the run from {self.shrunk_from}")
        if self.detail:
            lines.append(f"  {self.detail}")
        if self.reference_error and self.verdict != D.BOTH_REJECTED:
            lines.append(f"  reference rejected the case: {self.reference_error}")
        m = self.metrics
        if m is not None and D.is_failure(self.verdict):
            rel = "n/a" if m.max_rel_error is None else f"{m.max_rel_error:.3g}"
            lines.append(
                f"  max abs err {m.max_abs_error:.3g}, max rel err {rel}, max ulp {m.max_ulp}, "
                f"max err/bound {m.max_error_over_bound:.3g}, over tolerance {m.over_tolerance}"
                f"/{m.elements} ({m.over_fraction:.1%})"
            )
            if m.worst is not None:
                w = m.worst
                lines.append(
                    f"  worst: batch {w.batch}, position {w.position}, channel {w.channel}: "
                    f"got {w.got:.8g}, want {w.want:.8g} "
                    f"(|err| {w.abs_error:.3g}, bound {w.bound:.3g})"
                )
            if m.pattern:
                lines.append(f"  pattern: {m.pattern}")
            if m.precision_hint:
                lines.append(f"  hint: {m.precision_hint}")
        if self.known_failure:
            lines.append(f"  known failure: {self.known_failure}")
        if self.fixed:
            lines.append(
                "  FIXED: listed as failing (known failure or saved regression) but passes now"
            )
        lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "case_id": self.case_id,
            "backend": self.backend,
            "verdict": self.verdict,
            "detail": self.detail,
            "seconds": self.seconds,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "reference_error": self.reference_error,
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "known_failure": self.known_failure,
            "fixed": self.fixed,
            "case": self.case,
            "plugin": self.plugin,
            "tolerance_factor": self.tolerance_factor,
            "tolerance_statistical": self.tolerance_statistical,
            "shrunk_from": self.shrunk_from,
            "replay": self.replay,
        }


@dataclass
class _Started:
    """A case begun by :meth:`Runner._begin`: its inputs, handed ahead to the isolated
    backends in ``tickets`` (by name); or its ``records`` already, when it does not run."""

    case: Case
    backends: list[Backend]
    times: StageTimes
    records: list[Record] | None = None
    inputs: Inputs | None = None
    #: Fingerprint of the inputs, for the backends that run in this process.
    before: Fingerprint | None = None
    tickets: dict[str, Ticket] = field(default_factory=dict)

    def abandon(self) -> None:
        """Give up the tickets not collected (the run stopped in between): their workers
        are stopped, or their replies would be read as the next case's."""
        for backend in self.backends:
            if self.tickets.pop(backend.name, None) is not None:
                getattr(backend, "abandon", lambda: None)()


@dataclass
class _Outcome:
    """One backend's call on a case, not judged yet: its output or the error it raised, or a
    record decided without a call (unsupported, a listed crash kept out of this process)."""

    base: dict[str, object]
    record: Record | None = None
    got: object = None
    error: Exception | None = None
    seconds: float | None = None
    mutated: list[str] = field(default_factory=list)


@dataclass
class _Gathered:
    """A case's reference (or why the reference rejected it) and its backends' outcomes."""

    ref: object
    ref_error: str | None
    outcomes: list[_Outcome]


class Runner:
    def __init__(
        self,
        backends: Iterable[Backend],
        *,
        tolerance: Tolerance = Tolerance(),
        known: KnownFailures | None = None,
        regressions: set[tuple[str, str]] = frozenset(),
        max_case_memory_mb: int | None = None,
    ) -> None:
        self.backends = [b for b in backends if b.availability.available]
        self.tolerance = tolerance
        self.known = known if known is not None else KnownFailures([])
        #: (case id, backend) of saved regressions: passing one of them is reported as fixed.
        self.regressions = regressions
        #: Seconds per stage over every case run so far (see :mod:`conformance.timing`).
        self.times = StageTimes()
        #: A case estimated over this many bytes is not run: verdict too-large (0: no cap;
        #: default a quarter of the machine's memory, see :mod:`conformance.sizing`).
        self.max_case_bytes = cap_bytes(max_case_memory_mb)
        self._default_cap = max_case_memory_mb is None
        #: Called with the case and the backend just before each backend call (a pool worker
        #: leaves a note of what it runs, for the error if a backend kills it).
        self.before_call: Callable[[Case, Backend], None] | None = None
        #: The last case described by :meth:`_described`, and its id and dict.
        self._last_case: Case | None = None
        self._last_description: tuple[str, dict[str, object]] = ("", {})

    def run_case(self, case: Case, backends: Iterable[Backend] | None = None) -> list[Record]:
        """The records of ``case`` on every backend (or only on ``backends``, e.g. on resume)."""
        todo = self.backends if backends is None else list(backends)
        return self._run_one(case, todo)[0]

    def run_case_on(self, case: Case, names: Iterable[str]) -> tuple[list[Record], StageTimes]:
        """The records of ``case`` on the backends named, and the seconds it took per stage
        (also added to :attr:`times`)."""
        by_name = {b.name: b for b in self.backends}
        return self._run_one(case, [by_name[n] for n in names])

    def run_cases(
        self, todo: Iterable[tuple[Case, Iterable[str]]]
    ) -> Iterator[tuple[Case, list[Record], StageTimes]]:
        """For each (case, backend names): the case, its records on those backends and its
        seconds per stage (also added to :attr:`times`), in order, as :meth:`run_case_on`
        gives them. Pipelined: once a case's outputs are in, the next case is handed to the
        isolated backends, whose workers compute it while this process judges the first
        (diffs, records) and the caller writes its records."""
        by_name = {b.name: b for b in self.backends}
        items = ((case, [by_name[n] for n in names]) for case, names in todo)
        started = self._begin_next(items)
        try:
            while started is not None:
                gathered = self._gather(started)
                current, started = started, self._begin_next(items)
                try:
                    records = self._finish(current, gathered)
                finally:
                    self.times.merge(current.times)
                yield current.case, records, current.times
        finally:
            if started is not None:  # stopped early: the next case's tickets
                started.abandon()

    def _begin_next(self, items: Iterator[tuple[Case, list[Backend]]]) -> _Started | None:
        item = next(items, None)
        return None if item is None else self._begin(*item, StageTimes())

    def _run_one(self, case: Case, todo: list[Backend]) -> tuple[list[Record], StageTimes]:
        """:meth:`run_case` on ``todo``, with the case's seconds per stage."""
        times = StageTimes()
        started = self._begin(case, todo, times)
        try:
            return self._finish(started, self._gather(started)), times
        finally:
            started.abandon()
            self.times.merge(times)

    def _begin(self, case: Case, todo: list[Backend], times: StageTimes) -> _Started:
        """Start ``case`` on ``todo``: its inputs, handed to the isolated backends that take it
        ahead (:meth:`_submit`); or its records already, when it cannot run (too large, inputs
        that cannot be allocated) or there is no backend to run it on."""
        started = _Started(case, todo, times)
        if not todo:
            started.records = []
            return started
        need = estimate_bytes(case) if self.max_case_bytes else 0
        if need > self.max_case_bytes:
            detail = too_large_detail(need, self.max_case_bytes, self._default_cap)
            started.records = [self._not_run(case, b, detail) for b in todo]
            return started
        with times.stage("inputs"):
            try:
                started.inputs = make_inputs(case)
            except (MemoryError, ValueError) as exc:  # NumPy: out of memory, "array is too big"
                detail = f"not run: its inputs cannot be allocated ({type(exc).__name__}: {exc})"
                started.records = [self._not_run(case, b, detail) for b in todo]
                return started
        # Hashed once, before the reference, for the backends that run in this process (an
        # isolated worker checks its own copies).
        if any(not getattr(b, "isolated", False) for b in todo):
            started.before = fingerprint(started.inputs)
        try:
            self._submit(started, need)
        except BaseException:
            started.abandon()
            raise
        return started

    def _submit(self, started: _Started, need: int) -> None:
        """Hand the case to every isolated backend that runs it, all at once, before the
        reference runs: the workers compute while this process works out the reference and
        judges the previous case, so a case costs its slowest backend, not the sum of them
        all. Not when the workers together would hold more than the per-case memory cap (the
        case's estimate ``need`` once per worker; the default cap when there is none): such
        a case runs one backend at a time."""
        case = started.case
        assert started.inputs is not None
        ahead = [
            b for b in started.backends if hasattr(b, "submit") and unsupported(b, case) is None
        ]
        if need == 0:
            need = estimate_bytes(case)
        if need * len(ahead) > (self.max_case_bytes or default_cap_bytes()):
            return
        for backend in ahead:
            if self.before_call is not None:
                self.before_call(case, backend)
            started.tickets[backend.name] = backend.submit(case, started.inputs)  # type: ignore[attr-defined]

    def _gather(self, started: _Started) -> _Gathered | None:
        """The reference and every backend's output (or error) for a started case, not judged
        yet; None for a case whose records are known already."""
        if started.records is not None:
            return None
        assert started.inputs is not None
        with started.times.stage("reference"):
            try:
                ref, ref_error = expected(started.case, started.inputs), None
            except ValueError as exc:
                ref, ref_error = None, str(exc)
        outcomes = [self._call(started, b, ref_error) for b in started.backends]
        return _Gathered(ref, ref_error, outcomes)

    def _finish(self, started: _Started, gathered: _Gathered | None) -> list[Record]:
        """The records of a gathered case: each output judged against the reference."""
        if started.records is not None:
            return started.records
        assert gathered is not None
        return [self._judge(started, gathered, o) for o in gathered.outcomes]

    def run(self, cases: Iterable[Case]) -> Iterator[Record]:
        for case in cases:
            yield from self.run_case(case)

    def _described(self, case: Case) -> tuple[str, dict[str, object]]:
        """The id and the dict of ``case``, worked out once for all its records (both walk
        every field; the runner asks for them once per backend)."""
        if self._last_case is not case:
            self._last_case, self._last_description = case, (case.id, case.to_dict())
        return self._last_description

    def _base(self, case: Case, backend: Backend, ref_error: str | None) -> dict[str, object]:
        """The fields of every record of ``case`` on ``backend``."""
        case_id, case_dict = self._described(case)
        return {
            "case_id": case_id,
            "backend": backend.name,
            "case": dict(case_dict),
            "reference_error": ref_error,
            "plugin": getattr(backend, "plugin_spec", None),
            "tolerance_factor": self.tolerance.factor,
            "tolerance_statistical": self.tolerance.statistical,
        }

    def _not_run(self, case: Case, backend: Backend, detail: str) -> Record:
        """``unsupported`` where the backend rules the case out, else ``too-large``."""
        base = self._base(case, backend, None)
        reason = unsupported(backend, case)
        if reason is not None:
            return Record(verdict=D.UNSUPPORTED, detail=reason, **base)  # type: ignore[arg-type]
        return Record(verdict=D.TOO_LARGE, detail=detail, **base)  # type: ignore[arg-type]

    def _call(self, started: _Started, backend: Backend, ref_error: str | None) -> _Outcome:
        """Run (or collect) one backend on the started case: its output or the error it
        raised, and the input fields it wrote into (in this process it gets read-only views
        and the inputs are restored for the next backends; an isolated worker checks its own
        copies, :mod:`conformance.guard`). A worker that cannot even start ends the run."""
        case, inputs = started.case, started.inputs
        assert inputs is not None
        out = _Outcome(self._base(case, backend, ref_error))
        reason = unsupported(backend, case)
        if reason is not None:
            out.record = Record(verdict=D.UNSUPPORTED, detail=reason, **out.base)  # type: ignore[arg-type]
            return out
        isolated = getattr(backend, "isolated", False)
        if not isolated:
            out.record = self._kept_out(out.base)
            if out.record is not None:
                return out
        ticket = started.tickets.pop(backend.name, None)
        if self.before_call is not None and ticket is None:
            self.before_call(case, backend)
        start = time.perf_counter()
        try:
            if ticket is not None:  # handed out by _submit: an isolated backend
                out.got = backend.collect(ticket)  # type: ignore[attr-defined]
            else:
                out.got = backend.run(case, inputs if isolated else read_only(inputs))
        except WorkerStartError:  # a configuration error, not a verdict: ends the run
            raise
        except Exception as exc:  # every backend error is data
            out.error = exc.with_traceback(None)
        finally:
            out.seconds = _call_seconds(start, ticket)
            started.times.add(BACKEND_PREFIX + backend.name, out.seconds)
        if isolated:
            take = getattr(backend, "take_mutated", None)
            out.mutated = list(take()) if take is not None else []
        else:
            assert started.before is not None  # _begin hashes the inputs for in-process backends
            out.mutated = changed(inputs, started.before)
            if out.mutated:
                restore(case, inputs, out.mutated)
        return out

    def _kept_out(self, base: dict[str, object]) -> Record | None:
        """The record of a case listed as crashing an in-process backend: not run here."""
        probe = Record(verdict=D.CRASHED, **base)  # type: ignore[arg-type]
        entry = self.known.lookup(probe)
        if entry is None or entry.verdict != D.CRASHED or entry.error is not None:
            return None
        return replace(
            probe,
            detail="not run in this process: listed as crashing it; run isolated "
            "(the CLI default, or pytest --isolate) to check it again",
            known_failure=entry.reason,
        )

    def _judge(self, started: _Started, gathered: _Gathered, out: _Outcome) -> Record:
        """One backend's record: its output against the reference, or its error; a backend
        that wrote into its inputs gets ``mutated-input``."""
        if out.record is not None:
            return out.record
        base, seconds = out.base, out.seconds
        if out.error is not None:
            rec = self._error_record(out.error, base, seconds, gathered.ref_error)
        elif gathered.ref_error is not None:
            shape = getattr(out.got, "shape", None)
            rec = Record(
                verdict=D.ACCEPTED_INVALID,
                seconds=seconds,
                detail=f"returned an output of shape {shape} for an invalid case",
                **base,  # type: ignore[arg-type]
            )
        else:
            with started.times.stage("diff"):
                result = judge(started.case, out.got, gathered.ref, self.tolerance)
            rec = Record(
                verdict=result.verdict,
                detail=result.detail,
                seconds=seconds,
                metrics=result.metrics,
                **base,  # type: ignore[arg-type]
            )
        rec = self._with_known(rec)
        if not out.mutated:
            return rec
        otherwise = f"{rec.verdict}: {rec.detail}" if rec.detail else rec.verdict
        return self._with_known(
            replace(
                rec,
                verdict=D.MUTATED_INPUT,
                detail=detail_text(f"{mutation_detail(out.mutated)}; otherwise: ", otherwise),
                metrics=None,
                known_failure=None,
                fixed=False,
            )
        )

    def _error_record(
        self,
        exc: Exception,
        base: dict[str, object],
        seconds: float | None,
        ref_error: str | None,
    ) -> Record:
        """The record of a backend call that raised ``exc``: a dead or hung worker is
        ``crashed`` or ``timeout``, running out of memory in this process ``crashed``, any
        other error ``raised`` (``both-rejected`` when the reference rejected the case too)."""
        # Capped (a runaway message would bloat the stream and the report) and kept once: the
        # detail repeats it only when it is short.
        if isinstance(exc, (WorkerCrashed, WorkerTimeout)):
            message = cap_text(str(exc))
            verdict = D.CRASHED if isinstance(exc, WorkerCrashed) else D.TIMEOUT
            detail, type_name = detail_text("", message), type(exc).__name__
        elif isinstance(exc, MemoryError):  # in this process: out of memory, not a rejection
            message = cap_text(str(exc))
            verdict, type_name = D.CRASHED, "MemoryError"
            detail = detail_text("out of memory (in this process): MemoryError: ", message)
        else:
            message = cap_text(str(exc).strip() or repr(exc))
            verdict = D.BOTH_REJECTED if ref_error else D.RAISED
            type_name = exc.type_name if isinstance(exc, RemoteError) else type(exc).__name__
            detail = detail_text(f"{type_name}: ", message)
        return Record(
            verdict=verdict,
            detail=detail,
            seconds=seconds,
            error_type=type_name,
            error_message=message,
            **base,  # type: ignore[arg-type]
        )

    def _with_known(self, rec: Record) -> Record:
        if D.is_failure(rec.verdict):
            entry = self.known.lookup(rec)
            if entry is not None:
                return replace(rec, known_failure=entry.reason)
            return rec
        if self.known.exact(rec.backend, rec.case_id) is not None or (
            rec.verdict in (D.PASS, D.BOTH_REJECTED)
            and (rec.case_id, rec.backend) in self.regressions
        ):
            return replace(rec, fixed=True)
        return rec
