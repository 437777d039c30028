"""Benchmarks: tables printed after the run (GFLOP/s, ratios to a baseline, the oracle's memory).

Tests call :func:`record` once per timed implementation; the terminal summary prints one table
per group:

* ``kernels``: every backend per layer, ratio to cuDNN (``torch-cuda``) or ``torch-cpu``;
* ``oracle``: the float64 reference as the runner calls it (output and error bound) against
  ``torch.nn.functional`` in float64 on the CPU, idle and with a busy neighbour process, with
  the reference's peak memory and the formulation the chooser picked;
* ``formulations``: each reference formulation forced, per layer, and whether the chooser's pick
  was the fastest;
* harness throughput (:func:`record_stages`): cases per second end to end and per stage
  (input generation, reference, each backend, diffing, results JSON, report).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from conformance.timing import StageTimes, throughput_table

#: Rows flagged "!" in the oracle table: slower than half of torch's speed, or more memory.
SLOW_RATIO = 0.5
MEMORY_RATIO = 2.0
#: A chooser pick within this factor of the fastest formulation counts as a tie (timing noise).
TIE = 1.10


@dataclass(frozen=True)
class Row:
    """One timed implementation on one layer; ``info`` holds per-group extras."""

    group: str
    layer: str
    backend: str
    seconds: float
    gflops: float
    info: dict = field(default_factory=dict)


_RESULTS: list[Row] = []
#: (title, stage times, wall seconds) of each harness throughput run.
_STAGES: list[tuple[str, StageTimes, float]] = []


def record_stages(title: str, times: StageTimes, wall_seconds: float) -> None:
    """Record one harness run's stage times for the throughput table."""
    _STAGES.append((title, times, wall_seconds))


def record(group: str, layer: str, backend: str, seconds: float, flops: int, **info) -> None:
    """Record a median time. ``info``: for the oracle's reference row ``memory_ratio`` and
    ``formulation``; for the formulations group ``chosen`` (the chooser's pick)."""
    _RESULTS.append(Row(group, layer, backend, seconds, flops / seconds / 1e9, info))


def _kernels_table(tr, group: str, rows: list[Row]) -> None:
    baseline_name = "torch-cuda" if any(r.backend == "torch-cuda" for r in rows) else "torch-cpu"
    base = {r.layer: r.seconds for r in rows if r.backend == baseline_name}
    tr.section(f"convcheck bench: {group} (median time; ratio = {baseline_name} time / time)")
    tr.write_line(f"{'layer':<16}{'backend':<22}{'median ms':>12}{'GFLOP/s':>12}{'ratio':>9}")
    for r in sorted(rows, key=lambda r: (r.layer, r.seconds)):
        ratio = f"{base[r.layer] / r.seconds:.2f}" if r.layer in base else "-"
        tr.write_line(
            f"{r.layer:<16}{r.backend:<22}{r.seconds * 1e3:>12.2f}{r.gflops:>12.2f}{ratio:>9}"
        )


def threads_line() -> str:
    """The thread settings the numbers were taken with (both libraries use all cores unless an
    environment variable says otherwise)."""
    try:
        import torch

        torch_threads = str(torch.get_num_threads())
    except ImportError:
        torch_threads = "-"
    env = ", ".join(
        f"{k}={os.environ[k]}"
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        if k in os.environ
    )
    env = env or "no thread variables set"
    return f"cpus: {os.cpu_count()}, torch threads: {torch_threads}, {env}"


def oracle_lines(rows: list[Row]) -> list[str]:
    """The oracle table: per layer the reference on the runner's path (output and bound) and
    torch (float64, CPU) side by side, idle and with a busy neighbour process."""

    def by(impl: str, load: str) -> dict[str, Row]:
        return {
            r.layer: r for r in rows if r.backend == impl and r.info.get("load", "idle") == load
        }

    ref, torch = by("reference-bound", "idle"), by("torch-cpu-f64", "idle")
    ref_l, torch_l = by("reference-bound", "loaded"), by("torch-cpu-f64", "loaded")

    def ratio(t: dict[str, Row], r: dict[str, Row], layer: str) -> float | None:
        return t[layer].seconds / r[layer].seconds if layer in t and layer in r else None

    def ms(table: dict[str, Row], layer: str) -> float:
        return table[layer].seconds * 1e3 if layer in table else float("nan")

    def num(v: float | None) -> float:
        return float("nan") if v is None else v

    width = max([len(layer) for layer in ref] + [5]) + 2
    lines = [
        f"{'layer':<{width}}{'ref ms':>9}{'torch ms':>10}{'idle':>7}"
        f"{'ref ms':>10}{'torch ms':>10}{'loaded':>8}{'mem':>7}  formulation",
        f"{'':<{width}}{'(idle: torch/ref)':>26}{'(busy neighbour: torch/ref)':>35}",
    ]
    flagged = 0
    for layer, r in ref.items():
        idle, loaded = ratio(torch, ref, layer), ratio(torch_l, ref_l, layer)
        mem = r.info.get("memory_ratio")
        bad = any(v is not None and v < SLOW_RATIO for v in (idle, loaded)) or (
            mem is not None and mem > MEMORY_RATIO
        )
        flagged += bad
        lines.append(
            f"{layer:<{width}}{r.seconds * 1e3:>9.2f}{ms(torch, layer):>10.2f}{num(idle):>7.2f}"
            f"{ms(ref_l, layer):>10.2f}{ms(torch_l, layer):>10.2f}{num(loaded):>8.2f}"
            f"{num(mem):>7.2f}  {r.info.get('formulation', '-')}{'  !' if bad else ''}"
        )
    if ref:
        slowest = max(ref.values(), key=lambda r: r.seconds)
        lines.append(
            f"slowest layer for the reference (with its bound, idle): {slowest.layer} "
            f"({slowest.seconds * 1e3:.2f} ms)"
        )
        for name, t, r in (("idle", torch, ref), ("loaded", torch_l, ref_l)):
            relative = [(t[k].seconds / v.seconds, k) for k, v in r.items() if k in t]
            if relative:
                worst, layer = min(relative)
                lines.append(f"lowest torch/ref ratio, {name}: {layer} ({worst:.2f})")
        lines.append(
            f"flagged '!' (torch/ref < {SLOW_RATIO} idle or loaded, or memory > {MEMORY_RATIO}x "
            f"inputs + output): {flagged} of {len(ref)}"
        )
    return lines


def formulation_lines(rows: list[Row]) -> list[str]:
    """The formulations table: each formulation forced, per layer, idle and with a busy
    neighbour, against the chooser's pick (which does not depend on the load)."""
    by_layer: dict[str, dict[tuple[str, str], Row]] = defaultdict(dict)
    for r in rows:
        by_layer[r.layer][r.backend, r.info.get("load", "idle")] = r
    names = sorted({r.backend for r in rows})
    loads = [
        load for load in ("idle", "loaded") if any(r.info.get("load", "idle") == load for r in rows)
    ]
    width = max([len(layer) for layer in by_layer] + [5]) + 2
    head = "".join(f"{n + ' ' + load:>16}" for load in loads for n in names)
    lines = [f"{'layer':<{width}}{head}  chosen  " + "  ".join(f"fastest {load}" for load in loads)]
    good = dict.fromkeys(loads, 0)
    for layer, forms in by_layer.items():
        chosen = next(iter(forms.values())).info.get("chosen", "-")
        times = "".join(
            f"{forms[n, load].seconds * 1e3:>16.2f}" if (n, load) in forms else f"{'-':>16}"
            for load in loads
            for n in names
        )
        verdicts = []
        for load in loads:
            timed = {n: r for (n, lo), r in forms.items() if lo == load}
            if not timed:
                verdicts.append(f"{'-':<16}")
                continue
            fastest = min(timed.values(), key=lambda r: r.seconds)
            ok = chosen in timed and timed[chosen].seconds <= TIE * fastest.seconds
            good[load] += ok
            verdicts.append(f"{fastest.backend + ('' if ok else ' x'):<16}")
        lines.append(f"{layer:<{width}}{times}  {chosen:<8}" + "  ".join(verdicts))
    for load in loads:
        lines.append(
            f"chooser's pick fastest or within {TIE:.2f}x of it, {load}: {good[load]} of "
            f"{len(by_layer)} (x: a slower pick)"
        )
    return lines


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    tr = terminalreporter
    for title, times, wall in _STAGES:
        tr.section(f"convcheck bench: harness throughput ({title}; calls/s = calls / seconds)")
        tr.write_line(threads_line())
        for line in throughput_table(times, wall_seconds=wall):
            tr.write_line(line)
    by_group: dict[str, list[Row]] = defaultdict(list)
    for row in _RESULTS:
        by_group[row.group].append(row)
    for group, rows in by_group.items():
        if group == "oracle":
            tr.section(
                "convcheck bench: oracle (median time; float64 on the CPU; ref = output and error "
                "bound, as the runner calls it; torch/ref = torch time / reference time; mem = "
                "reference peak / (x + w + bias + out) in float64)"
            )
            lines = [threads_line(), *oracle_lines(rows)]
        elif group == "formulations":
            tr.section("convcheck bench: formulations (median time, each formulation forced)")
            lines = formulation_lines(rows)
        else:
            _kernels_table(tr, group, rows)
            continue
        for line in lines:
            tr.write_line(line)
