"""What the HTML report shows, as plain data: no HTML here (that lives in ``templates/``).

* per-record facts: op, dtype, case parameters, a size key (smallest case first);
* failure signatures and groups, reason groups for unsupported and both-rejected records;
* timing per backend; the comparison of a run with a baseline run;
* the heatmap of a failing output's ``error_map`` (colour buckets by log10 of err / bound).

Everything is a pure function of :class:`~conformance.runner.Record` objects.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from conformance import coverage
from conformance import diff as D
from conformance.case import ALL_OPS as OPS
from conformance.case import Case, parse_id
from conformance.dtypes import FROM_SHORT
from conformance.rules import Rule, cases_of, infer_rule
from conformance.runner import Record

#: The matrix/legend order of verdicts: failures first, then known failures, then the rest.
KNOWN = "known-failure"
VERDICT_ORDER: tuple[str, ...] = (
    D.CRASHED,
    D.TIMEOUT,
    D.MUTATED_INPUT,
    D.RAISED,
    D.SHAPE_MISMATCH,
    D.DTYPE_MISMATCH,
    D.NAN_INF_MISMATCH,
    D.VALUE_MISMATCH,
    D.PRECISION_MISMATCH,
    D.ACCEPTED_INVALID,
    KNOWN,
    D.PASS,
    D.UNSUPPORTED,
    D.TOO_LARGE,
    D.BOTH_REJECTED,
)

#: Ops in report order.
OPS_ORDER: tuple[str, ...] = tuple(OPS)

#: Below this, max_error_over_bound values are treated as equal in comparisons (both exact).
ERROR_FLOOR = 1e-3
#: A change of max_error_over_bound by more than this factor is reported in comparisons.
ERROR_CHANGE_FACTOR = 2.0


# --- per-record facts ---------------------------------------------------------------------------


def record_op(r: Record) -> str:
    op = r.case.get("op")
    return op if isinstance(op, str) else r.case_id.split("-", 1)[0]


def record_dtype(r: Record) -> str:
    dtype = r.case.get("dtype")
    if isinstance(dtype, str):
        return dtype
    for token in reversed(r.case_id.split("-")):
        if token in FROM_SHORT:
            return FROM_SHORT[token]
    return "unknown"


def case_dict(r: Record) -> dict[str, object]:
    """The case parameters: from the record, else parsed from its id, else empty."""
    if r.case:
        return r.case
    try:
        return parse_id(r.case_id).to_dict()
    except ValueError:
        return {}


def matrix_key(r: Record) -> str:
    """The verdict a record is counted under in the matrix (as :func:`results.counts` does)."""
    return KNOWN if r.known_failure else r.verdict


def _prod(values: Iterable[object]) -> int:
    out = 1
    for v in values:
        out *= int(v) if isinstance(v, int) else 1
    return out


def output_spatial(case: dict[str, object]) -> tuple[int, ...] | None:
    """The spatial output size of a valid case, or None when it cannot be worked out."""
    try:
        return Case.from_dict(dict(case)).output_spatial()
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


def case_size(r: Record) -> tuple[int, int, int, str]:
    """Sort key, smallest case first: output elements, then input + weight elements, then id."""
    c = case_dict(r)
    batch = c.get("batch", 1)
    c_in, c_out = c.get("in_channels", 1), c.get("out_channels", 1)
    groups = c.get("groups", 1)
    spatial = c.get("spatial", ()) or ()
    kernel = c.get("kernel", ()) or ()
    in_elems = _prod([batch, c_in, *spatial])  # type: ignore[list-item]
    per_group = (
        c_in // groups if isinstance(c_in, int) and isinstance(groups, int) and groups > 0 else 1
    )
    w_elems = _prod([c_out, *kernel]) * max(int(per_group), 1)  # type: ignore[list-item]
    if r.metrics is not None:
        out_elems = r.metrics.elements
    else:
        sp = output_spatial(c)
        out_elems = _prod([batch, c_out, *sp]) if sp is not None else in_elems  # type: ignore[list-item]
    return (out_elems, in_elems + w_elems, len(r.case_id), r.case_id)


def format_param(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "\u00d7".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def case_params(r: Record) -> list[tuple[str, str]]:
    """(name, value) pairs for the parameter table; output padding only for transposed ops."""
    c = case_dict(r)
    op = c.get("op")
    transposed = OPS[op][1] if op in OPS else True
    out = []
    for key, value in c.items():
        if key == "output_padding" and not transposed:
            continue
        out.append((key.replace("_", " "), format_param(value)))
    return out


# --- signatures and groups ----------------------------------------------------------------------

#: A number that is not part of a name (the 1 of "conv1d" stays).
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)", re.IGNORECASE)
_NUM_LIST = re.compile(r"N(?:\s*,\s*N)+")
_SHAPES = re.compile(r"shape \(([\d, ]*)\) but the reference has \(([\d, ]*)\)")


def normalize_message(text: str | None, limit: int = 160) -> str:
    """A message with its numbers replaced by N, so messages about different sizes group."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    # A signal number names the signal ("signal 11" is SIGSEGV): it stays.
    numbered = _NUMBER.sub(
        lambda m: m.group(0) if first[: m.start()].endswith("signal ") else "N", first
    )
    out = _NUM_LIST.sub("N,\u2026", numbered)
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "\u2026"


def _shape_cause(detail: str) -> str:
    m = _SHAPES.search(detail)
    if not m:
        return normalize_message(detail)
    got = [int(v) for v in m.group(1).replace(" ", "").split(",") if v]
    want = [int(v) for v in m.group(2).replace(" ", "").split(",") if v]
    if len(got) != len(want):
        return f"output has {len(got)} dimensions, the reference {len(want)}"
    names = ["batch", *[f"spatial axis {i}" for i in range(len(want) - 2)], "channels"]
    parts = [
        f"{'larger' if g > w else 'smaller'} along {n}"
        for n, g, w in zip(names, got, want, strict=True)
        if g != w
    ]
    return "output " + ", ".join(parts) if parts else normalize_message(detail)


def _without_op(r: Record, message: str) -> str:
    """``message`` without a leading "<op>: " (the op is shown next to it anyway)."""
    prefix = record_op(r) + ": "
    return message[len(prefix) :] if message.startswith(prefix) else message


def failure_cause(r: Record) -> str:
    """The verdict-specific part of a failure signature (what went wrong, without sizes)."""
    v = r.verdict
    if v in (D.VALUE_MISMATCH, D.NAN_INF_MISMATCH, D.PRECISION_MISMATCH):
        m = r.metrics
        if v == D.NAN_INF_MISMATCH:
            return "non-finite values in only one of got/want"
        if m is not None and m.precision_hint:
            return m.precision_hint
        if v == D.PRECISION_MISMATCH and m is not None and (m.outlier_ratio or 0) > 1:
            return "elements out of line with the rest of the output"
        return "error not explained by a lower-precision arithmetic"
    if v == D.SHAPE_MISMATCH:
        return _shape_cause(r.detail)
    if v == D.ACCEPTED_INVALID:
        return "accepted an invalid case: " + _without_op(r, normalize_message(r.reference_error))
    if r.error_type or r.error_message:
        return f"{r.error_type or 'error'}: {normalize_message(r.error_message)}"
    return normalize_message(r.detail) or v


@dataclass(frozen=True)
class Signature:
    op: str
    backend: str
    verdict: str
    cause: str


def signature(r: Record) -> Signature:
    return Signature(record_op(r), r.backend, r.verdict, failure_cause(r))


@dataclass
class Group:
    """Records sharing a signature (or a reason), smallest case first."""

    key: Signature | str
    records: list[Record]

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def dtypes(self) -> list[str]:
        return sorted({record_dtype(r) for r in self.records})

    @property
    def backends(self) -> list[str]:
        return sorted({r.backend for r in self.records})

    @property
    def ops(self) -> list[str]:
        return sorted({record_op(r) for r in self.records})


def group_failures(records: Iterable[Record], backend_order: Sequence[str] = ()) -> list[Group]:
    """New failures grouped by :func:`signature`, members smallest case first; groups in matrix
    order (backend, then op), biggest first within an op."""
    groups: dict[Signature, list[Record]] = defaultdict(list)
    for r in records:
        if r.failed:
            groups[signature(r)].append(r)
    out = [Group(sig, sorted(rs, key=case_size)) for sig, rs in groups.items()]
    backends = {b: i for i, b in enumerate(backend_order)}
    ops = {op: i for i, op in enumerate(OPS_ORDER)}

    def order(g: Group) -> tuple[object, ...]:
        s: Signature = g.key  # type: ignore[assignment]
        return (
            backends.get(s.backend, len(backends)),
            s.backend,
            ops.get(s.op, len(ops)),
            s.op,
            -g.count,
            s.verdict,
            s.cause,
        )

    return sorted(out, key=order)


def counterexamples(group: Group, records: Iterable[Record]) -> list[Record]:
    """What a failure group's rule must exclude: the same backend's records of the same op that
    went right. For a valid case, its passes; for an accepted invalid case, the cases breaking
    the same validity rule that the backend rejected."""
    first = group.records[0]
    op = record_op(first)
    mine = [r for r in records if r.backend == first.backend and record_op(r) == op]
    if first.verdict == D.ACCEPTED_INVALID:
        rule = skip_reason(first)
        return [r for r in mine if r.verdict == D.BOTH_REJECTED and skip_reason(r) == rule]
    return [r for r in mine if r.verdict == D.PASS]


#: What is shown instead of a rule for a group too small to have one.
NO_RULE = "too few failures to infer a rule"


def group_rule(group: Group, records: Iterable[Record]) -> Rule | None:
    """The inferred rule of a failure group (:func:`conformance.rules.infer_rule`), or None."""
    return infer_rule(
        cases_of(r.case_id for r in group.records),
        cases_of(r.case_id for r in counterexamples(group, records)),
    )


def skip_reason(r: Record) -> str:
    """Why a record was not compared: the backend's limitation, or the rule the case breaks."""
    if r.verdict == D.UNSUPPORTED:
        return r.detail or "unsupported"
    reason = normalize_message(r.reference_error) or normalize_message(r.detail) or r.verdict
    return _without_op(r, reason)


def group_by_reason(records: Iterable[Record], verdict: str) -> list[Group]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.verdict == verdict:
            groups[skip_reason(r)].append(r)
    out = [Group(reason, sorted(rs, key=case_size)) for reason, rs in groups.items()]
    out.sort(key=lambda g: (-g.count, str(g.key)))
    return out


def group_known(records: Iterable[Record]) -> list[Group]:
    """Known failures by (backend, reason)."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.known_failure and D.is_failure(r.verdict):
            groups[f"{r.backend}: {r.known_failure}"].append(r)
    out = [Group(k, sorted(rs, key=case_size)) for k, rs in groups.items()]
    out.sort(key=lambda g: (-g.count, str(g.key)))
    return out


def count_table(
    records: Iterable[Record], by_dtype: bool = False
) -> dict[tuple[str, ...], dict[str, int]]:
    """(op, backend) or (op, dtype, backend) -> matrix verdict -> count."""
    table: dict[tuple[str, ...], dict[str, int]] = {}
    for r in records:
        key = (record_op(r), record_dtype(r), r.backend) if by_dtype else (record_op(r), r.backend)
        cell = table.setdefault(key, {})
        k = matrix_key(r)
        cell[k] = cell.get(k, 0) + 1
    return table


def sample_passing(records: Sequence[Record], limit: int) -> list[Record]:
    """Up to ``limit`` passing records, taken round-robin over (op, backend, dtype) cells."""
    if limit <= 0:
        return []
    cells: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        if r.verdict == D.PASS:
            cells[(record_op(r), r.backend, record_dtype(r))].append(r)
    queues = [cells[k] for k in sorted(cells)]
    out: list[Record] = []
    i = 0
    while len(out) < limit and any(i < len(q) for q in queues):
        for q in queues:
            if i < len(q) and len(out) < limit:
                out.append(q[i])
        i += 1
    return out


# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    backend: str
    cases: int
    median: float
    mean: float
    total: float
    slowest: float


def timing(records: Iterable[Record], backend_order: Sequence[str] = ()) -> list[Timing]:
    by: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.seconds is not None and math.isfinite(r.seconds):
            by[r.backend].append(float(r.seconds))
    order = {b: i for i, b in enumerate(backend_order)}
    out = [
        Timing(b, len(s), statistics.median(s), sum(s) / len(s), sum(s), max(s))
        for b, s in by.items()
    ]
    out.sort(key=lambda t: (order.get(t.backend, len(order)), t.backend))
    return out


def slowest(records: Iterable[Record], n: int = 10) -> list[Record]:
    timed = [r for r in records if r.seconds is not None and math.isfinite(r.seconds)]
    return sorted(timed, key=lambda r: -float(r.seconds or 0.0))[:n]


# --- comparison with a baseline -----------------------------------------------------------------

NEW_FAILURE = "new-failure"
FIXED = "fixed"
VERDICT_CHANGED = "verdict-changed"
ERROR_GREW = "error-grew"
ERROR_SHRANK = "error-shrank"
CHANGE_KINDS: tuple[str, ...] = (NEW_FAILURE, FIXED, VERDICT_CHANGED, ERROR_GREW, ERROR_SHRANK)
CHANGE_LABELS: dict[str, str] = {
    NEW_FAILURE: "newly failing",
    FIXED: "fixed (failed in the baseline, passes now)",
    VERDICT_CHANGED: "failing with a different verdict",
    ERROR_GREW: f"error over bound grew more than {ERROR_CHANGE_FACTOR:g}x",
    ERROR_SHRANK: f"error over bound shrank more than {ERROR_CHANGE_FACTOR:g}x",
}


@dataclass(frozen=True)
class Change:
    kind: str
    current: Record
    baseline: Record
    ratio: float | None  # current / baseline max_error_over_bound (floored), when both have one


@dataclass
class Comparison:
    changes: dict[tuple[str, str], Change] = field(default_factory=dict)
    common: int = 0
    only_current: int = 0
    only_current_failing: int = 0
    only_baseline: int = 0

    def of_kind(self, kind: str) -> list[Change]:
        items = [c for c in self.changes.values() if c.kind == kind]
        if kind in (ERROR_GREW, ERROR_SHRANK):
            items.sort(key=lambda c: -abs(math.log(c.ratio or 1.0)))
        else:
            items.sort(key=lambda c: case_size(c.current))
        return items

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for c in self.changes.values() if c.kind == k) for k in CHANGE_KINDS}


def error_ratio(current: Record, baseline: Record) -> float | None:
    if current.metrics is None or baseline.metrics is None:
        return None
    a = baseline.metrics.max_error_over_bound
    b = current.metrics.max_error_over_bound
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return max(b, ERROR_FLOOR) / max(a, ERROR_FLOOR)


def classify_change(current: Record, baseline: Record) -> Change | None:
    now, before = D.is_failure(current.verdict), D.is_failure(baseline.verdict)
    ratio = error_ratio(current, baseline)
    if now and not before:
        kind = NEW_FAILURE
    elif before and not now:
        kind = FIXED
    elif now and current.verdict != baseline.verdict:
        kind = VERDICT_CHANGED
    elif ratio is not None and ratio > ERROR_CHANGE_FACTOR:
        kind = ERROR_GREW
    elif ratio is not None and ratio < 1.0 / ERROR_CHANGE_FACTOR:
        kind = ERROR_SHRANK
    else:
        return None
    return Change(kind, current, baseline, ratio)


def compare_runs(current: Iterable[Record], baseline: Iterable[Record]) -> Comparison:
    """Changes keyed by (case_id, backend); records in only one run are counted, not compared."""
    before = {(r.case_id, r.backend): r for r in baseline}
    out = Comparison()
    seen: set[tuple[str, str]] = set()
    for r in current:
        key = (r.case_id, r.backend)
        seen.add(key)
        b = before.get(key)
        if b is None:
            out.only_current += 1
            out.only_current_failing += int(D.is_failure(r.verdict))
            continue
        out.common += 1
        change = classify_change(r, b)
        if change is not None:
            out.changes[key] = change
    out.only_baseline = sum(1 for k in before if k not in seen)
    return out


# --- heatmap ------------------------------------------------------------------------------------

#: (css class, legend label, upper limit of err/bound) in increasing order; the last is
#: non-finite (the diff engine writes 1e300 for elements that are non-finite in one of got/want).
HEAT_BUCKETS: tuple[tuple[str, str, float], ...] = (
    ("h0", "0", 0.0),
    ("h1", "< 0.01", 1e-2),
    ("h2", "0.01 \u2013 0.1", 1e-1),
    ("h3", "0.1 \u2013 1 (within bound)", 1.0),
    ("h4", "1 \u2013 10", 1e1),
    ("h5", "10 \u2013 100", 1e2),
    ("h6", "100 \u2013 1e3", 1e3),
    ("h7", "1e3 \u2013 1e4", 1e4),
    ("h8", "\u2265 1e4", 1e299),
    ("h9", "non-finite", math.inf),
)


def heat_class(v: float) -> str:
    if not v > 0:
        return "h0"
    if v >= 1e299 or not math.isfinite(v):
        return "h9"
    for cls, _, upper in HEAT_BUCKETS[1:]:
        if v <= upper:
            return cls
    return "h9"


@dataclass(frozen=True)
class Heatmap:
    rows: list[tuple[list[str], str]]  # per row: css classes of the cells, their values
    row_axis: str
    col_axis: str
    row_ticks: list[str]
    col_ticks: list[str]
    worst: tuple[int, int] | None
    note: str

    @property
    def cells(self) -> int:
        return sum(len(classes) for classes, _ in self.rows)


def _bins(n_full: int | None, n_map: int) -> tuple[list[str], int]:
    """Tick labels (first index) for ``n_map`` cells pooling ``n_full`` indices, and the step."""
    if n_full is None or n_full <= n_map:
        return [str(i) for i in range(n_map)], 1
    step = -(-n_full // D.ERROR_MAP_MAX)
    if -(-n_full // step) != n_map:
        return [str(i) for i in range(n_map)], 1
    return [str(i * step) for i in range(n_map)], step


def heatmap(r: Record) -> Heatmap | None:
    """The record's ``error_map`` as coloured cells with axis ticks, or None when it has none.

    A tall, narrow map (1-D ops: many positions, few channels) is drawn transposed.
    """
    m = r.metrics
    if m is None or not m.error_map or not m.error_map[0]:
        return None
    grid = m.error_map
    axes = m.error_map_axes or ("rows", "columns")
    c = case_dict(r)
    sp = output_spatial(c)
    full: tuple[int | None, int | None] = (None, None)
    worst_idx: tuple[int, int] | None = None
    w = m.worst
    if sp is not None:
        if len(sp) == 1:
            out_c = c.get("out_channels")
            full = (sp[0], out_c if isinstance(out_c, int) else None)
            if w is not None and w.position:
                worst_idx = (w.position[0], w.channel)
        else:
            full = (sp[-2], sp[-1])
            if w is not None and len(w.position) >= 2:
                worst_idx = (w.position[-2], w.position[-1])
    if len(grid) > 12 and len(grid) > 2 * len(grid[0]):
        grid = [list(col) for col in zip(*grid, strict=True)]
        axes = (axes[1], axes[0])
        full = (full[1], full[0])
        worst_idx = None if worst_idx is None else (worst_idx[1], worst_idx[0])
    n_rows, n_cols = len(grid), len(grid[0])
    row_ticks, row_step = _bins(full[0], n_rows)
    col_ticks, col_step = _bins(full[1], n_cols)
    worst = None
    if worst_idx is not None:
        worst = (worst_idx[0] // row_step, worst_idx[1] // col_step)
    rows = [
        (
            [heat_class(v) + (" worst" if (i, j) == worst else "") for j, v in enumerate(row)],
            " ".join("non-finite" if v >= 1e299 else f"{v:.3g}" for v in row),
        )
        for i, row in enumerate(grid)
    ]
    every = max(1, -(-n_cols // 12))
    col_ticks = [t if j % every == 0 else "" for j, t in enumerate(col_ticks)]
    notes = []
    if w is not None:
        where = (
            f"batch {w.batch}" if len(w.position) < 2 else f"batch {w.batch}, channel {w.channel}"
        )
        notes.append(f"slice through the worst element ({where})")
    if row_step > 1 or col_step > 1:
        notes.append(
            f"max-pooled by {row_step}\u00d7{col_step}: each cell is the largest value of the "
            "indices from its label to the next"
        )
    return Heatmap(rows, axes[0], axes[1], row_ticks, col_ticks, worst, "; ".join(notes))


# --- error paths: who rejects what ---------------------------------------------------------------

#: How a backend answered an invalid case, for the error-path table.
ERROR_PATH_OUTCOMES = ("rejected", "accepted", "crashed", "unsupported")


def error_outcome(r: Record) -> str:
    if r.verdict == D.BOTH_REJECTED:
        return "rejected"
    if r.verdict in (D.CRASHED, D.TIMEOUT):
        return "crashed"
    if r.verdict == D.UNSUPPORTED:
        return "unsupported"
    return "accepted"


@dataclass
class ErrorRule:
    """One rule the reference enforces (its message with numbers as N), and per backend how
    many invalid cases breaking it were rejected, accepted or crashed."""

    rule: str
    outcomes: dict[str, dict[str, int]]
    examples: dict[str, Record]

    @property
    def count(self) -> int:
        return max((sum(o.values()) for o in self.outcomes.values()), default=0)


@dataclass
class Disagreement:
    case_id: str
    rule: str
    by_backend: dict[str, Record]


def error_paths(
    records: Iterable[Record], backend_order: Sequence[str] = ()
) -> tuple[list[ErrorRule], list[Disagreement]]:
    """Invalid cases (the reference rejected them) by rule and backend, and the cases where
    backends answered differently (one rejects, another returns an output or crashes)."""
    rules: dict[str, ErrorRule] = {}
    by_case: dict[str, dict[str, Record]] = {}
    for r in records:
        if not r.reference_error:
            continue
        rule = normalize_message(_without_op(r, r.reference_error))
        entry = rules.setdefault(rule, ErrorRule(rule, {}, {}))
        outcome = error_outcome(r)
        cell = entry.outcomes.setdefault(r.backend, {})
        cell[outcome] = cell.get(outcome, 0) + 1
        if outcome != "rejected":
            entry.examples.setdefault(f"{r.backend}:{outcome}", r)
        by_case.setdefault(r.case_id, {})[r.backend] = r
    order = {b: i for i, b in enumerate(backend_order)}
    disagreements = []
    for case_id, answers in by_case.items():
        outcomes = {error_outcome(r) for r in answers.values()} - {"unsupported"}
        if len(outcomes) > 1:
            first = next(iter(answers.values()))
            ordered = dict(sorted(answers.items(), key=lambda kv: order.get(kv[0], len(order))))
            rule = normalize_message(_without_op(first, first.reference_error or ""))
            disagreements.append(Disagreement(case_id, rule, ordered))
    disagreements.sort(key=lambda d: (d.rule, len(d.case_id), d.case_id))
    return sorted(rules.values(), key=lambda e: (-e.count, e.rule)), disagreements


# --- the verdict banner -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendChip:
    """One backend's line of the banner: failing if it has new failures."""

    backend: str
    passed: int
    failed: int
    known: int
    unsupported: int
    rejected: int

    @property
    def ok(self) -> bool:
        return self.failed == 0


def backend_chips(records: Iterable[Record], backend_order: Sequence[str]) -> list[BackendChip]:
    """Per backend that has records, in ``backend_order``: its counts by outcome."""
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        t = tally[r.backend]
        if r.failed:
            t["failed"] += 1
        elif r.known_failure and D.is_failure(r.verdict):
            t["known"] += 1
        elif r.verdict == D.PASS:
            t["passed"] += 1
        elif r.verdict in (D.UNSUPPORTED, D.TOO_LARGE):
            t["unsupported"] += 1
        elif r.verdict == D.BOTH_REJECTED:
            t["rejected"] += 1
    order = [b for b in backend_order if b in tally] + sorted(set(tally) - set(backend_order))
    return [
        BackendChip(
            b,
            tally[b]["passed"],
            tally[b]["failed"],
            tally[b]["known"],
            tally[b]["unsupported"],
            tally[b]["rejected"],
        )
        for b in order
    ]


def coverage_gaps(
    records: Sequence[Record],
    backends: Iterable[dict[str, object]],
    settings: dict[str, object],
    cov: coverage.Coverage | None = None,
) -> list[str]:
    """What this run did not check, in one line each: backends not available here, case
    budgets, a dtype or an op a backend ran no case of (all unsupported), too-large cases, and
    the parameter regions no valid case exercised (:mod:`conformance.coverage`; ``cov``: its
    counts, when already computed)."""
    gaps = [
        f"{b.get('name')} not available: {b.get('detail')}"
        for b in backends
        if not b.get("available")
    ]
    budgets = settings.get("backend_examples")
    if isinstance(budgets, dict):
        total = settings.get("max_examples")
        gaps += [
            f"{name} ran the first {n} of {total} generated cases per op (case budget)"
            for name, n in budgets.items()
        ]
    run: dict[tuple[str, str, str], set[bool]] = defaultdict(set)
    for r in records:
        ran = r.verdict not in (D.UNSUPPORTED, D.TOO_LARGE)
        run[(r.backend, "dtype", record_dtype(r))].add(ran)
        run[(r.backend, "op", record_op(r))].add(ran)
    gaps += [
        f"{backend} ran no {value} case (all unsupported)"
        for (backend, _, value), seen in sorted(run.items())
        if seen == {False}
    ]
    too_large = {r.case_id for r in records if r.verdict == D.TOO_LARGE}
    if too_large:
        gaps.append(f"{len(too_large)} case(s) too large to run here")
    return gaps + coverage.gap_lines(cov if cov is not None else coverage.coverage(records))


def stage_rows(settings: dict[str, object]) -> list[tuple[str, float, int]]:
    """The run's stage times (``settings["stages"]``) as (stage, seconds, count), slowest first."""
    stages = settings.get("stages")
    if not isinstance(stages, dict):
        return []
    rows = []
    for name, v in stages.items():
        if isinstance(v, dict):
            rows.append((str(name), float(v.get("seconds") or 0.0), int(v.get("count") or 0)))
    return sorted(rows, key=lambda row: -row[1])
