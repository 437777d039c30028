"""Benchmarks: a throughput table (GFLOP/s and ratio to a baseline backend) after the run."""

from __future__ import annotations

from collections import defaultdict

import pytest

_RESULTS: list[tuple[str, str, str, float, float]] = []


def record(group: str, layer: str, backend: str, seconds: float, flops: int) -> None:
    _RESULTS.append((group, layer, backend, seconds, flops / seconds / 1e9))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    if not _RESULTS:
        return
    tr = terminalreporter
    by_group: dict[str, list] = defaultdict(list)
    for row in _RESULTS:
        by_group[row[0]].append(row)
    for group, rows in by_group.items():
        baseline_name = "torch-cuda" if any(r[2] == "torch-cuda" for r in rows) else "torch-cpu"
        if group == "oracle":
            baseline_name = "torch-cpu-f64"
        base = {r[1]: r[3] for r in rows if r[2] == baseline_name}
        tr.section(f"convcheck bench: {group} (median time; ratio = {baseline_name} time / time)")
        tr.write_line(f"{'layer':<16}{'backend':<22}{'median ms':>12}{'GFLOP/s':>12}{'ratio':>9}")
        for _, layer, backend, seconds, gflops in sorted(rows, key=lambda r: (r[1], r[3])):
            ratio = f"{base[layer] / seconds:.2f}" if layer in base else "-"
            tr.write_line(
                f"{layer:<16}{backend:<22}{seconds * 1e3:>12.2f}{gflops:>12.2f}{ratio:>9}"
            )
