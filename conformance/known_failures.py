"""Known upstream failures, one TOML file per backend: ``cases/known_failures/<backend>.toml``.

Each entry names the case it covers, by exact id or by a glob over ids, the verdict it fails
with, and why::

    [[failure]]
    case = "conv_transpose1d-n1-c1x1-s3-k3-st2-op1-f32"   # exact id ...
    # match = "conv_transpose3d-*-g2-*"                  # ... or an fnmatch glob over ids
    verdict = "value-mismatch"                           # optional: only this verdict
    reason = "output_padding ignored when dilation > stride (mlx#1234)"

Optional narrowing fields, all of which must hold:

* ``hint``: text the diff engine's precision hint must contain (e.g. ``"float16 accumulation"``);
* ``error``: fnmatch glob over the backend's error message (for ``raised``/``crashed``);
* ``reference_error``: glob over the reference's rejection message (for ``accepted-invalid``);
* ``when``: the name of a case predicate from :data:`PREDICATES` (data, not code: no
  expression is ever evaluated).

A ``match`` glob covers the cases of one direction (:data:`conformance.case.DIRECTIONS`):
``direction`` says which, ``fwd`` (the default), ``bwd_d``, ``bwd_w`` or ``bwd`` for both
backward ones; an exact ``case`` id carries its own.

``cpu_has`` (a CPU flag, e.g. ``avx512bw``) limits an entry to CPUs with that feature, where the
library takes the code path that fails; elsewhere the entry is not loaded.

Hygiene: a ``match`` glob must name its ``verdict``, and a glob that matches every case must
also narrow by ``hint``, ``error``, ``reference_error`` or ``when``; otherwise the file is
refused when loaded. Every run counts the records each entry covered and matched
(:meth:`KnownFailures.usage`); an entry whose region the run covered without a match is
reported as stale.

A failing record that an entry covers is marked ``known_failure`` with the reason: it stays in
the results and the report, and does not fail the run. An exact-id entry whose case now passes is
marked ``fixed``, so an upstream fix shows up; remove the entry then.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from conformance import diff as D
from conformance import paths
from conformance.case import DIRECTIONS, Case, parse_id
from conformance.diff import VERDICTS
from conformance.dtypes import round_to
from conformance.inputs import make_inputs, reference_output, run_reference
from conformance.tomlfile import read_entries
from reference.special import flush_subnormals

if TYPE_CHECKING:
    from conformance.runner import Record

#: The known failures that ship with convcheck: the checkout's ``cases/known_failures``, or the
#: copy installed with the wheel (see :mod:`conformance.paths`).
DEFAULT_DIR = paths.known_failures_dir()


@dataclass(frozen=True)
class KnownFailure:
    backend: str
    reason: str
    case: str | None = None
    match: str | None = None
    verdict: str | None = None
    hint: str | None = None
    error: str | None = None
    reference_error: str | None = None
    when: str | None = None
    #: A CPU feature flag (as /proc/cpuinfo spells it, e.g. ``avx512bw``) the failure needs:
    #: on a CPU without it the library takes another code path, so the entry is not loaded
    #: there (it neither explains a record nor goes stale).
    cpu_has: str | None = None
    #: The direction a ``match`` glob covers: ``fwd``, ``bwd_d``, ``bwd_w`` or ``bwd`` (both).
    direction: str = "fwd"
    source: str = ""
    #: Position of the entry in its file, from 1.
    index: int = 0

    @property
    def label(self) -> str:
        """``torch-cpu.toml #3``: where the entry is, for summaries and the report; an entry a
        backend takes from its twin's file says for whom (``torch-cpu.toml #3 for
        torch-cpu-nn``)."""
        if not self.source:
            return f"{self.backend} #{self.index}"
        where = f"{Path(self.source).name} #{self.index}"
        return where if Path(self.source).stem == self.backend else f"{where} for {self.backend}"

    @property
    def rule(self) -> str:
        """The entry's rule in one line: what it covers and how it narrows."""
        parts = [f"case {self.case}" if self.case is not None else f"match {self.match!r}"]
        if self.case is None and self.direction != "fwd":
            parts.append(f"direction {self.direction}")
        for name in ("verdict", "hint", "error", "reference_error", "when", "cpu_has"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name} {value!r}" if name != "verdict" else f"verdict {value}")
        return ", ".join(parts)

    def in_region(self, rec: Record) -> bool:
        """Whether ``rec`` lies where this entry could apply: its backend ran the case, the id
        is covered and the case predicate and reference rejection (if given) hold. A run whose
        records include such a record *covered* the entry."""
        if self.backend != rec.backend or not self.covers(rec.case_id):
            return False
        if rec.verdict in NOT_RUN:
            return False
        # An invalid case (the reference rejected it) can only be accepted-invalid; a valid one
        # can only fail on its output or by raising.
        if self.verdict == "accepted-invalid" and rec.reference_error is None:
            return False
        if self.verdict in OUTPUT_VERDICTS and rec.reference_error is not None:
            return False
        if self.reference_error is not None and not fnmatch.fnmatchcase(
            rec.reference_error or "", self.reference_error
        ):
            return False
        return self.when is None or PREDICATES[self.when](parse_id(rec.case_id))

    def covers(self, case_id: str) -> bool:
        if self.case is not None:
            return case_id == self.case
        if not _in_direction(case_id, self.direction):
            return False
        return fnmatch.fnmatchcase(case_id, self.match or "")

    def explains(self, rec: Record) -> bool:
        """Whether this entry covers the record's case and the way it failed."""
        if self.backend != rec.backend or not self.covers(rec.case_id):
            return False
        if self.verdict not in (None, rec.verdict):
            return False
        hint = (rec.metrics.precision_hint if rec.metrics is not None else None) or ""
        if self.hint is not None and self.hint not in hint:
            return False
        if self.error is not None and not fnmatch.fnmatchcase(rec.error_message or "", self.error):
            return False
        if self.reference_error is not None and not fnmatch.fnmatchcase(
            rec.reference_error or "", self.reference_error
        ):
            return False
        return self.when is None or PREDICATES[self.when](parse_id(rec.case_id))


#: ``direction`` values of an entry, and the case directions each covers.
ENTRY_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "fwd": ("fwd",),
    "bwd_d": ("bwd_d",),
    "bwd_w": ("bwd_w",),
    "bwd": ("bwd_d", "bwd_w"),
}


def _in_direction(case_id: str, direction: str) -> bool:
    """Whether the case of ``case_id`` has a direction the entry's ``direction`` covers (read
    from its token; forward ids have none)."""
    tokens = case_id.split("-")
    own = next((t for t in tokens if t in DIRECTIONS[1:]), DIRECTIONS[0])
    return own in ENTRY_DIRECTIONS[direction]


def _any_axis(case: Case, test) -> bool:
    return any(
        test(*axis)
        for axis in zip(
            case.spatial, case.kernel, case.stride, case.padding, case.dilation, case.output_padding
        )
    )


def fails_with_flushed_subnormals(case: Case) -> bool:
    """Whether a kernel that flushes subnormals (denormals-are-zero inputs, flush-to-zero
    results: anything below float32's normal range read or written as a zero of its sign) fails
    the case: the reference computed that way, judged against the IEEE reference. Such a kernel
    turns ``subnormal * inf`` into NaN and subnormal outputs into zeros."""
    try:
        ref = run_reference(case)
    except ValueError:
        return False
    inputs = make_inputs(case)
    x, w, b = (flush_subnormals(a) for a in (inputs.x, inputs.w, inputs.bias))
    with np.errstate(invalid="ignore", over="ignore"):
        flushed = reference_output(case, x, w, b)
    got = round_to(flush_subnormals(np.asarray(flushed)), case.dtype)
    return D.is_failure(D.compare(case, got, ref).verdict)


#: Named case predicates that ``when`` may use (extend here, with a docstring-quality name).
PREDICATES: dict[str, Callable[[Case], bool]] = {
    "padding_exceeds_dilated_kernel": lambda c: _any_axis(
        c, lambda s, k, st, p, d, o: p > d * (k - 1)
    ),
    "one_input_channel_per_group": lambda c: c.groups >= 1 and c.in_channels // c.groups == 1,
    "groups_below_one": lambda c: c.groups < 1,
    "one_tap_last_axis_padded": lambda c: c.kernel[-1] == 1 and c.padding[-1] > 0,
    "batch_above_one": lambda c: c.batch > 1,
    "zero_channels": lambda c: c.in_channels == 0 or c.out_channels == 0,
    "zero_batch": lambda c: c.batch == 0,
    "output_padding_exceeds_padding_with_stride": lambda c: _any_axis(
        c, lambda s, k, st, p, d, o: st > 1 and o > p
    ),
    # Valid when below the dilation (PyTorch's rule: output_padding < max(stride, dilation)).
    "output_padding_at_least_stride": lambda c: _any_axis(c, lambda s, k, st, p, d, o: o >= st),
    "fails_with_flushed_subnormals": fails_with_flushed_subnormals,
    "infinite_weight": lambda c: c.fill == "special" and bool(np.isinf(make_inputs(c).w).any()),
    "same_padding_dilated": lambda c: c.padding_mode == "same" and any(d > 1 for d in c.dilation),
    "padded_with_unit_axis": lambda c: (
        any(p > 0 for p in c.padding) and (1 in c.spatial or 1 in (c.output_spatial() or ()))
    ),
}


def usage_lines(usage: list[EntryUsage]) -> list[str]:
    """The summary of a run's known-failure usage: entries and records matched, then one line
    per stale entry (nothing when no entry matched or went stale)."""
    stale = [u for u in usage if u.stale]
    used = [u for u in usage if u.matched]
    if not used and not stale:
        return []
    lines = [
        "",
        f"known failures: {len(used)} of {len(usage)} entries matched "
        f"{sum(u.matched for u in usage)} record(s); {len(stale)} stale",
    ]
    lines += [
        f"STALE known failure {u.entry.label} ({u.entry.rule}): covered {u.covered} record(s) "
        "of this run and matched none; fixed upstream, or the rule no longer describes the "
        "bug: remove or correct it"
        for u in stale
    ]
    return lines


class KnownFailures:
    def __init__(self, entries: list[KnownFailure]) -> None:
        self.entries = entries

    @classmethod
    def load(
        cls, directory: Path | None = None, cpu_flags: frozenset[str] | None = None
    ) -> KnownFailures:
        """The entries of ``directory/*.toml``; by default the shipped known failures and then
        the project's own ``cases/known_failures`` (:func:`conformance.paths.known_failures_dirs`).
        Entries whose ``cpu_has`` flag is not in ``cpu_flags`` (default: this machine's) are
        left out."""
        dirs = paths.known_failures_dirs() if directory is None else [directory]
        flags = this_cpu_flags() if cpu_flags is None else cpu_flags
        entries: list[KnownFailure] = []
        for d in dirs:
            if d.is_dir():
                for path in sorted(d.glob("*.toml")):
                    entries.extend(parse_file(path))
        return cls([e for e in entries if e.cpu_has is None or e.cpu_has in flags])

    def lookup(self, rec: Record) -> KnownFailure | None:
        """The first entry that explains this failing record, or None."""
        return next((e for e in self.entries if e.explains(rec)), None)

    def usage(self, records: Iterable[Record]) -> list[EntryUsage]:
        """Per entry, in file order: the records of this run it covered and matched."""
        by_backend: dict[str, list[KnownFailure]] = {}
        for e in self.entries:
            by_backend.setdefault(e.backend, []).append(e)
        covered = dict.fromkeys(self.entries, 0)
        matched = dict.fromkeys(self.entries, 0)
        for rec in records:
            entries = by_backend.get(rec.backend, ())
            for e in entries:
                covered[e] += e.in_region(rec)
            if rec.known_failure is not None and D.is_failure(rec.verdict):
                first = next((e for e in entries if e.explains(rec)), None)
                if first is not None:
                    matched[first] += 1
        return [EntryUsage(e, covered[e], matched[e]) for e in self.entries]

    def exact(self, backend: str, case_id: str) -> KnownFailure | None:
        for e in self.entries:
            if e.backend == backend and e.case == case_id:
                return e
        return None


_STRING_FIELDS = (
    "case",
    "direction",
    "match",
    "verdict",
    "hint",
    "error",
    "reference_error",
    "when",
    "cpu_has",
    "reason",
)


@functools.cache
def this_cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


#: Verdicts of records whose backend did not run the case: they cover no entry.
NOT_RUN = frozenset({"unsupported", "too-large"})

#: Verdicts about a valid case's output.
OUTPUT_VERDICTS = frozenset(
    {"shape-mismatch", "dtype-mismatch", "nan-inf-mismatch", "value-mismatch", "precision-mismatch"}
)

#: Records an entry narrowed by ``hint`` must cover, unmatched, before it is called stale:
#: a bfloat16 or float16 accumulation exceeds the float32 bound on some of the cases it
#: touches, not all (torch-cpu conv_transpose in the default release run: float16 on 79 of 403
#: valid cases, bfloat16 on 112 of 402), so a short run proves nothing about it; at a rate of 1
#: in 5, 60 clean records happen by chance with probability 1.5e-6.
MIN_COVERED_BY_VALUE = 60

#: Fields that narrow a glob to one way of failing beyond its verdict.
NARROWING = ("hint", "error", "reference_error", "when")


@functools.cache
def _probe_ids() -> tuple[str, ...]:
    """A spread of case ids over the whole case space (every op and dtype, valid and invalid)
    to tell a glob that matches every case."""
    from conformance.generate import generated_cases

    return tuple(c.id for c in generated_cases(valid_per_op=40, invalid_per_op=10, seed=0))


def check_narrow(where: str, match: str, verdict: str | None, item: dict[str, str]) -> None:
    """Refuse a glob that hides a whole region: a ``match`` entry must name the verdict it
    fails with, and one that matches every case of the backend must also narrow by
    ``hint``, ``error``, ``reference_error`` or ``when``."""
    if verdict is None:
        raise ValueError(
            f"{where}: 'match' = {match!r} without 'verdict' would turn every failure of the "
            "cases it matches into a known failure; give the 'verdict' it fails with"
        )
    # Narrowing first: the probe ids are drawn only for a glob that nothing else narrows, so
    # loading the shipped files (every glob narrowed) draws none.
    if not any(item.get(k) is not None for k in NARROWING) and all(
        fnmatch.fnmatchcase(cid, match) for cid in _probe_ids()
    ):
        raise ValueError(
            f"{where}: 'match' = {match!r} matches every case of the backend, and only "
            f"'verdict' narrows it: every {verdict} would be a known failure. Narrow the glob, "
            f"or add one of {', '.join(repr(k) for k in NARROWING)}"
        )


@dataclass(frozen=True)
class EntryUsage:
    """What one known-failures entry did in a run."""

    entry: KnownFailure
    #: Records of the run in the entry's region (:meth:`KnownFailure.in_region`).
    covered: int
    #: Failing records the entry explained (the first entry that explains a record takes it).
    matched: int

    @property
    def stale(self) -> bool:
        """The run covered the entry's region and nothing failed the way it says: fixed
        upstream, or a rule that no longer describes the bug. An entry narrowed by ``hint``
        describes errors that exceed the bound for some input values only (an accumulation in
        a low precision), so it needs :data:`MIN_COVERED_BY_VALUE` covered records first."""
        need = MIN_COVERED_BY_VALUE if self.entry.hint is not None else 1
        return self.covered >= need and self.matched == 0

    def to_dict(self) -> dict[str, object]:
        e = self.entry
        return {
            "entry": e.label,
            "backend": e.backend,
            "rule": e.rule,
            "reason": e.reason,
            "covered": self.covered,
            "matched": self.matched,
            "stale": self.stale,
        }


def parse_file(path: Path) -> list[KnownFailure]:
    """Parse and schema-check one file; errors name the file, the entry and the field. A file
    whose top-level ``twin`` names another backend (``twin = "torch-cpu"`` in
    ``torch-cpu-nn.toml``: the modules call the functional ops) takes every entry of that
    backend's file, next to it, for its own backend first, then its own entries."""
    backend = path.stem
    out = [replace(e, backend=backend) for e in _twin_entries(path)]
    own = 0
    for where, item in read_entries(path, "failure", _STRING_FIELDS, top_level=("twin",)):
        case, match = item.get("case"), item.get("match")
        if (case is None) == (match is None):
            raise ValueError(f"{where}: give exactly one of 'case' (an id) or 'match' (a glob)")
        reason = item.get("reason")
        if not reason:
            raise ValueError(f"{where}: 'reason' is required")
        verdict = item.get("verdict")
        if verdict is not None and (verdict not in VERDICTS or not VERDICTS[verdict]):
            raise ValueError(f"{where}: 'verdict' must be a failing verdict, got {verdict!r}")
        when = item.get("when")
        if when is not None and when not in PREDICATES:
            raise ValueError(
                f"{where}: 'when' must name one of {', '.join(PREDICATES)}, got {when!r}"
            )
        if match is not None:
            check_narrow(where, match, verdict, item)
        direction = item.get("direction", "fwd")
        if direction not in ENTRY_DIRECTIONS:
            raise ValueError(
                f"{where}: 'direction' must be one of {', '.join(ENTRY_DIRECTIONS)}, "
                f"got {direction!r}"
            )
        if case is not None and "direction" in item:
            raise ValueError(
                f"{where}: 'direction' applies to 'match' globs; an exact 'case' id carries its "
                "own (write it in the id)"
            )
        cpu_has = item.get("cpu_has")
        if cpu_has is not None and not re.fullmatch(r"[a-z0-9_]+", cpu_has):
            raise ValueError(
                f"{where}: 'cpu_has' must be one CPU flag as /proc/cpuinfo spells it "
                f"(e.g. 'avx512bw'), got {cpu_has!r}"
            )
        if case is not None:
            try:
                canonical = parse_id(case).id
            except ValueError as exc:
                raise ValueError(f"{where}: 'case': {exc}") from None
            if canonical != case:  # records carry canonical ids: this entry would never match
                raise ValueError(
                    f"{where}: 'case' {case!r} is not written canonically; write {canonical!r}"
                )
        out.append(
            KnownFailure(
                backend,
                reason,
                case=case,
                match=match,
                verdict=verdict,
                hint=item.get("hint"),
                error=item.get("error"),
                reference_error=item.get("reference_error"),
                when=when,
                cpu_has=cpu_has,
                direction=direction,
                source=str(path),
                index=own + 1,
            )
        )
        own += 1
    return out


def _twin_entries(path: Path) -> list[KnownFailure]:
    """The entries of the file ``path``'s top-level ``twin`` names (none without one)."""
    try:
        twin = tomllib.loads(path.read_text(encoding="utf-8")).get("twin")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []  # read_entries reports it
    if twin is None:
        return []
    twin_path = path.with_name(f"{twin}.toml") if isinstance(twin, str) else None
    if twin_path is None or twin == path.stem or not twin_path.is_file():
        raise ValueError(
            f"{path}: 'twin' must name another backend whose known-failures file is next to "
            f"it, got {twin!r}"
        )
    if _twin_entries(twin_path):
        raise ValueError(f"{path}: 'twin' {twin!r} has a twin of its own; name that one")
    return parse_file(twin_path)
