"""The runner: one case through the reference once and then through every backend.

Each backend gets one :class:`Record`. The reference result (with its error bound) is computed
once per case and shared by all backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from conformance import diff as D
from conformance.backends import Backend
from conformance.case import Case
from conformance.diff import DiffMetrics, Tolerance
from conformance.guard import Fingerprint, changed, fingerprint, mutation_detail, read_only, restore
from conformance.inputs import make_inputs, run_reference
from conformance.isolation import RemoteError, WorkerCrashed, WorkerStartError, WorkerTimeout
from conformance.known_failures import KnownFailures
from conformance.messages import cap_text, detail_text
from conformance.sizing import cap_bytes, estimate_bytes, too_large_detail
from conformance.timing import BACKEND_PREFIX, StageTimes


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

    def run_case(self, case: Case, backends: Iterable[Backend] | None = None) -> list[Record]:
        """The records of ``case`` on every backend (or only on ``backends``, e.g. on resume)."""
        todo = self.backends if backends is None else list(backends)
        if not todo:
            return []
        need = estimate_bytes(case) if self.max_case_bytes else 0
        if need > self.max_case_bytes:
            detail = too_large_detail(need, self.max_case_bytes, self._default_cap)
            return [self._not_run(case, b, detail) for b in todo]
        with self.times.stage("inputs"):
            try:
                inputs = make_inputs(case)
            except (MemoryError, ValueError) as exc:  # NumPy: out of memory, "array is too big"
                detail = f"not run: its inputs cannot be allocated ({type(exc).__name__}: {exc})"
                return [self._not_run(case, b, detail) for b in todo]
        # Hashed once, before the reference, for the backends that run in this process (an
        # isolated worker checks its own copies).
        in_process = any(not getattr(b, "isolated", False) for b in todo)
        before = fingerprint(inputs) if in_process else None
        with self.times.stage("reference"):
            try:
                ref = run_reference(case, inputs)
                ref_error = None
            except ValueError as exc:
                ref, ref_error = None, str(exc)
        return [self._run_backend(case, inputs, ref, ref_error, b, before) for b in todo]

    def run_case_on(self, case: Case, names: Iterable[str]) -> tuple[list[Record], StageTimes]:
        """The records of ``case`` on the backends named, and the seconds it took per stage
        (also added to :attr:`times`)."""
        by_name = {b.name: b for b in self.backends}
        total, self.times = self.times, StageTimes()
        try:
            records = self.run_case(case, [by_name[n] for n in names])
            return records, self.times
        finally:
            total.merge(self.times)
            self.times = total

    def run(self, cases: Iterable[Case]) -> Iterator[Record]:
        for case in cases:
            yield from self.run_case(case)

    def _base(self, case: Case, backend: Backend, ref_error: str | None) -> dict[str, object]:
        """The fields of every record of ``case`` on ``backend``."""
        return {
            "case_id": case.id,
            "backend": backend.name,
            "case": case.to_dict(),
            "reference_error": ref_error,
            "plugin": getattr(backend, "plugin_spec", None),
            "tolerance_factor": self.tolerance.factor,
            "tolerance_statistical": self.tolerance.statistical,
        }

    def _not_run(self, case: Case, backend: Backend, detail: str) -> Record:
        """``unsupported`` where the backend rules the case out, else ``too-large``."""
        base = self._base(case, backend, None)
        reason = backend.unsupported_reason(case)
        if reason is not None:
            return Record(verdict=D.UNSUPPORTED, detail=reason, **base)  # type: ignore[arg-type]
        return Record(verdict=D.TOO_LARGE, detail=detail, **base)  # type: ignore[arg-type]

    def _run_backend(
        self, case, inputs, ref, ref_error, backend: Backend, before: Fingerprint | None
    ) -> Record:
        """The record of one backend; one that wrote into its inputs gets ``mutated-input``
        (in this process it got read-only views, and the inputs are restored for the next
        backends; an isolated worker checks its own copies, :mod:`conformance.guard`)."""
        isolated = getattr(backend, "isolated", False)
        if isolated:
            rec = self._call_backend(case, inputs, ref, ref_error, backend)
            take = getattr(backend, "take_mutated", None)
            mutated = list(take()) if take is not None else []
        else:
            assert before is not None  # run_case hashes the inputs for in-process backends
            rec = self._call_backend(case, read_only(inputs), ref, ref_error, backend)
            mutated = changed(inputs, before)
            if mutated:
                restore(case, inputs, mutated)
        if not mutated:
            return rec
        otherwise = f"{rec.verdict}: {rec.detail}" if rec.detail else rec.verdict
        return self._with_known(
            replace(
                rec,
                verdict=D.MUTATED_INPUT,
                detail=detail_text(f"{mutation_detail(mutated)}; otherwise: ", otherwise),
                metrics=None,
                known_failure=None,
                fixed=False,
            )
        )

    def _call_backend(self, case, inputs, ref, ref_error, backend: Backend) -> Record:
        base = self._base(case, backend, ref_error)
        reason = backend.unsupported_reason(case)
        if reason is not None:
            return Record(verdict=D.UNSUPPORTED, detail=reason, **base)
        if not getattr(backend, "isolated", False):
            probe = Record(verdict=D.CRASHED, **base)
            entry = self.known.lookup(probe)
            if entry is not None and entry.verdict == D.CRASHED and entry.error is None:
                return replace(
                    probe,
                    detail="not run in this process: listed as crashing it; run isolated "
                    "(the CLI default, or pytest --isolate) to check it again",
                    known_failure=entry.reason,
                )
        if self.before_call is not None:
            self.before_call(case, backend)
        start = time.perf_counter()
        try:
            try:
                got = backend.run(case, inputs)
            finally:
                self.times.add(BACKEND_PREFIX + backend.name, time.perf_counter() - start)
        except WorkerStartError:  # a configuration error, not a verdict: ends the run
            raise
        except (WorkerCrashed, WorkerTimeout) as exc:
            verdict = D.CRASHED if isinstance(exc, WorkerCrashed) else D.TIMEOUT
            message = cap_text(str(exc))
            rec = Record(
                verdict=verdict,
                detail=detail_text("", message),
                seconds=time.perf_counter() - start,
                error_type=type(exc).__name__,
                error_message=message,
                **base,
            )
            return self._with_known(rec)
        except MemoryError as exc:  # in this process: out of memory, not a rejection
            message = cap_text(str(exc))
            rec = Record(
                verdict=D.CRASHED,
                detail=detail_text("out of memory (in this process): MemoryError: ", message),
                seconds=time.perf_counter() - start,
                error_type="MemoryError",
                error_message=message,
                **base,
            )
            return self._with_known(rec)
        except Exception as exc:  # every backend error is data
            seconds = time.perf_counter() - start
            verdict = D.BOTH_REJECTED if ref_error else D.RAISED
            # Capped (a runaway message would bloat the stream and the report) and kept once:
            # the detail repeats it only when it is short.
            message = cap_text(str(exc).strip() or repr(exc))
            type_name = exc.type_name if isinstance(exc, RemoteError) else type(exc).__name__
            rec = Record(
                verdict=verdict,
                detail=detail_text(f"{type_name}: ", message),
                seconds=seconds,
                error_type=type_name,
                error_message=message,
                **base,
            )
            return self._with_known(rec)
        seconds = time.perf_counter() - start
        if ref_error is not None:
            shape = getattr(got, "shape", None)
            rec = Record(
                verdict=D.ACCEPTED_INVALID,
                seconds=seconds,
                detail=f"returned an output of shape {shape} for an invalid case",
                **base,
            )
            return self._with_known(rec)
        with self.times.stage("diff"):
            result = D.compare(case, got, ref, self.tolerance)
        rec = Record(
            verdict=result.verdict,
            detail=result.detail,
            seconds=seconds,
            metrics=result.metrics,
            **base,
        )
        return self._with_known(rec)

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
