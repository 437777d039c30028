"""A run that survives its backends: crashes, hangs and runaway allocations become verdicts, the
records stream to disk, a killed run resumes, and malformed files give errors naming the field.

Everything runs for real: the CLI in subprocesses, backends in worker processes, planted-bug
backends from ``tests/planted.py``, signals sent to real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.case import parse_id
from conformance.corpus import parse_corpus
from conformance.results import RunResults, backend_entry
from conformance.runner import Record, Runner
from conformance.stream import SCHEMA, StreamWriter, is_stream, read_results, read_stream
from tests.planted import Crashes, Hangs, RunsOutOfMemory
from tests.test_report import parse

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.planted:BACKENDS"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_cases(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(f'[[case]]\nid = "{i}"\nnote = "test"\n\n' for i in ids))
    return path


def run_cases(tmp_path: Path, ids: list[str], backends: str, *args: str, timeout: int = 300):
    """``run`` on exactly the cases ``ids`` (no corpus, nothing generated) on ``backends``, with
    the planted backends loaded; ``args`` are more options."""
    cases = write_cases(tmp_path / "cases.toml", ids)
    return cli(
        "run",
        "--cases",
        str(cases),
        "--no-corpus",
        "--max-examples",
        "0",
        "--plugin",
        PLUGIN,
        "--backends",
        backends,
        *args,
        timeout=timeout,
    )


def verdicts(records) -> dict[tuple[str, str], str]:
    return {(r.case_id, r.backend): r.verdict for r in records}


# --- (a) a run with a segfaulting, a hanging and a memory-hungry backend finishes --------------

ROBUST_CASES = [
    "conv_transpose1d-n1-c1x1-s4-k2-st2-f32",
    "conv_transpose1d-n1-c1x1-s4-k2-st3-f32",  # stride 3: planted-crash segfaults
    "conv_transpose1d-n2-c1x1-s4-k2-f32",  # batch 2: planted-hang hangs
    "conv_transpose1d-n1-c2x2-s4-k2-d2-f32",  # dilation 2: planted-oom allocates without end
    "conv_transpose2d-n1-c2x2-s3-k2-st2-p1-op1-f16",
    "conv_transpose2d-n1-c2x4-s3x4-k3x2-st3x1-p1-g2-bias-f32",  # planted-crash again
    "conv_transpose3d-n1-c1x2-s2-k2-st2-bf16",
    "conv1d-n1-c1x1-s5-k3-f32",  # not conv_transpose: unsupported by the planted backends
]


def expected_verdict(case_id: str, backend: str) -> str:
    case = parse_id(case_id)
    if not case.transposed:
        return D.UNSUPPORTED
    if backend == Crashes.name and case.stride[0] == 3:
        return D.CRASHED
    if backend == Hangs.name and case.batch == 2:
        return D.TIMEOUT
    if backend == RunsOutOfMemory.name and case.dilation[0] == 2:
        return D.CRASHED
    return D.PASS


def test_run_survives_segfault_hang_and_out_of_memory(tmp_path):
    out = tmp_path / "results.json"
    start = time.perf_counter()
    res = run_cases(
        tmp_path,
        ROBUST_CASES,
        "planted-crash,planted-hang,planted-oom",
        "--timeout",
        "6",
        "--worker-memory-mb",
        "1024",
        "--json",
        str(out),
        "--report",
        str(tmp_path / "report.html"),
        "-q",
    )
    elapsed = time.perf_counter() - start
    assert res.returncode == 1, res.stdout + res.stderr  # failures, but the run finished
    stream = read_stream(tmp_path / "results.jsonl")  # beside --json
    assert stream.complete and stream.truncated_line is None
    results = RunResults.read(out)
    got = verdicts(results.records)
    assert got == verdicts(stream.records)
    backends = ["planted-crash", "planted-hang", "planted-oom"]
    assert got == {(c, b): expected_verdict(c, b) for c in ROBUST_CASES for b in backends}
    by_key = {(r.case_id, r.backend): r for r in results.records}
    crash = by_key[(ROBUST_CASES[1], "planted-crash")]
    assert "SIGSEGV" in crash.detail and crash.error_type == "WorkerCrashed"
    # What it printed to stdout before dying is in the report, not in the run's own output.
    assert Crashes.last_words.decode().strip() in crash.detail
    assert not any(line.startswith("planted-crash: ") for line in res.stdout.splitlines())
    hang = by_key[(ROBUST_CASES[2], "planted-hang")]
    assert "within 6 s" in hang.detail
    oom = by_key[(ROBUST_CASES[3], "planted-oom")]
    assert "out of memory" in oom.detail and "limit 1024 MiB" in oom.detail, oom.detail
    assert "MemoryError" in oom.detail and oom.error_type == "WorkerOutOfMemory"
    assert results.settings["worker_memory_mb"] == 1024
    html = (tmp_path / "report.html").read_text()
    assert "killed by SIGSEGV" in html and "out of memory (limit 1024 MiB)" in html
    assert elapsed < 60


def test_worker_memory_limit_and_restart(monkeypatch):
    """The limit is per worker: after running out, a fresh worker takes the next case."""
    from conformance.isolation import IsolatedBackend

    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    (inner,) = resolve(["planted-oom"], plugins=[PLUGIN])
    backend = IsolatedBackend(inner, plugins=(PLUGIN,), timeout=60, memory_mb=512)
    runner = Runner([backend])
    try:
        first = runner.run_case(parse_id("conv_transpose1d-n1-c1x1-s4-k2-d2-f32"))[0]
        worker = backend._proc
        second = runner.run_case(parse_id("conv_transpose1d-n1-c1x1-s4-k2-f32"))[0]
        assert backend._proc is not worker
    finally:
        backend.close()
    assert first.verdict == D.CRASHED and "limit 512 MiB" in first.detail
    assert second.verdict == D.PASS


def test_memory_error_in_process_is_crashed_not_raised():
    class Greedy(Crashes):
        name = "planted-greedy"

        def run(self, case, inputs):
            raise MemoryError("cannot allocate 1 TiB")

    (rec,) = Runner([Greedy()]).run_case(parse_id("conv_transpose1d-n1-c1x1-s4-k2-f32"))
    assert rec.verdict == D.CRASHED and "out of memory" in rec.detail


# --- (b) SIGKILL a run midway, resume it, get what a clean run gets -----------------------------

RESUME_ARGS = [
    "--ops",
    "conv_transpose1d",
    "--max-examples",
    "30",
    "--no-corpus",
    "--plugin",
    PLUGIN,
    "--backends",
    "numpy-ref,planted-slow",
    "-q",
]


def _record_lines(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [obj for obj in lines if obj["kind"] == "record"]


def test_killed_run_resumes_to_what_a_clean_run_gives(tmp_path):
    clean = tmp_path / "clean.jsonl"
    res = cli("run", *RESUME_ARGS, "--stream", str(clean))
    assert res.returncode == 0, res.stdout + res.stderr
    want = verdicts(read_stream(clean).records)
    assert len(want) > 40

    stream = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance", "run", *RESUME_ARGS, "--stream", str(stream)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    try:
        deadline = time.monotonic() + 120
        while not (stream.exists() and len(_record_lines(stream)) >= 10):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed = read_stream(stream)
    assert not killed.complete and 10 <= len(killed.records) < len(want)
    # As if the kill had come in the middle of a write: a truncated last line.
    with stream.open("a") as fh:
        fh.write('{"kind": "record", "case_id": "conv_transpose1d-n1')

    # The report reads the unfinished stream, and says so.
    report = cli("report", str(stream), "-o", str(tmp_path / "partial.html"))
    assert report.returncode == 0, report.stderr
    assert "truncated last line ignored" in report.stderr
    assert "did not finish" in report.stderr and "--resume" in report.stderr

    # Settings must match the header.
    bad = cli("run", "--resume", str(stream), "--seed", "7", "--max-examples", "30")
    assert bad.returncode == 2
    assert "--seed: 7 here, 20261123 in the stream" in bad.stderr, bad.stderr
    assert "--max-examples" not in bad.stderr  # the same as the stream's

    again = cli("run", "--resume", str(stream), "-q")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "truncated last line ignored" in again.stderr
    done = len(killed.records)
    assert f"{done} record(s) already there" in again.stderr

    lines = _record_lines(stream)
    keys = [(r["case_id"], r["backend"]) for r in lines]
    assert len(keys) == len(set(keys))  # nothing run twice
    resumed = read_stream(stream)
    assert resumed.complete and len(resumed.resumes) == 1
    assert verdicts(resumed.records) == want
    assert resumed.results.settings["resumed"] == 1


# --- (c) malformed files: errors name the file, the line and the field --------------------------


def _stream_text(tmp_path: Path) -> tuple[Path, list[str]]:
    backends = resolve(["numpy-ref"])
    runner = Runner(backends)
    path = tmp_path / "s.jsonl"
    with StreamWriter.create(
        path, settings={"seed": 1, "cases": 2}, backends=[backend_entry(b) for b in backends]
    ) as w:
        for cid in ["conv1d-n1-c1x1-s5-k3-f32", "conv1d-n1-c1x1-s5-k3-st0-f32"]:
            w.write_records(runner.run_case(parse_id(cid)))
        w.end(0.5)
    return path, path.read_text().splitlines(keepends=True)


def test_stream_round_trip(tmp_path):
    path, lines = _stream_text(tmp_path)
    assert len(lines) == 4 and all(line.endswith("\n") for line in lines)
    assert json.loads(lines[0])["schema"] == SCHEMA
    assert is_stream(path)
    contents = read_stream(path)
    assert contents.complete and contents.warnings == []
    assert [r.verdict for r in contents.records] == [D.PASS, D.BOTH_REJECTED]
    results = contents.results
    assert results.settings["seconds"] == 0.5 and results.settings["seed"] == 1
    # The results JSON written from it reads back the same.
    out = tmp_path / "r.json"
    results.write(out)
    assert not is_stream(out)
    assert verdicts(RunResults.read(out).records) == verdicts(contents.records)


def _mutate(lines: list[str], index: int, fn) -> list[str]:
    obj = json.loads(lines[index])
    fn(obj)
    return [*lines[:index], json.dumps(obj) + "\n", *lines[index + 1 :]]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: [ls[0], '{"kind": "record", "case_id": \n', *ls[1:]], ":2: not valid JSON"),
        (lambda ls: [ls[0], "\n", *ls[1:]], ":2: empty line"),
        (lambda ls: [ls[0], "[1, 2]\n", *ls[1:]], ":2: a line must be a JSON object"),
        (
            lambda ls: _mutate(ls, 1, lambda o: o.pop("verdict")),
            ":2: record is missing field 'verdict'",
        ),
        (
            lambda ls: _mutate(ls, 2, lambda o: o.update(verdict="exploded")),
            ":3: record.verdict is not a known verdict",
        ),
        (
            lambda ls: _mutate(ls, 1, lambda o: o.update(seconds="fast")),
            ":2: record.seconds has the wrong type (str)",
        ),
        (
            lambda ls: _mutate(ls, 1, lambda o: o.update(metrics={"bogus": 1})),
            ":2: record.metrics is malformed",
        ),
        (lambda ls: _mutate(ls, 1, lambda o: o.update(kind="note")), ":2: field 'kind'"),
        (lambda ls: _mutate(ls, 3, lambda o: o.pop("seconds")), ":4: end is missing field"),
        (lambda ls: [*ls[:2], ls[1], *ls[2:]], ":3: duplicate record for case_id"),
        (lambda ls: _mutate(ls, 0, lambda o: o.update(schema="x/1")), ":1: the first line"),
        (lambda ls: ls[1:], ":1: the first line must be a header"),
        (
            lambda ls: _mutate(ls, 0, lambda o: o.pop("settings")),
            ":1: header is missing field 'settings'",
        ),
        (
            lambda ls: _mutate(ls, 0, lambda o: o["backends"][0].pop("available")),
            ":1: backends[0] is missing field 'available'",
        ),
        (lambda ls: [ls[0][:40]], ":1: truncated header line"),
        (lambda ls: [], "empty results stream"),
    ],
)
def test_malformed_stream_names_file_line_and_field(tmp_path, edit, message):
    path, lines = _stream_text(tmp_path)
    path.write_text("".join(edit(lines)))
    with pytest.raises(ValueError, match=r"s\.jsonl") as err:
        read_stream(path)
    assert message in str(err.value)


def test_truncated_last_line_is_tolerated_and_reported(tmp_path):
    path, lines = _stream_text(tmp_path)
    path.write_text("".join(lines[:3]) + lines[3][:15])  # killed while writing the end line
    contents = read_stream(path)
    assert contents.truncated_line == 4 and not contents.complete
    assert len(contents.records) == 2
    assert any("s.jsonl:4: truncated last line ignored" in w for w in contents.warnings)
    assert contents.results.settings["complete"] is False
    # A last line without its newline that is whole is kept.
    path.write_text("".join(lines)[:-1])
    contents = read_stream(path)
    assert contents.complete and contents.truncated_line is None
    # Resuming cuts the partial line and appends after a newline.
    path.write_text("".join(lines[:3]) + lines[3][:15])
    contents = read_stream(path)
    with StreamWriter.resume(contents, "test") as w:
        w.end(0.1)
    again = read_stream(path)
    assert again.complete and len(again.resumes) == 1 and len(again.records) == 2


def test_cli_errors_for_malformed_stream_and_case_files(tmp_path):
    path, lines = _stream_text(tmp_path)
    path.write_text("".join(_mutate(lines, 2, lambda o: o.pop("case_id"))))
    res = cli("report", str(path), "-o", str(tmp_path / "r.html"))
    assert res.returncode == 2
    assert f"{path}:3: record is missing field 'case_id'" in res.stderr, res.stderr
    res = cli("run", "--resume", str(path))
    assert res.returncode == 2 and f"{path}:3:" in res.stderr
    bad = tmp_path / "bad_cases.toml"
    bad.write_text('[[case]]\nid = "conv1d-n1-c1x1-s5-k3-f32"\n\n[[case]]\nnote = "no id"\n')
    res = cli("run", "--cases", str(bad), "--no-corpus", "--max-examples", "0")
    assert res.returncode == 2
    assert "bad_cases.toml" in res.stderr and "'id' is required" in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[case]]\nid = "conv9d-n1"\n', "'id': "),
        ("[[case]]\nid = 3\n", "'id'"),
        ('[[case]]\nid = "conv1d-n1-c1x1-s5-k3-f32"\ncolour = "red"\n', "colour"),
        ("[[case]\n", "not valid TOML"),
    ],
)
def test_malformed_case_file_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="mine.toml") as err:
        parse_corpus(path)
    assert message in str(err.value)


SCRIPT = "<script>alert(1)</script>"


def test_markup_from_a_stream_renders_escaped_in_the_report(tmp_path):
    """A crash's stderr, a known-failure reason, a backend's description and the command line
    come from the stream into the report as text (tests/test_report.py covers ids and messages
    from a results object)."""
    path = tmp_path / "s.jsonl"
    backend = {
        "name": "planted-crash",
        "description": f"desc {SCRIPT}",
        "available": True,
        "detail": f"detail {SCRIPT}",
        "versions": {"lib": SCRIPT},
    }
    crashed = Record(
        case_id="conv_transpose1d-n1-c1x1-s4-k2-st3-f32",
        backend="planted-crash",
        verdict=D.CRASHED,
        detail="planted-crash worker killed by SIGSEGV (signal 11); "
        f"last output (stdout + stderr): {SCRIPT}",
        error_type="WorkerCrashed",
        error_message=SCRIPT,
    )
    known = Record(
        case_id="conv_transpose1d-n1-c1x1-s4-k2-st3-f16",
        backend="planted-crash",
        verdict=D.CRASHED,
        detail=SCRIPT,
        known_failure=f"reason {SCRIPT}",
    )
    with StreamWriter.create(
        path, settings={"command": f"run {SCRIPT}", "cases": 2}, backends=[backend]
    ) as w:
        w.write_records([crashed, known])
    res = cli("report", str(path), "-o", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert SCRIPT not in html and "&lt;script&gt;" in html
    doc = parse(html)
    assert doc.tags.count("script") == 1  # type: ignore[attr-defined]  # the report's own
    text = doc.text()
    assert f"last output (stdout + stderr): {SCRIPT}" in text and f"reason {SCRIPT}" in text
    assert f"run {SCRIPT}" in text


def test_read_results_takes_either_format(tmp_path):
    path, _ = _stream_text(tmp_path)
    results, warnings = read_results(path)
    assert warnings == [] and len(results.records) == 2
    copy = tmp_path / "stream-without-suffix.txt"
    copy.write_bytes(path.read_bytes())
    assert is_stream(copy) and len(RunResults.read(copy).records) == 2
