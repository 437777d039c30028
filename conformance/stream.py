"""Results streamed to disk while a run goes: JSON Lines, schema ``convcheck-stream/1``.

``python -m conformance run`` appends one line per case and backend as soon as the case is done
(and flushes after every case), so a run that is killed loses at most the cases in progress
(two: the serial run hands the next case to its workers while it judges one);
``run --resume FILE.jsonl`` runs only what the file does not hold yet, and the results JSON and
the HTML report are built from the stream at the end (``python -m conformance report`` reads a
stream as well as a results JSON).

A stream is UTF-8 text, one JSON object per line, each ending in ``\\n``; strict JSON (non-finite
metric values are the strings ``"nan"``, ``"inf"``, ``"-inf"``, as in the results JSON). Every
line has a ``kind``; the first line is the header and the only one of its kind::

    {"schema": "convcheck-stream/1", "kind": "header",
     "created": "2026-11-23T20:30:00+00:00",          # UTC, ISO 8601: when the run started
     "environment": {...},                             # as in the results JSON
     "settings": {"seed": int, "profile": "cli", "ops": [...], "dtypes": [...],
                  "max_examples": int, "invalid_examples": int,
                  "corpus": "all" | "none" | [names], "case_files": [paths],
                  "backends": "all" | [names],         # as requested (--backends)
                  "plugins": [specs],
                  "tolerance": {"factor": float, "accumulation": str, "statistical": bool},
                  "isolated": bool, "timeout": float, "worker_memory_mb": int,
                  "cases": int,                        # how many cases the run has in all
                  "command": str},
     "backends": [{"name", "description", "available", "detail", "versions"}, ...]}

then, in the order they happen::

    {"kind": "record", "case_id": ..., "backend": ..., "verdict": ..., ...}
        # one case on one backend: the fields of Record.to_dict() (conformance.runner)
    {"kind": "resume", "created": ..., "command": str, "done": int}
        # `run --resume` starts: "done" records were already in the file
    {"kind": "end", "created": ..., "seconds": float, "records": int, "stages": {...}}
        # a run (or a resumed part of it) finished: its wall time, how many records it wrote
        # and (optional) seconds per stage, {"<stage>": {"seconds", "count"}} (conformance.timing)

A stream whose last line is not ``end`` is from a run that was killed or interrupted (or is still
going). Records are keyed by ``(case_id, backend)``; a key appears once.

:attr:`StreamContents.results` is the run as :class:`~conformance.results.RunResults` (what the
results JSON and the report are built from): the header's created, environment, backends and
settings, the records in file order, and in the settings ``seconds`` (the sum of the ``end``
lines), ``stages`` (their stage times summed), ``stream`` (the file), and where they apply
``resumed`` (how many times), ``complete: false`` and ``truncated_line``.

Reading (:func:`read_stream`) checks every line like the results JSON reader checks a record and
names file, line number and field in its errors. One thing is forgiven: a last line without its
newline that is not valid JSON, which is what a run killed in the middle of a write leaves. It is
ignored, reported in :attr:`StreamContents.warnings`, and cut off by ``--resume`` before it
appends.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.results import (
    RunResults,
    check_header,
    environment,
    json_safe,
    need,
    record_from_dict,
)
from conformance.runner import Record
from conformance.timing import StageTimes

SCHEMA = "convcheck-stream/1"
KINDS = ("header", "record", "resume", "end")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _line(obj: dict[str, object]) -> str:
    """``obj`` as one line of strict JSON. Encoded as it is when it holds no non-finite float
    (nearly every record: the encoder itself refuses one), else after :func:`json_safe`; the
    same text either way, without walking every record twice."""
    try:
        text = json.dumps(obj, allow_nan=False, ensure_ascii=False)
    except ValueError:  # a non-finite float
        text = json.dumps(json_safe(obj), allow_nan=False, ensure_ascii=False)
    return text + "\n"


def record_line(record: Record) -> str:
    return _line({"kind": "record", **record.to_dict()})


@dataclass
class StreamContents:
    """What a stream holds: the header, the records, and how the run(s) that wrote it ended."""

    path: Path
    header: dict[str, object]
    records: list[Record]
    #: (line number, the "resume" line) for each resumption.
    resumes: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    #: the "end" lines, one per finished part of the run.
    ends: list[dict[str, object]] = field(default_factory=list)
    #: the last line is an "end": the run (or its last resumption) finished.
    complete: bool = False
    #: line number of an ignored, truncated last line.
    truncated_line: int | None = None
    #: bytes of the file up to the end of the last line that was read (a truncated line excluded).
    valid_bytes: int = 0
    #: the last line that was read has its newline.
    ends_with_newline: bool = True

    @property
    def settings(self) -> dict[str, object]:
        return self.header["settings"]  # type: ignore[return-value]

    @property
    def done(self) -> set[tuple[str, str]]:
        return {(r.case_id, r.backend) for r in self.records}

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.truncated_line is not None:
            out.append(
                f"{self.path}:{self.truncated_line}: truncated last line ignored "
                "(the run was killed while writing it)"
            )
        if not self.complete:
            planned = self.settings.get("cases")
            cases = len({r.case_id for r in self.records})
            of = f" of {planned}" if isinstance(planned, int) else ""
            out.append(
                f"{self.path}: the run did not finish (no end line): {len(self.records)} "
                f"record(s) for {cases}{of} case(s); resume it with "
                f"python -m conformance run --resume {self.path}"
            )
        return out

    @property
    def results(self) -> RunResults:
        """The run as :class:`RunResults` (settings say whether it finished and was resumed)."""
        settings = dict(self.settings)
        settings["seconds"] = round(sum(float(e["seconds"]) for e in self.ends), 3)  # type: ignore[arg-type]
        stages = StageTimes()
        for e in self.ends:
            if isinstance(e.get("stages"), dict):
                stages.merge(StageTimes.from_dict(e["stages"]))  # type: ignore[arg-type]
        if stages.seconds:
            settings["stages"] = stages.to_dict()
        if self.resumes:
            settings["resumed"] = len(self.resumes)
        if not self.complete:
            settings["complete"] = False
        if self.truncated_line is not None:
            settings["truncated_line"] = self.truncated_line
        settings["stream"] = str(self.path)
        h = self.header
        return RunResults(
            settings=settings,
            backends=h["backends"],  # type: ignore[arg-type]
            records=list(self.records),
            environment=h["environment"],  # type: ignore[arg-type]
            created=h["created"],  # type: ignore[arg-type]
        )


def is_stream(path: Path) -> bool:
    """A ``.jsonl`` file, or one whose first line is a stream header."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return True
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 20)
        head = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and str(head.get("schema", "")).startswith("convcheck-stream/")


def read_stream(path: Path) -> StreamContents:
    """Read and check a stream; ValueError naming file, line and field if it is malformed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read results stream: {exc}") from None
    if not data:
        raise ValueError(f"{path}: empty results stream (no header line)")
    pieces = data.split(b"\n")
    # data ends with "\n": the last piece is empty; otherwise it is a line without its newline.
    last_has_newline = pieces[-1] == b""
    if last_has_newline:
        pieces.pop()
    contents: StreamContents | None = None
    offset = 0
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(pieces, start=1):
        is_last = lineno == len(pieces)
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if is_last and not last_has_newline:
                if contents is None:
                    raise ValueError(
                        f"{where}: truncated header line (the run was killed as it started)"
                    ) from None
                contents.truncated_line = lineno
                break
            if not raw.strip():
                raise ValueError(f"{where}: empty line") from None
            raise ValueError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: a line must be a JSON object, not {type(obj).__name__}")
        kind = obj.get("kind")
        if lineno == 1:
            if obj.get("schema") != SCHEMA or kind != "header":
                raise ValueError(
                    f"{where}: the first line must be a header with 'schema' {SCHEMA!r} and "
                    f"'kind' 'header', got schema {obj.get('schema')!r}, kind {kind!r}"
                )
            check_header(obj, where, "header")
            contents = StreamContents(path, obj, [])
        else:
            assert contents is not None
            if kind == "record":
                rec = record_from_dict(obj, where, "record")
                key = (rec.case_id, rec.backend)
                if key in seen:
                    raise ValueError(
                        f"{where}: duplicate record for case_id {rec.case_id!r} on backend "
                        f"{rec.backend!r} (first on line {seen[key]})"
                    )
                seen[key] = lineno
                contents.records.append(rec)
            elif kind == "resume":
                need(obj, "created", str, where, "resume")
                need(obj, "command", str, where, "resume")
                need(obj, "done", int, where, "resume")
                contents.resumes.append((lineno, obj))
            elif kind == "end":
                need(obj, "created", str, where, "end")
                need(obj, "seconds", (int, float), where, "end")
                need(obj, "records", int, where, "end")
                contents.ends.append(obj)
            else:
                raise ValueError(
                    f"{where}: field 'kind' must be one of {', '.join(KINDS[1:])}, got {kind!r}"
                )
        contents.complete = kind == "end"
        offset += len(raw) + (1 if (not is_last or last_has_newline) else 0)
        contents.ends_with_newline = not is_last or last_has_newline
    assert contents is not None
    contents.valid_bytes = offset
    return contents


def read_results(path: Path) -> tuple[RunResults, list[str]]:
    """A results JSON or stream as :class:`RunResults`, with the stream's warnings."""
    if is_stream(path):
        contents = read_stream(path)
        return contents.results, contents.warnings
    return RunResults.read(path), []


class StreamWriter:
    """Appends lines to a stream, flushing after each case."""

    def __init__(self, path: Path, fh) -> None:
        self.path = path
        self._fh = fh
        self.written = 0

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        settings: dict[str, object],
        backends: list[dict[str, object]],
        env: dict[str, object] | None = None,
    ) -> StreamWriter:
        """A new stream at ``path`` (replacing any file there), its header written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("w", encoding="utf-8", newline="\n")
        header = {
            "schema": SCHEMA,
            "kind": "header",
            "created": _now(),
            "environment": environment() if env is None else env,
            "settings": settings,
            "backends": backends,
        }
        writer = cls(path, fh)
        writer._write(_line(header))
        return writer

    @classmethod
    def resume(cls, contents: StreamContents, command: str) -> StreamWriter:
        """Append to the stream read as ``contents``: cut a truncated last line, add "resume"."""
        path = contents.path
        with path.open("r+b") as raw:
            raw.truncate(contents.valid_bytes)
            if not contents.ends_with_newline:
                raw.seek(0, os.SEEK_END)
                raw.write(b"\n")
        fh = path.open("a", encoding="utf-8", newline="\n")
        writer = cls(path, fh)
        writer._write(
            _line(
                {
                    "kind": "resume",
                    "created": _now(),
                    "command": command,
                    "done": len(contents.records),
                }
            )
        )
        return writer

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()

    def write_records(self, records: Iterable[Record]) -> None:
        """The records of one case, in one write, flushed."""
        lines = [record_line(r) for r in records]
        if lines:
            self._write("".join(lines))
            self.written += len(lines)

    def end(self, seconds: float, stages: dict[str, object] | None = None) -> None:
        """The run (or this resumption) finished: wall seconds and, optionally, the seconds per
        stage (:meth:`conformance.timing.StageTimes.to_dict`)."""
        line: dict[str, object] = {
            "kind": "end",
            "created": _now(),
            "seconds": round(seconds, 3),
            "records": self.written,
        }
        if stages is not None:
            line["stages"] = stages
        self._write(_line(line))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
