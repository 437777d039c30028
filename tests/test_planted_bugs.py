"""The harness catches planted conv_transpose bugs, shrinks them and prints a working replay."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.generate import draw_cases
from conformance.runner import Runner
from conformance.strategies import draw_valid_case
from tests.planted import OutputPaddingOnWrongSide, UnflippedWeight

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.planted:BACKENDS"


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("planted", [OutputPaddingOnWrongSide, UnflippedWeight])
@pytest.mark.parametrize("op", ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"])
def test_runner_catches_planted_bug(planted, op):
    cases = draw_cases(lambda pick: draw_valid_case(pick, op), 40, seed=1)
    records = [r for c in cases for r in Runner([planted()]).run_case(c)]
    caught = [r for r in records if r.verdict in (D.VALUE_MISMATCH, D.SHAPE_MISMATCH)]
    assert caught, f"{planted.name} passed all {len(cases)} {op} cases"
    # Every case the bug cannot affect passes; every case it affects fails on its values (on
    # where NaN and infinities are, with special-value inputs), or on its shape where the planted
    # bug cannot produce the right one.
    for r in records:
        assert r.verdict in (
            D.PASS,
            D.VALUE_MISMATCH,
            D.NAN_INF_MISMATCH,
            D.SHAPE_MISMATCH,
        ), r.summary()


def test_output_padding_bug_only_hits_cases_with_output_padding():
    cases = draw_cases(lambda pick: draw_valid_case(pick, "conv_transpose2d"), 60, seed=2)
    for c in cases:
        (r,) = Runner([OutputPaddingOnWrongSide()]).run_case(c)
        if not any(c.output_padding):
            assert r.verdict == D.PASS, r.summary()


def test_pytest_run_fails_with_summary_and_replay_that_reproduces():
    res = _run(
        [
            "-m",
            "pytest",
            "conformance/test_conformance.py",
            "-k",
            "test_conv_transpose2d and not invalid",
            "--conformance-backends",
            "planted-unflipped",
            "--conformance-plugin",
            PLUGIN,
            "--hypothesis-profile",
            "ci",
            "-p",
            "no:cacheprovider",
            "-q",
        ]
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "value-mismatch" in out
    assert "worst: batch" in out
    replay = re.search(
        r"replay: (python -m conformance replay (\S+) --backends \S+ --plugin \S+)", out
    )
    assert replay, out
    # Hypothesis shrank it: the failing case is small.
    case_id = replay.group(2)
    assert case_id.startswith("conv_transpose2d-n1-c1x1-"), case_id
    again = _run(replay.group(1).split()[1:])
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"{case_id} on planted-unflipped: value-mismatch" in again.stdout


def test_cli_run_exits_nonzero_and_lists_the_failure(tmp_path):
    results = tmp_path / "results.json"
    res = _run(
        [
            "-m",
            "conformance",
            "run",
            "--ops",
            "conv_transpose1d",
            "--dirs",
            "fwd",
            "--max-examples",
            "20",
            "--no-corpus",
            "--backends",
            "numpy-ref,planted-op-low",
            "--plugin",
            PLUGIN,
            "--json",
            str(results),
            "-q",
        ]
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "on planted-op-low: value-mismatch" in res.stdout
    assert "--backends planted-op-low --plugin tests.planted:BACKENDS" in res.stdout
    assert results.exists()
