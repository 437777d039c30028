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

from conformance.case import Case, parse_id
from conformance.paths import shipped_dir
from conformance.tomlfile import read_entries

#: ``cases/`` of the checkout, or the corpus installed with the wheel (:mod:`conformance.paths`).
CASES_DIR = shipped_dir()


@dataclass(frozen=True)
class FrozenCase:
    case: Case
    note: str
    source: str


def parse_corpus(path: Path) -> list[FrozenCase]:
    out = []
    for i, (where, item) in enumerate(
        read_entries(path, "case", ("id", "note"), top_level=("source", "description"))
    ):
        if "id" not in item:
            raise ValueError(f"{where}: 'id' is required")
        try:
            case = parse_id(item["id"])
        except ValueError as exc:
            raise ValueError(f"{where}: 'id': {exc}") from None
        out.append(FrozenCase(case, item.get("note", ""), f"{path.name}#{i + 1}"))
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
