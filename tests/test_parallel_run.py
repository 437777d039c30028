"""Parallel runs (``run --workers N``), per-backend time budgets and the stage-time table.

The CLI runs for real in subprocesses, with backends from ``tests/planted.py`` that fail, crash
and hang, so the parallel run is checked on every kind of verdict, not only on passes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.case import parse_id
from conformance.dtypes import round_to
from conformance.inputs import run_reference
from conformance.isolation import DEFAULT_TIMEOUT, TimeBudget
from conformance.parallel import MAX_AUTO_WORKERS, available_cpus, parse_workers
from conformance.runner import Runner
from conformance.stream import read_stream
from conformance.timing import StageTimes, throughput_table
from tests.planted import _Planted
from tests.test_robust_run import ENV, PLUGIN, ROBUST_CASES, ROOT, cli, run_cases, write_cases

# --- run --workers N: the same records, in the same order, as a serial run --------------------


def _key(record: dict) -> tuple:
    return (record["case_id"], record["backend"], record["verdict"], record["known_failure"])


def test_workers_give_the_serial_records_and_one_report(tmp_path):
    cases = write_cases(tmp_path / "cases.toml", ROBUST_CASES)
    common = [
        "run",
        "--cases",
        str(cases),
        "--no-corpus",
        "--ops",
        "conv_transpose1d,conv_transpose2d,conv1d",
        "--dtypes",
        "float32,float16",
        "--max-examples",
        "4",
        "--plugin",
        PLUGIN,
        "--backends",
        "numpy-ref,planted-op-low,planted-crash,planted-hang",
        # Every batch-2 case hangs for this long on planted-hang, in both runs. A worker's
        # start-up has its own allowance (isolation.START_TIMEOUT), so 2 s is only the case.
        "--timeout",
        "2",
    ]
    serial = cli(*common, "--json", str(tmp_path / "serial.json"))
    parallel = cli(
        *common,
        "-n",
        "2",
        "--json",
        str(tmp_path / "parallel.json"),
        "--report",
        str(tmp_path / "parallel.html"),
    )
    # planted-op-low fails and planted-crash crashes: both runs finish and report failures.
    assert serial.returncode == 1, serial.stderr
    assert parallel.returncode == 1, parallel.stderr
    assert "2 workers" in parallel.stderr
    a = json.loads((tmp_path / "serial.json").read_text())["records"]
    b = json.loads((tmp_path / "parallel.json").read_text())["records"]
    assert [_key(r) for r in a] == [_key(r) for r in b]
    verdicts = {r["verdict"] for r in b}
    assert {D.PASS, D.VALUE_MISMATCH, D.CRASHED, D.TIMEOUT} <= verdicts
    html = (tmp_path / "parallel.html").read_text()
    assert all(r["case_id"] in html for r in b if r["verdict"] == D.VALUE_MISMATCH)
    # The stream's end line holds the stage times summed over both workers.
    stages = read_stream(tmp_path / "parallel.jsonl").results.settings["stages"]
    # After the cases, the run shrank its failure groups (the same shrunk cases both ways); those
    # are extra records, run in the main process, not cases of the list the workers share.
    assert any(r["shrunk_from"] for r in b)
    cases_run = len({r["case_id"] for r in b if not r["shrunk_from"]})
    assert stages["inputs"]["count"] == cases_run
    assert stages["reference"]["count"] == cases_run
    assert stages["backend:planted-op-low"]["count"] > 0
    assert "where the time went" in parallel.stdout
    assert "backend planted-op-low" in parallel.stdout


class WithinProvenBound(_Planted):
    """Every op: the reference plus or minus 0.4 of the proven error bound (alternating signs).
    Far above what float32 rounding gives, so it takes ``--proven-bound-only`` to pass; with it,
    it passes whatever the statistical tier's thresholds (float32 cases only: the output's own
    rounding stays within the bound's share for it)."""

    name = "planted-within-proven-bound"

    def unsupported_reason(self, case):
        return None

    def run(self, case, inputs):
        ref = run_reference(case, inputs)
        bound = D.error_bound(case, ref, D.Tolerance())
        sign = np.where(np.arange(ref.out.size).reshape(ref.out.shape) % 2, 1.0, -1.0)
        return round_to(ref.out + 0.4 * bound * sign, case.dtype)


def test_proven_bound_only_reaches_the_workers(tmp_path):
    """``--proven-bound-only`` with ``-n 2``: the records a serial run gives, every one judged
    by the proven bound alone (and saying so), in both the cases the workers run and the ones
    the main process shrinks."""
    ids = [
        "conv_transpose2d-n1-c2x2-s3-k2-st2-p1-op1-f32",  # planted-op-low fails
        "conv_transpose1d-n1-c1x1-s4-k2-st2-f32",
        "conv1d-n1-c64x8-s40-k9-f32",
        "conv2d-n2-c16x4-s6x5-k3-f32",
    ]
    plugin = f"tests.test_parallel_run:{WithinProvenBound.__name__}"
    common = [
        "--plugin",
        plugin,
        "--no-isolation",
        "--proven-bound-only",
        "--dtypes",
        "float32",
    ]
    backends = f"planted-op-low,{WithinProvenBound.name}"
    serial = run_cases(tmp_path, ids, backends, *common, "--json", str(tmp_path / "s.json"))
    parallel = run_cases(
        tmp_path, ids, backends, *common, "-n", "2", "--json", str(tmp_path / "p.json")
    )
    assert serial.returncode == 1, serial.stdout + serial.stderr
    assert parallel.returncode == 1, parallel.stdout + parallel.stderr
    a = json.loads((tmp_path / "s.json").read_text())
    b = json.loads((tmp_path / "p.json").read_text())

    def keys(data: dict) -> list[tuple]:
        return [(*_key(r), r["tolerance_statistical"], r["replay"]) for r in data["records"]]

    assert keys(a) == keys(b)
    assert a["settings"]["tolerance"]["statistical"] is False
    assert b["settings"]["tolerance"]["statistical"] is False
    records = b["records"]
    assert all(r["tolerance_statistical"] is False for r in records)
    mine = [r for r in records if r["backend"] == WithinProvenBound.name]
    assert len(mine) >= len(ids) and all(r["verdict"] == D.PASS for r in mine), mine
    failed = [r for r in records if r["verdict"] == D.VALUE_MISMATCH]
    assert failed and any(r["shrunk_from"] for r in failed)
    assert all(r["replay"].endswith(f"--plugin {PLUGIN} --proven-bound-only") for r in failed)


def test_a_worker_that_dies_without_isolation_is_a_clear_error(tmp_path):
    """With cases still unread by the dead worker (ConnectionResetError there, issue 12 item 7):
    exit 2, no traceback, the case, the backend, the signal and the way out."""
    crash = "conv_transpose1d-n1-c1x1-s4-k2-st3-f32"  # planted-crash segfaults on stride 3
    res = run_cases(
        tmp_path,
        [crash, "conv_transpose1d-n1-c1x1-s4-k2-st2-f32", "conv_transpose1d-n1-c1x1-s5-k2-f32"],
        "planted-crash",
        "--no-isolation",
        "-n",
        "2",
        "-q",
        "--stream",
        str(tmp_path / "s.jsonl"),
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"died while running {crash}" in res.stderr
    assert "isolation" in res.stderr
    assert "Traceback" not in res.stderr and "ConnectionResetError" not in res.stderr
    assert crash in res.stderr and "planted-crash" in res.stderr
    assert "SIGSEGV" in res.stderr and "drop --no-isolation" in res.stderr


@pytest.mark.parametrize(
    "text, rule",
    [("0", "whole number >= 1"), ("two", "whole number >= 1"), ("-3", "whole number >= 1")],
)
def test_bad_workers_name_the_option(text, rule):
    with pytest.raises(ValueError, match=rf"--workers '{text}'.*{rule}"):
        parse_workers(text)


def test_workers_auto_is_one_per_cpu_up_to_a_cap(monkeypatch):
    assert parse_workers("auto") == min(available_cpus(), MAX_AUTO_WORKERS) >= 1
    monkeypatch.setattr("conformance.parallel.available_cpus", lambda: 64)
    assert parse_workers("auto") == MAX_AUTO_WORKERS
    assert parse_workers("3") == 3


# --- per-backend time budgets ---------------------------------------------------------------


def test_a_budget_per_backend(tmp_path):
    # planted-slow sleeps 50 ms per case: over a 10 ms budget it times out on every case it
    # runs, while numpy-ref and planted-hang (which hangs only on batch 2) keep their budgets.
    ids = ["conv_transpose1d-n1-c1x1-s4-k2-f32", "conv_transpose1d-n2-c1x1-s4-k2-f32"]
    res = run_cases(
        tmp_path,
        ids,
        "numpy-ref,planted-slow,planted-hang",
        "--timeout",
        "60",
        "--timeout",
        "planted-slow=0.01",
        "--timeout",
        "planted-hang=3",
        "--json",
        str(tmp_path / "r.json"),
        "-q",
    )
    assert res.returncode == 1, res.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    got = {(r["case_id"], r["backend"]): r for r in data["records"]}
    assert {got[(i, "planted-slow")]["verdict"] for i in ids} == {D.TIMEOUT}
    assert got[(ids[0], "planted-hang")]["verdict"] == D.PASS
    assert got[(ids[1], "planted-hang")]["verdict"] == D.TIMEOUT
    assert "within 3 s" in got[(ids[1], "planted-hang")]["detail"]
    assert {got[(i, "numpy-ref")]["verdict"] for i in ids} == {D.PASS}
    assert data["settings"]["timeout"] == 60
    assert data["settings"]["timeout_per_backend"] == {"planted-hang": 3, "planted-slow": 0.01}


def test_time_budget_parsing():
    budget = TimeBudget.parse(["30", "mlx-cpu=600", "torch-cpu=2.5"])
    assert budget.for_backend("mlx-cpu") == 600
    assert budget.for_backend("torch-cpu") == 2.5
    assert budget.for_backend("numpy-ref") == 30
    assert TimeBudget.parse([]).for_backend("x") == DEFAULT_TIMEOUT
    assert budget.describe() == "30 s, mlx-cpu 600 s, torch-cpu 2.5 s"


@pytest.mark.parametrize(
    "item, message",
    [
        ("0", "finite number > 0"),
        ("mlx-cpu=-1", "finite number > 0"),
        ("mlx-cpu=soon", "finite number > 0"),
        ("inf", "finite number > 0"),
        ("=5", "backend name before '=' is empty"),
    ],
)
def test_bad_time_budgets_name_the_option(item, message):
    with pytest.raises(ValueError, match=rf"--timeout '{item}'.*{message}"):
        TimeBudget.parse([item])


def test_a_budget_for_an_unknown_backend_is_an_error():
    res = cli("replay", "conv1d-n1-c1x1-s5-k3-f32", "--timeout", "mlx-cpx=10", timeout=120)
    assert res.returncode == 2
    assert "--timeout: unknown backend mlx-cpx" in res.stderr


# --- where the time goes --------------------------------------------------------------------


def test_runner_times_every_stage():
    (numpy_ref,) = resolve(["numpy-ref"])
    runner = Runner([numpy_ref])
    runner.run_case(parse_id("conv_transpose2d-n2-c4x6-s5-k3-st2-p1-f32"))
    runner.run_case(parse_id("conv2d-n1-c2x2-s2-k3-f32"))  # invalid: kernel larger than input
    t = runner.times
    assert t.counts == {"inputs": 2, "reference": 2, "backend:numpy-ref": 2, "diff": 1}
    assert all(s > 0 for s in t.seconds.values())
    # One case's own stage times, while the runner's total keeps counting.
    records, spent = runner.run_case_on(parse_id("conv1d-n1-c2x2-s5-k3-f32"), ["numpy-ref"])
    assert [r.verdict for r in records] == [D.PASS]
    assert spent.counts == {"inputs": 1, "reference": 1, "backend:numpy-ref": 1, "diff": 1}
    assert runner.times.counts == {"inputs": 3, "reference": 3, "backend:numpy-ref": 3, "diff": 2}


def test_stage_times_merge_round_trip_and_table():
    a = StageTimes(
        {"inputs": 1.0, "backend:torch-cpu": 2.0}, {"inputs": 10, "backend:torch-cpu": 8}
    )
    b = StageTimes({"inputs": 1.0, "diff": 1.0}, {"inputs": 10, "diff": 4})
    a.merge(b)
    assert a.seconds == {"inputs": 2.0, "backend:torch-cpu": 2.0, "diff": 1.0}
    assert a.counts == {"inputs": 20, "backend:torch-cpu": 8, "diff": 4}
    assert StageTimes.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    lines = throughput_table(a, wall_seconds=4.0)
    row = {line.split("  ")[0].strip(): line.split() for line in lines[1:]}
    assert row["input generation"][-4:] == ["20", "2.00", "40.0%", "10"]
    assert row["backend torch-cpu"][-4:] == ["8", "2.00", "40.0%", "4"]
    assert row["diffing"][-4:] == ["4", "1.00", "20.0%", "4"]
    assert lines[-1].split()[-3:] == ["20", "4.00", "5"]


def test_pytest_budget_option_names_itself_when_bad():
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "conformance/test_conformance.py",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            "--conformance-timeout",
            "mlx-cpu=0",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert "--conformance-timeout 'mlx-cpu=0': seconds must be a finite number > 0" in (
        res.stdout + res.stderr
    )
