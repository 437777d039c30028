"""Crash and hang isolation: a dying or hanging backend costs one case, the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.case import parse_id
from conformance.isolation import IsolatedBackend
from conformance.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.planted:BACKENDS"


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    # Spawned workers import the plugin by module name.
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _isolated(name: str, timeout: float = 60.0) -> IsolatedBackend:
    (backend,) = resolve([name], plugins=[PLUGIN])
    return IsolatedBackend(backend, plugins=(PLUGIN,), timeout=timeout)


def test_segfault_becomes_crashed_and_worker_restarts():
    backend = _isolated("planted-crash")
    runner = Runner([backend])
    try:
        ids = [
            "conv_transpose1d-n1-c1x1-s4-k2-st2-f32",
            "conv_transpose1d-n1-c1x1-s4-k2-st3-f32",  # stride 3: segfaults
            "conv_transpose1d-n1-c2x1-s4-k2-st2-f32",
        ]
        verdicts = [runner.run_case(parse_id(i))[0] for i in ids]
    finally:
        backend.close()
    assert [r.verdict for r in verdicts] == [D.PASS, D.CRASHED, D.PASS]
    assert "SIGSEGV" in verdicts[1].detail
    assert verdicts[1].failed


def test_device_fault_replaces_the_worker():
    """After a GPU fault every later call in the same process fails with the sticky error; the
    worker is replaced, so only the faulting case is charged with it."""
    backend = _isolated("planted-sticky-fault")
    runner = Runner([backend])
    try:
        ids = [
            "conv_transpose1d-n1-c1x1-s4-k2-st2-f32",
            "conv_transpose1d-n1-c1x1-s4-k2-st3-f32",  # stride 3: the fault
            "conv_transpose1d-n1-c2x1-s4-k2-st2-f32",
            "conv_transpose1d-n1-c1x2-s5-k3-st2-f32",
        ]
        verdicts = [runner.run_case(parse_id(i))[0] for i in ids]
    finally:
        backend.close()
    assert [r.verdict for r in verdicts] == [D.PASS, D.CRASHED, D.PASS, D.PASS]
    assert "device fault" in verdicts[1].detail
    assert "illegal instruction" in verdicts[1].detail


def test_hang_becomes_timeout():
    backend = _isolated("planted-hang", timeout=3.0)
    runner = Runner([backend])
    try:
        hung = runner.run_case(parse_id("conv_transpose1d-n2-c1x1-s4-k2-f32"))[0]
        after = runner.run_case(parse_id("conv_transpose1d-n1-c1x1-s4-k2-f32"))[0]
    finally:
        backend.close()
    assert hung.verdict == D.TIMEOUT and "3 s" in hung.detail
    assert after.verdict == D.PASS


def test_backend_exceptions_keep_their_type_name():
    backend = _isolated("numpy-ref")
    try:
        (rec,) = Runner([backend]).run_case(parse_id("conv2d-n1-c1x1-s5-k3-st0-f32"))
    finally:
        backend.close()
    assert rec.verdict == D.BOTH_REJECTED
    assert rec.error_type == "ValueError"
    assert "stride[0] must be >= 1" in rec.error_message
