"""Shrinking failures and the regression corpus: save, reload, no duplicates, clear errors."""

from __future__ import annotations

import pytest

from conformance import diff as D
from conformance.case import parse_id
from conformance.regressions import load_regressions, parse_file, save_regression
from conformance.runner import Runner
from conformance.shrink import shrink
from tests.planted import OutputPaddingOnWrongSide, UnflippedWeight


def _fails(backend, verdict):
    runner = Runner([backend])
    return lambda case: runner.run_case(case)[0].verdict == verdict


def test_shrink_finds_a_small_case_that_fails_the_same_way():
    big = parse_id("conv_transpose2d-n2-c6x9-s5x4-k3x4-st2x3-p1-d2x1-op1x2-g3-bias-bf16-seed17")
    fails = _fails(UnflippedWeight(), D.VALUE_MISMATCH)
    assert fails(big)
    small = shrink(big, fails)
    assert fails(small)
    assert (small.batch, small.in_channels, small.out_channels, small.groups) == (1, 1, 1, 1)
    assert not small.bias and small.dtype == "float32" and small.seed == 0
    assert max(small.kernel) == 2  # a kernel needs two taps to show a missing flip
    assert len(small.id) < len(big.id)


def test_shrink_keeps_what_the_bug_needs():
    big = parse_id("conv_transpose1d-n2-c4x4-s6-k3-st3-p1-op2-g2-f16-seed3")
    fails = _fails(OutputPaddingOnWrongSide(), D.VALUE_MISMATCH)
    small = shrink(big, fails)
    assert fails(small)
    assert small.output_padding[0] >= 1  # without output padding the plant is harmless


def test_save_then_load_and_no_duplicates(tmp_path):
    case = parse_id("conv_transpose1d-n1-c1x2-s3-k3-st2-f32")
    (rec,) = Runner([UnflippedWeight()]).run_case(case)
    assert rec.failed
    assert save_regression(rec, "planted 1.0", tmp_path, today="2026-11-23")
    assert not save_regression(rec, "planted 1.0", tmp_path)  # already there
    (reg,) = load_regressions(tmp_path)
    assert (reg.case, reg.backend, reg.verdict, reg.date) == (
        case,
        "planted-unflipped",
        D.VALUE_MISMATCH,
        "2026-11-23",
    )
    assert "over tolerance" in reg.detail


def test_only_failures_are_saved(tmp_path):
    (rec,) = Runner([UnflippedWeight()]).run_case(parse_id("conv_transpose1d-n1-c1x2-s3-k1-f32"))
    assert rec.verdict == D.PASS
    with pytest.raises(ValueError, match="only failures"):
        save_regression(rec, "", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[regression]]\nverdict = 'raised'\n", "missing field(s) id"),
        ("[[regression]]\nid = 'conv1d-n1-c1x1-s3-k1-f32'\nverdict = 'meh'\n", "not a verdict"),
        ("[[regression]]\nid = 'conv1d-n1'\nverdict = 'raised'\n", "'id': case id"),
        ("[[regression]]\nid = 1\nverdict = 'raised'\n", "'id' must be a string"),
    ],
)
def test_malformed_regression_files(tmp_path, text, message):
    path = tmp_path / "mlx-cpu.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="mlx-cpu.toml") as err:
        parse_file(path)
    assert message in str(err.value)


def test_pytest_saves_the_shrunk_failure_and_replays_it_first(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "CONVCHECK_REGRESSIONS_DIR": str(tmp_path)}
    args = [
        sys.executable,
        "-m",
        "pytest",
        "conformance/test_conformance.py",
        "--conformance-backends",
        "planted-op-low",
        "--conformance-plugin",
        "tests.planted:BACKENDS",
        "--hypothesis-profile",
        "ci",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    first = subprocess.run(
        [*args, "-k", "test_conv_transpose1d and not invalid", "--save-failures"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 1, first.stdout
    (reg,) = load_regressions(tmp_path)
    assert reg.backend == "planted-op-low" and reg.verdict == D.VALUE_MISMATCH
    assert reg.case.batch == 1 and reg.case.in_channels == 1 and any(reg.case.output_padding)
    assert f"saved regression: {reg.case.id}" in first.stdout
    second = subprocess.run(
        [*args, "-x"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 1
    assert (
        f"FAILED conformance/test_conformance.py::test_regression[{reg.case.id}-planted-op-low]"
        in (second.stdout)
    )


def test_cli_saves_shrunk_failures_replays_them_first_and_reports_fixes(tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    regs = tmp_path / "regressions"
    env = {**os.environ, "PYTHONPATH": str(root), "CONVCHECK_REGRESSIONS_DIR": str(regs)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "conformance",
                "run",
                "--ops",
                "conv_transpose1d",
                "-q",
                "--plugin",
                "tests.planted:BACKENDS",
                "--no-isolation",
                *args,
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = run(
        "--max-examples",
        "15",
        "--backends",
        "numpy-ref,planted-op-low",
        "--save-failures",
        "--stream",
        str(tmp_path / "a.jsonl"),
    )
    assert first.returncode == 1
    saved = load_regressions(regs)
    assert saved and {r.backend for r in saved} == {"planted-op-low"}
    # Shrunk (the zero-channel edge case stays at 0 channels).
    assert all(r.case.batch <= 1 and r.case.in_channels <= 1 for r in saved)
    assert "saved regression:" in first.stdout

    second = run(
        "--max-examples",
        "2",
        "--invalid-examples",
        "0",
        "--backends",
        "planted-op-low",
        "--stream",
        str(tmp_path / "b.jsonl"),
    )
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    replayed = [x["case_id"] for x in lines if x["kind"] == "record"][: len(saved)]
    assert replayed == [r.case.id for r in saved]  # regressions run first
    assert second.returncode == 1

    # The same cases on a backend that gets them right: reported as fixed, file kept.
    shutil.copy(regs / "planted-op-low.toml", regs / "numpy-ref.toml")
    third = run(
        "--max-examples",
        "2",
        "--invalid-examples",
        "0",
        "--backends",
        "numpy-ref",
        "--stream",
        str(tmp_path / "c.jsonl"),
    )
    assert third.returncode == 0
    fixed = [x for x in third.stdout.splitlines() if x.startswith("FIXED")]
    assert len(fixed) == len(saved)
    assert (regs / "numpy-ref.toml").exists()
