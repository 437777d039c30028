"""The results file: one JSON document per run, the input of reports and comparisons.

Schema ``convcheck-results/1``::

    {
      "schema": "convcheck-results/1",
      "created": "2026-11-23T20:30:00+00:00",     # UTC, ISO 8601
      "environment": {"os": ..., "machine": ..., "cpu": ..., "python": ...,
                      "versions": {"numpy": ..., "mlx": ..., "torch": ..., "convcheck": ...},
                      "git_commit": ... or null},
      "settings": {"seed": int, "profile": str, "max_examples": int, "ops": [...],
                   "dtypes": [...],
                   "tolerance": {"factor": float, "accumulation": str, "statistical": bool},
                   "command": str, "seconds": float},
      "backends": [{"name": ..., "description": ..., "available": bool, "detail": ...,
                    "versions": {...}}],
      "records": [Record.to_dict(), ...],  # see conformance.runner.Record
      "known_failure_usage": [EntryUsage.to_dict(), ...]  # optional; see known_failures.py
    }

Reading checks the schema and names the field that is wrong; nothing is evaluated or unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from conformance.backends import Backend
from conformance.diff import VERDICTS, DiffMetrics
from conformance.runner import Record

SCHEMA = "convcheck-results/1"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _gpu_name() -> str | None:
    """The GPU as the driver names it (nvidia-smi), without importing a framework."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return (
            "Apple GPU (Metal)"
            if platform.system() == "Darwin" and platform.machine() == "arm64"
            else None
        )
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) or None


def environment() -> dict[str, object]:
    libraries = ("numpy", "hypothesis", "mlx", "torch", "jax", "jaxlib", "onnxruntime", "onnx")
    versions = {d: _version(d) for d in libraries}
    versions["convcheck"] = _version("convcheck")
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "gpu": _gpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": _git_commit(),
    }


def json_safe(obj: object) -> object:
    """Replace non-finite floats (strict JSON has none) by the strings "nan", "inf", "-inf"."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return "nan" if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_restore(obj: object) -> object:
    """Inverse of :func:`json_safe` for the metric values of a record."""
    if isinstance(obj, str) and obj in ("nan", "inf", "-inf"):
        return float(obj)
    if isinstance(obj, dict):
        return {k: json_restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_restore(v) for v in obj]
    return obj


def backend_entry(b: Backend) -> dict[str, object]:
    a = b.availability
    return {
        "name": b.name,
        "description": b.description,
        "available": a.available,
        "detail": a.detail,
        "versions": dict(a.versions),
    }


@dataclass
class RunResults:
    settings: dict[str, object]
    backends: list[dict[str, object]]
    records: list[Record] = field(default_factory=list)
    environment: dict[str, object] = field(default_factory=environment)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    #: Per known-failures entry: records of this run it covered and matched, and whether it is
    #: stale (:class:`conformance.known_failures.EntryUsage`); empty when not computed.
    known_failure_usage: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "environment": self.environment,
            "settings": self.settings,
            "backends": self.backends,
            "records": [json_safe(r.to_dict()) for r in self.records],
            "known_failure_usage": self.known_failure_usage,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> RunResults:
        """A results JSON or a results stream (JSON Lines, :mod:`conformance.stream`)."""
        from conformance.stream import is_stream, read_stream

        if is_stream(path):
            return read_stream(path).results
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read results JSON: {exc}") from None
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: object, source: str = "results") -> RunResults:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: top level must be an object")
        if data.get("schema") != SCHEMA:
            raise ValueError(
                f"{source}: field 'schema' must be {SCHEMA!r}, got {data.get('schema')!r}"
            )
        created, env, settings, backends = check_header(data, source, "results")
        records = [
            record_from_dict(r, source, f"records[{i}]")
            for i, r in enumerate(need(data, "records", list, source, "results"))  # type: ignore[arg-type]
        ]
        check_unique(records, source)
        usage = _optional(data, "known_failure_usage", list, source, "results") or []
        for i, u in enumerate(usage):
            for key, kind in (("entry", str), ("covered", int), ("matched", int), ("stale", bool)):
                need(u, key, kind, source, f"known_failure_usage[{i}]")
        return cls(settings, backends, records, env, created, usage)


def check_unique(records: list[Record], source: str) -> None:
    """Each (case_id, backend) once: a duplicated record would be counted twice."""
    seen: dict[tuple[str, str], int] = {}
    for i, r in enumerate(records):
        key = (r.case_id, r.backend)
        if key in seen:
            raise ValueError(
                f"{source}: records[{i}] is a duplicate record for case_id {r.case_id!r} on "
                f"backend {r.backend!r} (first as records[{seen[key]}]); a record may appear once"
            )
        seen[key] = i


def need(obj: object, key: str, kind: type | tuple[type, ...], source: str, where: str) -> object:
    """``obj[key]``, which must be there and of type ``kind``; errors name source and field."""
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{source}: {where} is missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{source}: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _optional(obj: dict, key: str, kind: type | tuple[type, ...], source: str, where: str):
    value = obj.get(key)
    if value is not None and (
        not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
    ):
        raise ValueError(f"{source}: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def check_header(
    data: dict, source: str, where: str
) -> tuple[str, dict[str, object], dict[str, object], list[dict[str, object]]]:
    """(created, environment, settings, backends) of a results file or a stream header."""
    created = need(data, "created", str, source, where)
    env = need(data, "environment", dict, source, where)
    settings = need(data, "settings", dict, source, where)
    backends = need(data, "backends", list, source, where)
    for i, b in enumerate(backends):  # type: ignore[arg-type]
        need(b, "name", str, source, f"backends[{i}]")
        need(b, "available", bool, source, f"backends[{i}]")
    return created, env, settings, backends  # type: ignore[return-value]


def record_from_dict(r: object, source: str, where: str) -> Record:
    """A :class:`Record` from its JSON form, every field checked; errors name the field."""
    case_id = need(r, "case_id", str, source, where)
    backend = need(r, "backend", str, source, where)
    verdict = need(r, "verdict", str, source, where)
    assert isinstance(r, dict)
    if verdict not in VERDICTS:
        raise ValueError(f"{source}: {where}.verdict is not a known verdict: {verdict!r}")
    for key in ("detail", "error_type", "error_message", "reference_error", "known_failure"):
        _optional(r, key, str, source, where)
    _optional(r, "plugin", str, source, where)
    _optional(r, "shrunk_from", str, source, where)
    factor = _optional(r, "tolerance_factor", (int, float), source, where)
    statistical = _optional(r, "tolerance_statistical", bool, source, where)
    _optional(r, "seconds", (int, float), source, where)
    _optional(r, "fixed", bool, source, where)
    _optional(r, "case", dict, source, where)
    metrics = r.get("metrics")
    try:
        m = None if metrics is None else DiffMetrics.from_dict(json_restore(metrics))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{source}: {where}.metrics is malformed: {exc}") from None
    return Record(
        case_id=case_id,  # type: ignore[arg-type]
        backend=backend,  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        detail=str(r.get("detail") or ""),
        seconds=r.get("seconds"),
        error_type=r.get("error_type"),
        error_message=r.get("error_message"),
        reference_error=r.get("reference_error"),
        metrics=m,
        known_failure=r.get("known_failure"),
        fixed=bool(r.get("fixed", False)),
        case=dict(r.get("case") or {}),
        plugin=r.get("plugin"),
        # Records written before the field existed were judged with the default c = 1.
        tolerance_factor=1.0 if factor is None else float(factor),
        # Likewise with the statistical tier on, the default (no --proven-bound-only).
        tolerance_statistical=True if statistical is None else bool(statistical),
        shrunk_from=r.get("shrunk_from"),
    )


def counts(records: Iterable[Record]) -> dict[tuple[str, str], dict[str, int]]:
    """(op, backend) -> verdict -> count; known failures are counted as ``known-failure``."""
    table: dict[tuple[str, str], dict[str, int]] = {}
    for r in records:
        op = r.case_id.split("-", 1)[0]
        cell = table.setdefault((op, r.backend), {})
        key = "known-failure" if r.known_failure else r.verdict
        cell[key] = cell.get(key, 0) + 1
    return table
