"""The serial run's speed-ups keep its records: a case handed to every isolated worker at once and
the next one handed out while a case is judged (``Runner.run_cases``), spare workers after a
crash (``IsolatedBackend``), and stream lines encoded without a second walk of each record."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.case import parse_id
from conformance.inputs import make_inputs
from conformance.isolation import IsolatedBackend
from conformance.results import json_safe
from conformance.runner import Runner
from conformance.stream import record_line

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.planted:BACKENDS"

PASSES = "conv_transpose1d-n1-c1x1-s4-k2-st2-f32"
CRASHES = "conv_transpose1d-n1-c1x1-s4-k2-st3-f32"  # planted-crash: stride 3 segfaults
INVALID = "conv2d-n1-c1x1-s5-k3-st0-f32"  # stride 0: both reject it
IDS = [
    PASSES,
    CRASHES,
    "conv_transpose1d-n1-c2x1-s4-k2-st2-f32",
    INVALID,
    CRASHES.replace("s4", "s5"),
    "conv_transpose1d-n1-c1x2-s5-k3-st2-bias-f32",
]


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    # Workers import the plugin by module name.
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _isolated(name: str) -> IsolatedBackend:
    (backend,) = resolve([name], plugins=[PLUGIN])
    return IsolatedBackend(backend, plugins=(PLUGIN,), timeout=60)


def _runner() -> Runner:
    """Two isolated backends (one that crashes) and one in this process."""
    (in_process,) = resolve(["planted-unflipped"], plugins=[PLUGIN])
    return Runner([_isolated("numpy-ref"), _isolated("planted-crash"), in_process])


def _close(runner: Runner) -> None:
    for b in runner.backends:
        if isinstance(b, IsolatedBackend):
            b.close()


def _essence(records) -> list[tuple]:
    return [(r.case_id, r.backend, r.verdict, r.detail, r.error_type) for r in records]


def test_pipelined_cases_give_the_records_of_one_case_at_a_time():
    names = ["numpy-ref", "planted-crash", "planted-unflipped"]
    cases = [parse_id(i) for i in IDS]
    pipelined, one_by_one = _runner(), _runner()
    try:
        got = [r for _, recs, _ in pipelined.run_cases([(c, names) for c in cases]) for r in recs]
        want = [r for c in cases for r in one_by_one.run_case(c)]
    finally:
        _close(pipelined)
        _close(one_by_one)
    assert _essence(got) == _essence(want)
    verdicts = {(r.case_id, r.backend): r.verdict for r in got}
    assert verdicts[(CRASHES, "planted-crash")] == D.CRASHED
    assert verdicts[(PASSES, "planted-crash")] == D.PASS
    assert verdicts[(INVALID, "numpy-ref")] == D.BOTH_REJECTED
    assert pipelined.times.counts["inputs"] == len(cases)


def test_a_crash_leaves_a_started_spare_that_takes_over():
    backend = _isolated("planted-crash")
    runner = Runner([backend])
    try:
        assert runner.run_case(parse_id(PASSES))[0].verdict == D.PASS
        assert backend._spare is None  # no spare until a worker was lost
        assert runner.run_case(parse_id(CRASHES))[0].verdict == D.CRASHED
        assert backend._spare is not None
        spare = backend._spare.proc.pid
        assert runner.run_case(parse_id(PASSES))[0].verdict == D.PASS
        assert backend._proc is not None and backend._proc.pid == spare
        assert backend._spare is not None and backend._spare.proc.pid != spare
        crashed = runner.run_case(parse_id(CRASHES))[0]
        assert crashed.verdict == D.CRASHED and "SIGSEGV" in crashed.detail
        assert runner.run_case(parse_id(IDS[2]))[0].verdict == D.PASS
    finally:
        backend.close()
    assert backend._spare is None and backend._proc is None


def test_a_case_handed_out_and_never_collected_costs_its_worker_only():
    backend = _isolated("numpy-ref")
    case = parse_id(PASSES)
    try:
        first = backend.submit(case, make_inputs(case))
        again = backend.submit(case, make_inputs(case))  # the first is given up
        with pytest.raises(RuntimeError, match="no longer pending"):
            backend.collect(first)
        assert backend.collect(again).shape == (1, 8, 1)
        backend.submit(case, make_inputs(case))
        backend.abandon()
        assert backend._proc is None
        assert backend.run(case, make_inputs(case)).shape == (1, 8, 1)
    finally:
        backend.close()


def test_a_pipelined_run_stopped_early_gives_up_the_case_handed_out_ahead():
    backend = _isolated("numpy-ref")
    runner = Runner([backend])
    try:
        cases = runner.run_cases([(parse_id(i), ["numpy-ref"]) for i in (PASSES, IDS[2])])
        case, records, _ = next(cases)
        assert case.id == PASSES and records[0].verdict == D.PASS
        assert backend._pending is not None  # the next case is out already
        cases.close()
        assert backend._pending is None
        assert runner.run_case(parse_id(IDS[2]))[0].verdict == D.PASS
    finally:
        backend.close()


def test_a_stream_line_is_the_text_of_the_json_safe_record():
    (rec,) = Runner(resolve(["planted-unflipped"], plugins=[PLUGIN])).run_case(parse_id(IDS[5]))
    assert rec.metrics is not None
    odd = replace(rec, metrics=replace(rec.metrics, max_rel_error=math.nan), seconds=math.inf)
    for r in (rec, odd):
        want = json.dumps(json_safe({"kind": "record", **r.to_dict()}), allow_nan=False)
        assert record_line(r) == want + "\n"
    assert '"max_rel_error": "nan"' in record_line(odd)
