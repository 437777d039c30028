"""The pytest plugin under pytest-xdist: same verdicts as a serial run, one merged results JSON,
one report and the summary from the controller, regressions saved once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.regressions import load_regressions

pytest.importorskip("xdist")

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["conformance/test_conformance.py"]
BASE = ["-p", "no:cacheprovider", "-q", "--hypothesis-profile", "ci"]


def _pytest(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *TESTS, *BASE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _verdicts(path: Path) -> Counter:
    records = json.loads(path.read_text())["records"]
    return Counter((r["case_id"], r["backend"], r["verdict"]) for r in records)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The forward and gradient conv_transpose2d tests on numpy-ref and kernels-host, serially
    and on two xdist workers (with the HTML report)."""
    tmp = tmp_path_factory.mktemp("xdist")
    select = ["-k", "conv_transpose2d", "--conformance-backends", "numpy-ref,kernels-host"]
    out = {}
    for name, extra in (
        ("serial", ["-p", "no:xdist"]),
        ("parallel", ["-n", "2", "--conformance-report", str(tmp / "parallel.html")]),
    ):
        path = tmp / f"{name}.json"
        out[name] = (_pytest([*select, *extra, "--conformance-json", str(path)]), path)
    return out


def test_parallel_run_merges_the_same_records_as_a_serial_run(runs):
    (serial, serial_json), (parallel, parallel_json) = runs["serial"], runs["parallel"]
    assert serial.returncode == 0, serial.stdout + serial.stderr
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr
    assert "bringing up nodes" in parallel.stdout  # xdist ran it
    got = _verdicts(parallel_json)
    assert sum(got.values()) > 0
    assert got == _verdicts(serial_json)
    backends = {backend for _, backend, _ in got}
    assert {"numpy-ref", "kernels-host"} <= backends
    ids = {case_id for case_id, _, _ in got}
    assert any(i.endswith("-bwd_d") or "-bwd_d-" in i for i in ids)  # gradients, one pipeline
    assert any(i.endswith("-bwd_w") or "-bwd_w-" in i for i in ids)
    # Written in the same order, whichever process ran each test.
    serial_ids = [r["case_id"] for r in json.loads(serial_json.read_text())["records"]]
    assert [r["case_id"] for r in json.loads(parallel_json.read_text())["records"]] == serial_ids


def test_controller_prints_the_summary_and_writes_the_report(runs):
    parallel, parallel_json = runs["parallel"]
    out = parallel.stdout
    assert "convcheck conformance" in out
    assert re.search(r"^numpy-ref: .*pass \d+", out, re.MULTILINE), out
    assert f"results: {parallel_json}" in out
    report = parallel_json.with_suffix(".html")
    assert f"report: {report}" in out
    html = report.read_text()
    case_ids = {case_id for case_id, _, _ in _verdicts(parallel_json)}
    assert any(case_id in html for case_id in case_ids)


def test_planted_failure_fails_the_parallel_run_and_is_merged_and_saved_once(tmp_path):
    results = tmp_path / "results.json"
    regs = tmp_path / "regressions"
    res = _pytest(
        [
            "-n",
            "2",
            "-k",
            "test_conv_transpose1d and not invalid",
            "--conformance-backends",
            "numpy-ref,planted-op-low",
            "--conformance-plugin",
            "tests.planted:BACKENDS",
            "--save-failures",
            "--conformance-json",
            str(results),
        ],
        env={"CONVCHECK_REGRESSIONS_DIR": str(regs)},
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "FAILED conformance/test_conformance.py::test_conv_transpose1d[planted-op-low]" in out
    records = json.loads(results.read_text())["records"]
    failures = [
        r
        for r in records
        if r["backend"] == "planted-op-low"
        and r["verdict"] == D.VALUE_MISMATCH
        and r["known_failure"] is None
    ]
    assert failures, out
    assert any(r["backend"] == "numpy-ref" and r["verdict"] == D.PASS for r in records)
    # The controller saved the shrunk failure, once.
    (reg,) = load_regressions(regs)
    assert reg.backend == "planted-op-low" and reg.verdict == D.VALUE_MISMATCH
    assert reg.case.id in {r["case_id"] for r in failures}
    assert f"saved regression: {reg.case.id} on planted-op-low" in res.stdout
