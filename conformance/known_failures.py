"""Known upstream failures, one TOML file per backend: ``cases/known_failures/<backend>.toml``.

Each entry names the case it covers, by exact id or by a glob over ids, the verdict it fails
with, and why::

    [[failure]]
    case = "conv_transpose1d-n1-c1x1-s3-k3-st2-op1-f32"   # exact id ...
    # match = "conv_transpose3d-*-g2-*"                  # ... or an fnmatch glob over ids
    verdict = "value-mismatch"                           # optional: only this verdict
    reason = "output_padding ignored when dilation > stride (mlx#1234)"

A failing record that an entry covers is marked ``known_failure`` with the reason: it stays in
the results and the report, and does not fail the run. An exact-id entry whose case now passes is
marked ``fixed``, so an upstream fix shows up; remove the entry then.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from conformance.diff import VERDICTS

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "cases" / "known_failures"


@dataclass(frozen=True)
class KnownFailure:
    backend: str
    reason: str
    case: str | None = None
    match: str | None = None
    verdict: str | None = None
    source: str = ""

    def covers(self, case_id: str) -> bool:
        if self.case is not None:
            return case_id == self.case
        return fnmatch.fnmatchcase(case_id, self.match or "")


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

    def lookup(self, backend: str, case_id: str, verdict: str) -> KnownFailure | None:
        """The entry that explains ``verdict`` for this case, or None."""
        for e in self.entries:
            if e.backend == backend and e.covers(case_id) and e.verdict in (None, verdict):
                return e
        return None

    def exact(self, backend: str, case_id: str) -> KnownFailure | None:
        for e in self.entries:
            if e.backend == backend and e.case == case_id:
                return e
        return None


def parse_file(path: Path) -> list[KnownFailure]:
    """Parse and schema-check one file; errors name the file, the entry and the field."""
    backend = path.stem
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown_top = set(data) - {"failure"}
    if unknown_top:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown_top))}")
    items = data.get("failure", [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'failure' must be an array of tables ([[failure]])")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: failure #{i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be a table")
        unknown = set(item) - {"case", "match", "verdict", "reason"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        case, match = item.get("case"), item.get("match")
        if (case is None) == (match is None):
            raise ValueError(f"{where}: give exactly one of 'case' (an id) or 'match' (a glob)")
        for field_name in ("case", "match", "verdict", "reason"):
            value = item.get(field_name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: '{field_name}' must be a string")
        reason = item.get("reason")
        if not reason:
            raise ValueError(f"{where}: 'reason' is required")
        verdict = item.get("verdict")
        if verdict is not None and (verdict not in VERDICTS or not VERDICTS[verdict]):
            raise ValueError(f"{where}: 'verdict' must be a failing verdict, got {verdict!r}")
        if case is not None:
            from conformance.case import parse_id

            try:
                parse_id(case)
            except ValueError as exc:
                raise ValueError(f"{where}: 'case': {exc}") from None
        out.append(KnownFailure(backend, reason, case, match, verdict, str(path)))
    return out
