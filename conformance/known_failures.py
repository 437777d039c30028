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

A failing record that an entry covers is marked ``known_failure`` with the reason: it stays in
the results and the report, and does not fail the run. An exact-id entry whose case now passes is
marked ``fixed``, so an upstream fix shows up; remove the entry then.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.case import Case, parse_id
from conformance.diff import VERDICTS
from conformance.tomlfile import read_entries
from reference.params import conv_output_shape, conv_transpose_output_shape

if TYPE_CHECKING:
    from conformance.runner import Record

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "cases" / "known_failures"


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
    source: str = ""

    def covers(self, case_id: str) -> bool:
        if self.case is not None:
            return case_id == self.case
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


def _any_axis(case: Case, test) -> bool:
    return any(
        test(*axis)
        for axis in zip(
            case.spatial, case.kernel, case.stride, case.padding, case.dilation, case.output_padding
        )
    )


def _out_sizes(case: Case) -> tuple[int, ...]:
    """The case's output spatial sizes, or () for an invalid case."""
    try:
        if case.transposed:
            return conv_transpose_output_shape(
                case.spatial,
                case.kernel,
                case.stride,
                case.padding,
                case.dilation,
                case.output_padding,
            )
        return conv_output_shape(
            case.spatial, case.kernel, case.stride, case.padding, case.dilation
        )
    except ValueError:
        return ()


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
    "output_padding_exceeds_padding_with_stride": lambda c: _any_axis(
        c, lambda s, k, st, p, d, o: st > 1 and o > p
    ),
    "padded_with_unit_axis": lambda c: (
        any(p > 0 for p in c.padding) and (1 in c.spatial or 1 in _out_sizes(c))
    ),
}


class KnownFailures:
    def __init__(self, entries: list[KnownFailure]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, directory: Path | None = DEFAULT_DIR) -> KnownFailures:
        if directory is None or not directory.is_dir():
            return cls([])
        entries: list[KnownFailure] = []
        for path in sorted(directory.glob("*.toml")):
            entries.extend(parse_file(path))
        return cls(entries)

    def lookup(self, rec: Record) -> KnownFailure | None:
        """The first entry that explains this failing record, or None."""
        return next((e for e in self.entries if e.explains(rec)), None)

    def exact(self, backend: str, case_id: str) -> KnownFailure | None:
        for e in self.entries:
            if e.backend == backend and e.case == case_id:
                return e
        return None


_STRING_FIELDS = ("case", "match", "verdict", "hint", "error", "reference_error", "when", "reason")


def parse_file(path: Path) -> list[KnownFailure]:
    """Parse and schema-check one file; errors name the file, the entry and the field."""
    backend = path.stem
    out = []
    for where, item in read_entries(path, "failure", _STRING_FIELDS):
        case, match = item.get("case"), item.get("match")
        if (case is None) == (match is None):
            raise ValueError(f"{where}: give exactly one of 'case' (an id) or 'match' (a glob)")
        reason = item.get("reason")
        if not reason:
            raise ValueError(f"{where}: 'reason' is required")
        verdict = item.get("verdict")
        if verdict is not None and (verdict not in VERDICTS or not VERDICTS[verdict]):
            raise ValueError(f"{where}: 'verdict' must be a failing verdict, got {verdict!r}")
        if case is not None:
            try:
                parse_id(case)
            except ValueError as exc:
                raise ValueError(f"{where}: 'case': {exc}") from None
        when = item.get("when")
        if when is not None and when not in PREDICATES:
            raise ValueError(
                f"{where}: 'when' must name one of {', '.join(PREDICATES)}, got {when!r}"
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
                source=str(path),
            )
        )
    return out
