"""Several runs in one report: the same cases checked on different machines or devices.

``python -m conformance report ci=cpu.json h200=gpu.json -o merged.html`` reads each results file
(CLI or pytest, JSON or stream) and labels it (``NAME=PATH``, else the file's stem). The merged
run's records keep their verdicts and details; their backend becomes ``LABEL/BACKEND``, so the
matrix has one column per machine and backend, failure groups and their rules are per machine,
and every run keeps its own environment and settings (:class:`Machine`).

:func:`machine_differences` lists the (case, backend) pairs that more than one machine ran and
that got different verdicts: the cases a kernel passes on one device and fails on another.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from conformance import report_model as M
from conformance.results import RunResults
from conformance.runner import Record

#: Separates the machine label from the backend name in merged records.
SEP = "/"


@dataclass(frozen=True)
class Machine:
    """One merged run: its label and what it recorded about where and how it ran."""

    label: str
    created: str
    environment: dict[str, object]
    settings: dict[str, object]
    records: int
    failures: int


@dataclass(frozen=True)
class Difference:
    """A (case, backend) that machines answered differently: label -> record."""

    case_id: str
    backend: str
    by_machine: dict[str, Record]

    @property
    def verdicts(self) -> dict[str, str]:
        return {label: M.matrix_key(r) for label, r in self.by_machine.items()}


def parse_sources(items: list[str]) -> list[tuple[str, Path]]:
    """``NAME=PATH`` or ``PATH`` items -> (label, path); a label given twice is a ValueError, a
    stem shared by two unnamed files gets ``-2``, ``-3``, ... appended."""
    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and SEP not in name:
            out.append((name, Path(path)))
        else:
            out.append(("", Path(item)))
    named = [label for label, _ in out if label]
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise ValueError(f"report: label(s) {', '.join(twice)} given to two results files")
    taken = set(named)
    labelled = []
    for label, path in out:
        if not label:
            label, n = path.stem, 1
            while label in taken:
                n += 1
                label = f"{path.stem}-{n}"
            taken.add(label)
        labelled.append((label, path))
    return labelled


def split_backend(name: str) -> tuple[str | None, str]:
    """``LABEL/BACKEND`` -> (LABEL, BACKEND); a name without a label -> (None, name)."""
    label, sep, backend = name.partition(SEP)
    return (label, backend) if sep else (None, name)


def merge_runs(runs: list[tuple[str, RunResults]]) -> tuple[RunResults, list[Machine]]:
    """One run whose backends are ``LABEL/BACKEND``, and the machines it came from."""
    records: list[Record] = []
    backends: list[dict[str, object]] = []
    usage: list[dict[str, object]] = []
    machines: list[Machine] = []
    for label, run in runs:
        records += [replace(r, backend=f"{label}{SEP}{r.backend}") for r in run.records]
        backends += [{**b, "name": f"{label}{SEP}{b.get('name')}"} for b in run.backends]
        usage += [
            {**u, "backend": f"{label}{SEP}{u.get('backend')}"} for u in run.known_failure_usage
        ]
        machines.append(
            Machine(
                label,
                run.created,
                run.environment,
                run.settings,
                len(run.records),
                sum(1 for r in run.records if r.failed),
            )
        )
    settings: dict[str, object] = {"merged": ", ".join(label for label, _ in runs)}
    created = max(run.created for _, run in runs)
    merged = RunResults(settings, backends, records, environment={}, created=created)
    merged.known_failure_usage = usage
    return merged, machines


def machine_differences(records: list[Record]) -> list[Difference]:
    """(case, backend) pairs run on more than one machine with different verdicts, in case
    order (smallest first)."""
    seen: dict[tuple[str, str], dict[str, Record]] = {}
    for r in records:
        label, backend = split_backend(r.backend)
        if label is None:
            continue
        seen.setdefault((r.case_id, backend), {})[label] = r
    out = [
        Difference(case_id, backend, by_machine)
        for (case_id, backend), by_machine in seen.items()
        if len(by_machine) > 1 and len({M.matrix_key(r) for r in by_machine.values()}) > 1
    ]
    out.sort(key=lambda d: (M.case_size(next(iter(d.by_machine.values()))), d.backend))
    return out
