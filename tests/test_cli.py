"""The command line, end to end, in subprocesses as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conformance.corpus import load_corpus

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_backends_lists_availability_with_reasons():
    res = cli("backends")
    assert res.returncode == 0
    lines = {line.split()[0]: line for line in res.stdout.splitlines()}
    assert "available" in lines["numpy-ref"] and "not available" not in lines["numpy-ref"]
    assert set(lines) >= {"numpy-ref", "mlx-cpu", "mlx-gpu", "torch-cpu", "torch-cuda", "torch-mps"}
    for line in lines.values():
        if "not available" in line:
            assert len(line.split("not available", 1)[1].strip()) > 10, line  # says why


def test_run_writes_results_and_counts(tmp_path):
    out = tmp_path / "r.json"
    res = cli(
        "run",
        "--ops",
        "conv1d",
        "--max-examples",
        "6",
        "--backends",
        "numpy-ref",
        "--json",
        str(out),
        "--no-isolation",
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    # The default --dtypes (float32, float16, bfloat16) runs the frozen cases of those.
    frozen = [f for f in load_corpus() if f.case.op == "conv1d" and f.case.dtype != "float64"]
    # 6 valid + 6 // 4 invalid generated cases (distinct ids) and the frozen conv1d cases.
    assert data["settings"]["cases"] == len(data["records"])
    assert 2 + len(frozen) <= len(data["records"]) <= 6 + 1 + len(frozen)
    assert {r["case_id"] for r in data["records"]} >= {f.case.id for f in frozen}
    assert {r["backend"] for r in data["records"]} == {"numpy-ref"}
    assert {r["verdict"] for r in data["records"]} <= {"pass", "both-rejected"}
    assert "conv1d" in res.stdout and "cases" in res.stdout


def test_replay_of_a_known_upstream_failure():
    res = cli(
        "replay", "conv_transpose1d-n1-c1x1-s5-k2-st2-p2-f32", "--backends", "numpy-ref,mlx-cpu"
    )
    assert res.returncode == 0, res.stdout + res.stderr  # known: reported, not a new failure
    assert "on mlx-cpu: shape-mismatch" in res.stdout
    assert "known failure:" in res.stdout
    assert "on numpy-ref: pass" in res.stdout


def test_bad_arguments_exit_2_with_a_message():
    res = cli("run", "--ops", "conv4d")
    assert res.returncode == 2 and "unknown op conv4d" in res.stderr
    res = cli("replay", "conv9d-n1-c1x1-s3-k1-f32")
    assert res.returncode == 2 and "unknown op 'conv9d'" in res.stderr
    res = cli("replay", "conv1d-n1-c1x1-s3-k1-f32", "--backends", "nope")
    assert res.returncode == 2 and "unknown backend(s) nope" in res.stderr


def test_a_run_with_new_failures_exits_1_after_writing_its_files(tmp_path):
    """What `nox -s conformance -- --plugin tests.planted:UnflippedWeight --backends
    planted-unflipped --ops conv_transpose2d` runs: the gate fails, and the results JSON and
    the report are there to read."""
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    res = cli(
        "run",
        "--plugin",
        "tests.planted:UnflippedWeight",
        "--backends",
        "planted-unflipped",
        "--ops",
        "conv_transpose2d",
        # Enough cases that the passes (pointwise kernels, where the flip changes nothing) tell
        # "kernel > 1" from rules that hold for the failures alone.
        "--max-examples",
        "40",
        # The planted backend takes contiguous inputs only: the other layouts' cases would be
        # unsupported, leaving fewer passes to tell the rule by.
        "--layouts",
        "contiguous",
        "--no-corpus",
        "--json",
        str(out),
        "--report",
        str(report),
        "-q",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    records = json.loads(out.read_text())["records"]
    assert any(r["verdict"] == "value-mismatch" and not r["known_failure"] for r in records)
    assert report.stat().st_size > 10_000
    assert "failure(s) in " in res.stdout and "each with its smallest case" in res.stdout
    # The unflipped kernel is wrong wherever a kernel has more than one tap.
    assert "rule: kernel > 1:" in res.stdout


def test_the_conformance_session_does_not_turn_failures_into_success():
    # nox's success_codes=[0, 1] made `nox -s conformance` succeed over failures.
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "success_codes" not in noxfile


def test_backends_lists_every_adapter_with_what_it_runs():
    res = cli("backends")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    names = [ln.split()[0] for ln in lines if ln and not ln.startswith(" ")]
    for name in ("mlx-cpu-nn", "mlx-gpu-nn", "torch-cpu-nn", "torch-cuda-nn", "torch-mps-nn"):
        assert name in names
    runs = {names[i // 3]: lines[i + 2].split("runs: ")[1] for i in range(0, 3 * len(names), 3)}
    assert runs["numpy-ref"].startswith("the six conv ops and conv_general1d")
    assert "layouts contiguous, strided, permuted, expanded, unbatched" in runs["torch-cpu-nn"]
    assert runs["onnxruntime-cpu"] == (
        "the six conv ops; directions fwd; layouts contiguous; padding explicit, same, valid"
    )
    assert runs["mlx-cpu"].endswith("; padding explicit")
