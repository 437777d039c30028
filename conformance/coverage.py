"""Which parameter regions a run exercised: distinct valid cases per (op, region).

A green run means little if it never tried the parameters where kernels break. A *region* is a
named yes/no question about a :class:`~conformance.case.Case` (``stride > 1``, ``bfloat16``,
...); :data:`REGIONS` lists them, one line each, so adding one (for a new case field, say) is one
line. A region may apply to some ops only (``output_padding > 0``: the transposed ones); where
it does not apply the table says ``n/a``, never a gap.

A case *counts* when it is valid (the reference accepted it) and at least one backend ran it to
a verdict: any verdict but ``unsupported``, ``too-large`` and ``both-rejected``. A failure
counts (the region was exercised; the failure is reported elsewhere), and so do records of the
case shrunk from a failure. Each case counts once however many backends ran it; the counts per
backend are kept too. A region that applies to an op and has no counted case of that op is
*flagged*: the run says nothing about it.

Everything here is a pure function of :class:`~conformance.runner.Record` objects: the CLI
summary (:func:`summary_lines`) and the HTML report (:func:`coverage`, :func:`gap_lines`) show
the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from conformance import diff as D
from conformance.case import ALL_OPS as OPS
from conformance.case import Case, parse_id
from conformance.inputs import reduction_terms
from conformance.runner import Record

#: Products summed per output element ((in_channels / groups) * kernel taps) from which a case
#: is a large reduction: long sums are where accumulation order and precision show.
LARGE_REDUCTION = 1024

#: Verdicts of records that ran no comparison: such a record does not count.
NOT_EXERCISED = frozenset({D.UNSUPPORTED, D.TOO_LARGE, D.BOTH_REJECTED})

TRANSPOSED_OPS: tuple[str, ...] = tuple(op for op, (_, transposed) in OPS.items() if transposed)

#: How a zero is shown where the region applies (flagged) and where it does not.
FLAG = "0!"
NOT_APPLICABLE = "n/a"


def padding_beyond_kernel(case: Case) -> bool:
    """``padding > dilation * (kernel - 1)`` on some axis.

    Forward ops: the zero padding is wider than the dilated kernel's reach past its first tap,
    so the outermost output positions see padding only (a window wholly outside the input).

    Transposed ops: the transposed convolution is a forward convolution over the stride-dilated
    input padded by ``dilation * (kernel - 1) - padding`` on each side; with ``padding >
    dilation * (kernel - 1)`` that padding is negative, i.e. the crop removes more than the
    kernel's border ramp (the ``dilation * (kernel - 1)`` output positions only part of the
    kernel reaches) and cuts into positions every tap reaches: the output starts inside the
    scattered input, not in its ramp.
    """
    return any(
        p > d * (k - 1) for k, p, d in zip(case.kernel, case.padding, case.dilation, strict=True)
    )


def _first_output_axis(case: Case, parity: int) -> bool:
    out = case.output_spatial()
    return out is not None and out[0] % 2 == parity


@dataclass(frozen=True)
class Region:
    """A named predicate over cases; ``ops``: the ops it applies to (elsewhere it is n/a)."""

    name: str  # how a sentence says it: "no case with {name} for conv3d"
    label: str  # the CLI table's column header (short)
    holds: Callable[[Case], bool]
    ops: tuple[str, ...] = tuple(OPS)

    def applies(self, op: str) -> bool:
        return op in self.ops


#: The regions, in table order. One line per region.
REGIONS: tuple[Region, ...] = (
    Region("stride > 1", "st>1", lambda c: any(s > 1 for s in c.stride)),
    Region("padding > dilation*(kernel-1)", "p>d(k-1)", padding_beyond_kernel),
    Region(
        "output_padding > 0",
        "op>0",
        lambda c: any(o > 0 for o in c.output_padding),
        TRANSPOSED_OPS,
    ),
    Region("dilation > 1", "d>1", lambda c: any(d > 1 for d in c.dilation)),
    Region("groups > 1", "g>1", lambda c: c.groups > 1),
    Region("depthwise (groups = in_channels > 1)", "dw", lambda c: c.groups == c.in_channels > 1),
    Region("batch >= 3", "n>=3", lambda c: c.batch >= 3),
    Region("bias", "bias", lambda c: c.bias),
    Region("float32", "f32", lambda c: c.dtype == "float32"),
    Region("float16", "f16", lambda c: c.dtype == "float16"),
    Region("bfloat16", "bf16", lambda c: c.dtype == "bfloat16"),
    Region(
        f"a large reduction ((in_channels/groups)*kernel >= {LARGE_REDUCTION})",
        "red>=1k",
        lambda c: reduction_terms(c) >= LARGE_REDUCTION,
    ),
    Region("an odd output size (first axis)", "odd", lambda c: _first_output_axis(c, 1)),
    Region("an even output size (first axis)", "even", lambda c: _first_output_axis(c, 0)),
    Region("the int fill (exact integers)", "int", lambda c: c.fill == "int"),
    Region("the sparse fill (exact zeros)", "sparse", lambda c: c.fill == "sparse"),
    Region("the wide fill (wide dynamic range)", "wide", lambda c: c.fill == "wide"),
    Region("the special fill (NaN, inf, -0, subnormals)", "special", lambda c: c.fill == "special"),
    Region("the input gradient (bwd_d)", "bwd_d", lambda c: c.direction == "bwd_d"),
    Region("the weight and bias gradients (bwd_w)", "bwd_w", lambda c: c.direction == "bwd_w"),
    Region("a strided input view", "strided", lambda c: c.layout == "strided"),
    Region("a permuted input view", "perm", lambda c: c.layout == "permuted"),
    Region("an expanded (stride-0 batch) input", "expand", lambda c: c.layout == "expanded"),
    Region("an unbatched input", "unbatch", lambda c: c.layout == "unbatched"),
)


def record_case(record: Record) -> Case | None:
    """The record's case: from its ``case`` field, else parsed from its id; None if neither."""
    try:
        if record.case:
            return Case.from_dict(record.case)
        return parse_id(record.case_id)
    except (ValueError, TypeError):
        return None


def exercised(record: Record) -> bool:
    """Whether ``record`` counts: a valid case that its backend ran to a verdict."""
    return record.verdict not in NOT_EXERCISED and not record.reference_error


@dataclass(frozen=True)
class Coverage:
    """Distinct counted cases per (op, region), over the run and per backend."""

    regions: tuple[Region, ...]
    #: Ops with records in the run (the table's rows), in :data:`OPS` order.
    ops: tuple[str, ...]
    #: Backends with records, in the order first seen.
    backends: tuple[str, ...]
    #: op -> counted cases of that op (the row's total).
    cases: dict[str, int]
    #: (op, region name) -> counted cases of that op in the region.
    counts: dict[tuple[str, str], int]
    #: (backend, op, region name) -> cases of that op in the region the backend ran.
    by_backend: dict[tuple[str, str, str], int]

    def count(self, op: str, region: Region) -> int | None:
        """The count of a cell, or None where the region does not apply to the op."""
        if not region.applies(op):
            return None
        return self.counts.get((op, region.name), 0)

    def cell(self, op: str, region: Region) -> str:
        """A cell as the tables show it: the count, ``0!`` when flagged, ``n/a``."""
        n = self.count(op, region)
        return NOT_APPLICABLE if n is None else (FLAG if n == 0 else str(n))

    def flagged(self) -> list[tuple[Region, list[str]]]:
        """Each region with no counted case of an op it applies to, and those ops."""
        out = []
        for region in self.regions:
            ops = [op for op in self.ops if self.count(op, region) == 0]
            if ops:
                out.append((region, ops))
        return out

    def backend_gaps(self) -> list[tuple[str, Region, list[str]]]:
        """(backend, region, ops): regions the run covered for an op (some backend ran a case
        there) but this backend ran no case of; regions flagged for the whole run are left to
        :meth:`flagged`."""
        out = []
        for backend in self.backends:
            for region in self.regions:
                ops = [
                    op
                    for op in self.ops
                    if self.count(op, region)
                    and not self.by_backend.get((backend, op, region.name), 0)
                ]
                if ops:
                    out.append((backend, region, ops))
        return out


def coverage(records: Iterable[Record], regions: Sequence[Region] = REGIONS) -> Coverage:
    """Count, per (op, region), the distinct valid cases some backend ran (module docstring)."""
    regions = tuple(regions)
    ops: set[str] = set()
    backends: dict[str, None] = {}
    cases: dict[str, set[str]] = defaultdict(set)
    counts: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_backend: dict[tuple[str, str, str], int] = defaultdict(int)
    hits: dict[str, tuple[str, list[str]] | None] = {}  # case id -> (op, regions it is in)
    for r in records:
        backends.setdefault(r.backend, None)
        if r.case_id not in hits:
            case = record_case(r)
            hits[r.case_id] = (
                None
                if case is None
                else (case.op, [g.name for g in regions if g.applies(case.op) and g.holds(case)])
            )
        hit = hits[r.case_id]
        if hit is None:
            continue
        op, names = hit
        ops.add(op)
        if not exercised(r):  # a (case, backend) pair has one record (results.check_unique)
            continue
        cases[op].add(r.case_id)
        for name in names:
            counts[(op, name)].add(r.case_id)
            by_backend[(r.backend, op, name)] += 1
    return Coverage(
        regions=regions,
        ops=tuple(op for op in OPS if op in ops),
        backends=tuple(backends),
        cases={op: len(ids) for op, ids in cases.items()},
        counts={key: len(ids) for key, ids in counts.items()},
        by_backend=dict(by_backend),
    )


def gap_lines(cov: Coverage) -> list[str]:
    """One line per flagged region: ``no case with groups > 1 for conv3d``; ``for any op`` when
    the run has every op and none of them has a case in the region (which applies to all)."""
    out = []
    for region, ops in cov.flagged():
        every = set(ops) == set(OPS) == set(region.ops)
        out.append(f"no case with {region.name} for {'any op' if every else ', '.join(ops)}")
    return out


def table_lines(cov: Coverage, indent: str = "  ") -> list[str]:
    """The coverage table: ops as rows, the counted cases and each region's count as columns."""
    labels = ["cases", *(g.label for g in cov.regions)]
    widths = [max(len(label), 3) for label in labels]
    op_width = max(len("op"), *(len(op) for op in cov.ops))

    def row(first: str, cells: Sequence[str]) -> str:
        text = f"{first:<{op_width}}" + "".join(
            f" {c:>{w}}" for c, w in zip(cells, widths, strict=True)
        )
        return indent + text

    lines = [row("op", labels)]
    for op in cov.ops:
        lines.append(row(op, [str(cov.cases.get(op, 0)), *(cov.cell(op, g) for g in cov.regions)]))
    return lines


def _wrap(items: Sequence[str], width: int, first: str, indent: str) -> list[str]:
    """``items`` joined by "; " into lines of at most ``width`` characters where they fit, an
    item never split across lines; the first line starts with ``first``."""
    lines, line = [], first
    for i, item in enumerate(items):
        piece = item + (";" if i < len(items) - 1 else "")
        if line.strip() and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = indent + piece
        else:
            line = (line + " " + piece) if line.strip() else line + piece
    lines.append(line)
    return lines


def legend_lines(cov: Coverage, width: int = 100, indent: str = "  ") -> list[str]:
    """What each column label stands for (where it is not the name itself), wrapped."""
    items = [f"{g.label}: {g.name}" for g in cov.regions if g.label != g.name]
    return _wrap(items, width, indent, indent) if items else []


def summary_lines(records: Iterable[Record]) -> list[str]:
    """The CLI's coverage block: a heading, the table, the legend and the flagged regions."""
    cov = coverage(records)
    if not cov.ops:
        return []
    lines = [
        f"\ncoverage: valid cases some backend ran, per op and region ({FLAG}: none, "
        f"{NOT_APPLICABLE}: does not apply):",
        *table_lines(cov),
        *legend_lines(cov),
    ]
    gaps = gap_lines(cov)
    if gaps:
        lines += _wrap(gaps, 100, "not covered:", "  ")
    else:
        lines.append("not covered: none (every region has a case for every op it applies to)")
    return lines
