"""Frozen cases: TOML files under ``cases/`` (edge cases, layers from real networks, regressions).

Each file holds ``[[case]]`` tables with the case ``id`` and a ``note`` saying why it is there
(for real-network layers: which network and layer)::

    [[case]]
    id = "conv_transpose2d-n1-c4x2-s3-k3-st2-p1-op1-f32"
    note = "output_padding at its maximum with stride 2"

Files are data: parsed with ``tomllib`` and schema-checked; errors name the file and the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

from conformance.case import Case, parse_id

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"


@dataclass(frozen=True)
class FrozenCase:
    case: Case
    note: str
    source: str


def parse_corpus(path: Path) -> list[FrozenCase]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"case", "source", "description"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    items = data.get("case", [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'case' must be an array of tables ([[case]])")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: case #{i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be a table")
        extra = set(item) - {"id", "note"}
        if extra:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        case_id, note = item.get("id"), item.get("note", "")
        if not isinstance(case_id, str):
            raise ValueError(f"{where}: 'id' must be a string")
        if not isinstance(note, str):
            raise ValueError(f"{where}: 'note' must be a string")
        try:
            case = parse_id(case_id)
        except ValueError as exc:
            raise ValueError(f"{where}: 'id': {exc}") from None
        out.append(FrozenCase(case, note, f"{path.name}#{i + 1}"))
    return out


def corpus_names(directory: Path = CASES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_corpus(names: list[str] | None = None, directory: Path = CASES_DIR) -> list[FrozenCase]:
    """All frozen cases in ``directory/*.toml`` (or only the named files), in file order."""
    available = corpus_names(directory)
    if names is None:
        names = available
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(
            f"unknown corpus {', '.join(missing)}; available: {', '.join(available) or 'none'}"
        )
    frozen: list[FrozenCase] = []
    for name in names:
        frozen += parse_corpus(directory / f"{name}.toml")
    return frozen
