"""Reading the harness's TOML data files with a schema check (no code is ever evaluated).

Both frozen-case files and known-failures files are an array of tables of string fields;
:func:`read_entries` parses one, checks the shape and names file, entry and field in every error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path


def read_entries(
    path: Path,
    key: str,
    fields: tuple[str, ...],
    *,
    top_level: tuple[str, ...] = (),
) -> list[tuple[str, dict[str, str]]]:
    """The ``[[key]]`` tables of ``path`` as ``(where, table)``; every value a string."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {key, *top_level}
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: '{key}' must be an array of tables ([[{key}]])")
    entries = []
    for i, item in enumerate(items):
        where = f"{path}: {key} #{i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be a table")
        extra = set(item) - set(fields)
        if extra:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        for name, value in item.items():
            if not isinstance(value, str):
                raise ValueError(f"{where}: '{name}' must be a string")
        entries.append((where, item))
    return entries
