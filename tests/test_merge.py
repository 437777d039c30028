"""Merged reports (conformance/merge.py): runs from several machines in one matrix, each run's
environment kept, and the cases whose verdict differs between machines highlighted."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from conformance.backends.numpy_ref import NumpyReference
from conformance.case import Case
from conformance.cli import main
from conformance.merge import machine_differences, merge_runs, parse_sources
from conformance.report import render_report
from conformance.results import RunResults, backend_entry
from conformance.runner import Runner

CASES = [
    Case("conv1d", 1, 2, 3, (8,), (3,)),
    Case("conv1d", 1, 2, 2, (6,), (1,), seed=4),  # a 1-tap kernel: flipping changes nothing
    Case("conv2d", 1, 3, 2, (6, 7), (3, 2), padding=(1, 0), seed=7),
]


class Kernel(NumpyReference):
    """'my-kernel' as it behaves on the machine where it is right."""

    name = "my-kernel"


class FlippedKernel(NumpyReference):
    """'my-kernel' on a machine where it flips the kernel: wrong wherever a kernel has two taps."""

    name = "my-kernel"

    def run(self, case, inputs):
        axes = tuple(range(1, inputs.w.ndim - 1))
        flipped = dataclasses.replace(inputs, w=np.ascontiguousarray(np.flip(inputs.w, axes)))
        return super().run(case, flipped)


def _run(backend, gpu: str | None) -> RunResults:
    records = [r for c in CASES for r in Runner([backend]).run_case(c)]
    env = {"os": "Linux", "cpu": "test CPU", "cpu_count": 2, "gpu": gpu, "versions": {}}
    return RunResults({"seed": 1}, [backend_entry(backend)], records, environment=env)


@pytest.fixture(scope="module")
def runs() -> list[tuple[str, RunResults]]:
    return [("cpu", _run(Kernel(), None)), ("gpu", _run(FlippedKernel(), "Test GPU"))]


def test_sources_are_labelled_by_name_or_stem():
    assert parse_sources(["ci=a/results.json", "b/results.json", "c/results.json"]) == [
        ("ci", Path("a/results.json")),
        ("results", Path("b/results.json")),
        ("results-2", Path("c/results.json")),
    ]
    with pytest.raises(ValueError, match="label\\(s\\) x given to two results files"):
        parse_sources(["x=a.json", "x=b.json"])


def test_merged_run_has_a_column_per_machine_and_backend(runs):
    merged, machines = merge_runs(runs)
    assert [b["name"] for b in merged.backends] == ["cpu/my-kernel", "gpu/my-kernel"]
    assert len(merged.records) == 2 * len(CASES)
    assert [(m.label, m.environment["gpu"], m.failures) for m in machines] == [
        ("cpu", None, 0),
        ("gpu", "Test GPU", 2),
    ]


def test_differences_are_the_cases_machines_disagree_on(runs):
    merged, _ = merge_runs(runs)
    diffs = machine_differences(merged.records)
    assert {d.case_id for d in diffs} == {CASES[0].id, CASES[2].id}  # not the 1-tap case
    assert all(d.backend == "my-kernel" for d in diffs)
    assert diffs[0].verdicts == {"cpu": "pass", "gpu": "value-mismatch"}


def test_merged_report_shows_machines_and_differences(runs):
    merged, machines = merge_runs(runs)
    page = render_report(merged, machines=machines)
    assert 'id="machines"' in page
    assert page.count('<tr class="difference">') == 2
    assert "2 cases with different verdicts on different machines" in page
    assert re.search(r"<td><b>gpu</b></td>.*?Test GPU", page, re.S)
    assert "gpu/my-kernel" in page and "cpu/my-kernel" in page


def test_report_command_merges_files_and_refuses_a_baseline_with_several(runs, tmp_path, capsys):
    paths = []
    for label, run in runs:
        path = tmp_path / f"{label}.json"
        run.write(path)
        paths.append(f"{label}={path}")
    out = tmp_path / "merged.html"
    assert main(["report", *paths, "-o", str(out)]) == 0
    assert 'id="machine-differences"' in out.read_text()
    assert main(["report", *paths, "-o", str(out), "--baseline", paths[0].split("=")[1]]) == 2
    assert "--baseline compares one run" in capsys.readouterr().err
