"""Nothing silently wrong: the audit of bad inputs and faults (issue 12, item 7).

1. a backend that writes into its inputs gets ``mutated-input``; the others see the originals;
2. two runs on the same ``--stream`` / ``--json``: the second one is refused (exit 2);
3. negative sizes are rejected by the reference with the real value;
4. a results JSON with a duplicated record is rejected;
5. a case too large for this machine is ``too-large`` and the run goes on;
6. ``-n 2 --no-isolation`` with a crashing backend: a clear error, no traceback;
7. ``--conformance-worker-memory-mb`` for pytest ``--isolate``;
8. a 1 MB exception message is capped and stored once;
9. ``--worker-memory-mb``: negative values and limits too small to start a worker are errors.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.case import parse_id
from conformance.inputs import make_inputs, run_reference
from conformance.isolation import IsolatedBackend
from conformance.results import RunResults, backend_entry
from conformance.runner import Record, Runner
from tests.test_robust_run import cli
from tests.test_robust_run import run_cases as robust_run_cases

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.planted:BACKENDS"
AUDIT = "tests.planted:AUDIT_BACKENDS"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CASE = "conv_transpose1d-n1-c2x2-s5-k3-st2-f32"
MUTATED = "mutated-input"
TOO_LARGE = "too-large"


def run_cases(tmp_path: Path, ids: list[str], backends: str, *args: str, timeout: int = 300):
    """``run`` on exactly ``ids`` on ``backends``, with the planted and the audit backends."""
    return robust_run_cases(tmp_path, ids, backends, "--plugin", AUDIT, *args, timeout=timeout)


def by_backend(records) -> dict[str, Record]:
    return {r.backend: r for r in records}


# --- 1. a backend that writes into its inputs ---------------------------------------------------


def test_1_mutating_backend_in_process_is_caught_and_the_others_see_the_originals():
    backends = resolve(["planted-mutate", "planted-slow"], plugins=[PLUGIN, AUDIT])
    runner = Runner(backends)
    case = parse_id(CASE)
    pristine = make_inputs.__wrapped__(case)
    for _ in range(2):  # the second time from the (restored) cache of inputs
        recs = by_backend(runner.run_case(case))
        assert recs["planted-mutate"].verdict == MUTATED, recs["planted-mutate"].summary()
        assert recs["planted-mutate"].failed
        assert "input x" in recs["planted-mutate"].detail
        assert recs["planted-slow"].verdict == D.PASS, recs["planted-slow"].summary()
    cached = make_inputs(case)
    assert np.array_equal(cached.x, pristine.x) and np.array_equal(cached.w, pristine.w)
    assert not cached.x.flags.writeable


def test_1_a_plain_write_to_an_input_is_refused_in_process():
    from tests.planted import Slow

    class Writes(Slow):
        name = "planted-writes"

        def run(self, case, inputs):
            inputs.x[...] = 0
            return super().run(case, inputs)

    (rec,) = Runner([Writes()]).run_case(parse_id(CASE))
    assert rec.verdict == D.RAISED and "read-only" in rec.detail


def test_1_mutating_backend_isolated_is_caught(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    inner = resolve(["planted-mutate", "planted-slow"], plugins=[PLUGIN, AUDIT])
    backends = [IsolatedBackend(b, plugins=(PLUGIN, AUDIT), timeout=60) for b in inner]
    try:
        recs = by_backend(Runner(backends).run_case(parse_id(CASE)))
    finally:
        for b in backends:
            b.close()
    assert recs["planted-mutate"].verdict == MUTATED, recs["planted-mutate"].summary()
    assert "input x" in recs["planted-mutate"].detail
    assert recs["planted-slow"].verdict == D.PASS


def test_1_summary_and_report_count_mutated_input_as_a_failure():
    from conformance.cli import print_summary
    from conformance.report import render_report

    backends = resolve(["planted-mutate"], plugins=[AUDIT])
    records = Runner(backends).run_case(parse_id(CASE))
    out = io.StringIO()
    print_summary(records, backends, out=out)
    row = [line for line in out.getvalue().splitlines() if line.startswith("conv_transpose1d")]
    assert row and row[0].split()[1] == "0/1/0/0/0", out.getvalue()
    html = render_report(RunResults({}, [backend_entry(b) for b in backends], records))
    assert "v-mutated-input" in html


# --- 2. two runs on one stream ------------------------------------------------------------------


def _hold_lock(target: Path) -> int:
    """Hold the lock a run takes on ``target`` (its sibling ``.lock`` file), as a run would."""
    fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@pytest.mark.parametrize("which", ["--stream", "--json"])
def test_2_a_second_run_on_the_same_file_is_refused(tmp_path, which):
    stream, json_path = tmp_path / "r.jsonl", tmp_path / "r.json"
    target = stream if which == "--stream" else json_path
    target.write_text("what the other run wrote\n")
    fd = _hold_lock(target)
    try:
        res = run_cases(
            tmp_path,
            [CASE],
            "numpy-ref",
            "--no-isolation",
            "-q",
            "--stream",
            str(stream),
            "--json",
            str(json_path),
        )
    finally:
        os.close(fd)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "another run" in res.stderr and f"pid {os.getpid()}" in res.stderr, res.stderr
    assert str(target) in res.stderr
    assert "Traceback" not in res.stderr
    assert target.read_text() == "what the other run wrote\n"


def test_2_the_lock_is_released_after_a_run(tmp_path):
    stream = tmp_path / "r.jsonl"
    for _ in range(2):
        res = run_cases(
            tmp_path, [CASE], "numpy-ref", "--no-isolation", "-q", "--stream", str(stream)
        )
        assert res.returncode == 0, res.stdout + res.stderr
    assert not stream.with_name(stream.name + ".lock").exists()


# --- 3. negative sizes --------------------------------------------------------------------------

NEGATIVE = [
    ("conv2d-nm1-c1x1-s3-k1-f32", "batch must be >= 0, got -1"),
    ("conv2d-n1-cm1x1-s3-k1-f32", "input channels must be >= 1, got -1"),
    ("conv2d-n1-c1xm2-s3-k1-bias-f32", "output channels must be >= 1, got -2"),
    ("conv2d-n1-c1x1-sm1-k1-f32", "input spatial size[0] must be >= 1, got -1"),
    ("conv_transpose1d-n1-c1x1-s3-km1-f32", "kernel size must be >= 1, got -1"),
]


@pytest.mark.parametrize("case_id, message", NEGATIVE)
def test_3_negative_sizes_are_rejected_with_the_real_value(case_id, message):
    case = parse_id(case_id)
    with pytest.raises(ValueError, match=re.escape(message)):
        run_reference(case)
    (rec,) = Runner(resolve(["numpy-ref"])).run_case(case)
    assert rec.verdict in (D.BOTH_REJECTED, D.ACCEPTED_INVALID), rec.summary()
    assert message in (rec.reference_error or ""), rec.summary()


def test_3_replay_of_a_negative_batch_does_not_pass():
    res = cli("replay", "conv2d-nm1-c1x1-s3-k1-f32", "--backends", "numpy-ref", "--no-isolation")
    assert "batch must be >= 0, got -1" in res.stdout, res.stdout + res.stderr
    assert "on numpy-ref: pass" not in res.stdout


# --- 4. duplicated records ----------------------------------------------------------------------


def test_4_a_duplicated_record_is_rejected(tmp_path):
    backends = resolve(["numpy-ref"])
    (rec,) = Runner(backends).run_case(parse_id(CASE))
    path = tmp_path / "dup.json"
    RunResults({"seed": 1}, [backend_entry(b) for b in backends], [rec, rec]).write(path)
    with pytest.raises(ValueError, match=r"dup\.json.*records\[1\].*duplicate.*" + CASE):
        RunResults.read(path)
    res = cli("report", str(path), "-o", str(tmp_path / "x.html"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "duplicate" in res.stderr and CASE in res.stderr and "numpy-ref" in res.stderr
    assert "dup.json" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.html").exists()


# --- 5. cases too large for this machine --------------------------------------------------------

HUGE = "conv3d-n1-c1x1-s8-k1000-p500-f32"


def test_5_a_huge_case_is_too_large_and_the_run_goes_on(tmp_path):
    small = "conv1d-n1-c1x1-s5-k3-f32"
    out = tmp_path / "r.json"
    res = run_cases(
        tmp_path, [HUGE, small], "numpy-ref", "--no-isolation", "-q", "--json", str(out)
    )
    assert res.returncode == 0, res.stdout + res.stderr
    recs = {r.case_id: r for r in RunResults.read(out).records}
    assert recs[small].verdict == D.PASS
    huge = recs[HUGE]
    assert huge.verdict == TOO_LARGE and not huge.failed
    assert "--max-case-memory-mb" in huge.detail and "GiB" in huge.detail, huge.detail
    assert "too large" in res.stdout


def test_5_the_cap_is_an_option_and_invalid_cases_are_sized_by_their_inputs(tmp_path):
    big = "conv2d-n1-c1x1-s2000-k3-f32"  # 32 MB of float64 output alone
    invalid = "conv2d-n1-c1x1-s2000-k3000-f32"  # kernel larger than the input
    out = tmp_path / "r.json"
    res = run_cases(
        tmp_path,
        [big, invalid, "conv1d-n1-c1x1-s5-k3-f32"],
        "numpy-ref",
        "--no-isolation",
        "-q",
        "--max-case-memory-mb",
        "64",
        "--json",
        str(out),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    recs = {r.case_id: r for r in RunResults.read(out).records}
    assert recs[big].verdict == TOO_LARGE and "64 MiB" in recs[big].detail
    assert recs[invalid].verdict == TOO_LARGE
    assert recs["conv1d-n1-c1x1-s5-k3-f32"].verdict == D.PASS
    bad = cli("run", "--max-case-memory-mb", "-1")
    assert bad.returncode == 2 and "--max-case-memory-mb" in bad.stderr


def test_5_replay_of_a_huge_case_is_too_large():
    res = cli("replay", HUGE, "--backends", "numpy-ref", "--no-isolation", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{HUGE} on numpy-ref: too-large" in res.stdout


# --- 6. a pool worker without isolation dies ----------------------------------------------------


# tests/test_parallel_run.py::test_a_worker_that_dies_without_isolation_is_a_clear_error runs it:
# three cases, so the dead worker still had cases to read (the ConnectionResetError).


# --- 7 and 9 (pytest). --conformance-worker-memory-mb -------------------------------------------


class FakeConfig:
    def __init__(self, **options: object) -> None:
        self.options = {
            "conformance_backends": None,
            "conformance_plugin": [PLUGIN],
            "isolate": True,
            "conformance_timeout": [],
            "conformance_dtypes": None,
            **options,
        }

    def getoption(self, name: str, default: object = None) -> object:
        return self.options.get(name, default)


def test_7_pytest_worker_memory_option_is_used_when_isolating(monkeypatch):
    from conformance.pytest_plugin import ConformanceSession

    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    s = ConformanceSession(FakeConfig(conformance_worker_memory_mb="700"))
    try:
        (backend,) = s.runner("planted-slow").backends
        assert isinstance(backend, IsolatedBackend) and backend.memory_mb == 700
        assert s.check(parse_id(CASE), "planted-slow").verdict == D.PASS
    finally:
        s.close()


@pytest.mark.parametrize(
    "option, value",
    [
        ("conformance_worker_memory_mb", "-5"),
        ("conformance_worker_memory_mb", "lots"),
        ("conformance_max_case_memory_mb", "-1"),
    ],
)
def test_7_9_pytest_memory_options_reject_nonsense(option, value):
    from conformance.pytest_plugin import ConformanceSession

    flag = "--" + option.replace("_", "-")
    with pytest.raises(pytest.UsageError, match=re.escape(flag) + f".*{value}"):
        ConformanceSession(FakeConfig(**{option: value}))


def test_9_pytest_worker_memory_too_small_to_start_is_a_usage_error(monkeypatch):
    from conformance.pytest_plugin import ConformanceSession

    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    s = ConformanceSession(
        FakeConfig(conformance_backends="torch-cpu", conformance_worker_memory_mb="50")
    )
    try:
        with pytest.raises(pytest.exit.Exception, match="too small to start the torch-cpu"):
            s.runner("torch-cpu")
    finally:
        s.close()


def test_5_pytest_max_case_memory_option():
    from conformance.pytest_plugin import ConformanceSession

    s = ConformanceSession(
        FakeConfig(isolate=False, conformance_max_case_memory_mb="1", conformance_plugin=[])
    )
    try:
        rec = s.run(parse_id("conv2d-n1-c1x1-s400-k3-f32"), "numpy-ref")
        assert rec.verdict == TOO_LARGE and "--conformance-max-case-memory-mb" in rec.detail
    finally:
        s.close()


# --- 8. a 1 MB exception message ----------------------------------------------------------------


@pytest.mark.parametrize("isolate", [False, True])
def test_8_a_huge_message_is_capped_and_stored_once(monkeypatch, isolate):
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    (inner,) = resolve(["planted-huge-message"], plugins=[AUDIT])
    backend = IsolatedBackend(inner, plugins=(AUDIT,), timeout=60) if isolate else inner
    try:
        (rec,) = Runner([backend]).run_case(parse_id(CASE))
    finally:
        if isolate:
            backend.close()
    assert rec.verdict == D.RAISED
    size = len(json.dumps(rec.to_dict()))
    assert size < 10_000, size
    message = rec.error_message or ""
    assert message.startswith("HEAD of the message") and message.endswith("TAIL of the message")
    assert re.search(r"\[\.\.\. [\d,]+ characters cut \.\.\.\]", message), message[:300]
    assert len(rec.detail) < 1000


def test_8_the_report_shows_the_capped_text():
    from conformance.report import render_report

    huge = "HEAD " + "y" * 2**20 + " TAIL"
    rec = Record(CASE, "planted-x", D.RAISED, detail="RuntimeError: " + huge, error_message=huge)
    html = render_report(RunResults({}, [], [rec]))
    assert "y" * 5000 not in html and "characters cut" in html
    assert len(html) < 500_000


# --- 9. --worker-memory-mb ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "lots"])
def test_9_nonsense_worker_memory_is_an_argument_error(value):
    res = cli("run", "--worker-memory-mb", value)
    assert res.returncode == 2
    assert "--worker-memory-mb" in res.stderr and value in res.stderr


def test_9_worker_memory_too_small_to_start_is_a_clear_error(tmp_path):
    res = run_cases(
        tmp_path,
        ["conv1d-n1-c1x1-s5-k3-f32", "conv1d-n1-c1x1-s6-k3-f32"],
        "torch-cpu",
        "--worker-memory-mb",
        "50",
        "-q",
        "--stream",
        str(tmp_path / "s.jsonl"),
        timeout=180,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert re.search(
        r"--worker-memory-mb 50 is too small to start the torch-cpu worker "
        r"\(needs about \d+ MiB",
        res.stderr,
    ), res.stderr
    assert "crashed" not in res.stdout and "Traceback" not in res.stderr
