"""The regression corpus: every failure the harness found, saved to be replayed first.

``cases/regressions/<backend>.toml`` in the project directory (``$CONVCHECK_HOME``, else the
source checkout, else the current directory; see :mod:`conformance.paths`) holds one
``[[regression]]`` table per saved failure::

    [[regression]]
    id = "conv_transpose1d-n1-c1x1-s5-k2-st2-p2-f32"
    verdict = "shape-mismatch"
    versions = "mlx 0.32.4"
    date = "2026-11-23"
    detail = "shape (1, 4, 1) but the reference has (1, 6, 1)"

``python -m conformance run --save-failures`` shrinks each new failure (:mod:`conformance.shrink`)
and appends it here; every later run replays these cases first, on every backend. An entry whose
case passes on its backend is reported as fixed; it is kept (delete it by hand once the fix is
released), so the corpus only grows.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from conformance import paths
from conformance.case import Case, parse_id
from conformance.diff import VERDICTS
from conformance.runner import Record
from conformance.tomlfile import read_entries


def regressions_dir() -> Path:
    """``cases/regressions`` of the project directory (the checkout, ``$CONVCHECK_HOME`` or the
    current directory), or ``$CONVCHECK_REGRESSIONS_DIR``: see :mod:`conformance.paths`."""
    return paths.regressions_dir()


_FIELDS = ("id", "verdict", "versions", "date", "detail")


@dataclass(frozen=True)
class Regression:
    case: Case
    backend: str
    verdict: str
    versions: str
    date: str
    detail: str
    source: str


def parse_file(path: Path) -> list[Regression]:
    out = []
    for where, item in read_entries(path, "regression", _FIELDS):
        missing = [f for f in ("id", "verdict") if f not in item]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        if item["verdict"] not in VERDICTS:
            raise ValueError(f"{where}: 'verdict' is not a verdict: {item['verdict']!r}")
        try:
            case = parse_id(item["id"])
        except ValueError as exc:
            raise ValueError(f"{where}: 'id': {exc}") from None
        out.append(
            Regression(
                case,
                path.stem,
                item["verdict"],
                item.get("versions", ""),
                item.get("date", ""),
                item.get("detail", ""),
                where,
            )
        )
    return out


def load_regressions(directory: Path | None = None) -> list[Regression]:
    directory = directory or regressions_dir()
    if not directory.is_dir():
        return []
    return [r for path in sorted(directory.glob("*.toml")) for r in parse_file(path)]


def _toml_string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(text, ensure_ascii=True)


def save_regression(
    rec: Record, versions: str, directory: Path | None = None, today: str | None = None
) -> bool:
    """Append ``rec`` (a failing record) to its backend's file; False if already there."""
    directory = directory or regressions_dir()
    if not rec.failed:
        raise ValueError(f"only failures are saved as regressions, not {rec.verdict!r}")
    path = directory / f"{rec.backend}.toml"
    if path.exists() and any(r.case.id == rec.case_id for r in parse_file(path)):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    date = today or _dt.date.today().isoformat()
    detail = rec.detail or (rec.error_message or "")
    lines = [
        "",
        "[[regression]]",
        f"id = {_toml_string(rec.case_id)}",
        f"verdict = {_toml_string(rec.verdict)}",
        f"versions = {_toml_string(versions)}",
        f"date = {_toml_string(date)}",
        f"detail = {_toml_string(detail[:500])}",
    ]
    header = (
        ""
        if path.exists()
        else f"# Failures of {rec.backend} found by convcheck (--save-failures in pytest or "
        "python -m conformance run).\n"
        "# Replayed first by every run; a fixed one is reported, not deleted.\n"
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(header + "\n".join(lines) + "\n")
    return True
