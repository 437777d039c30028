"""The prepared GPU run (device/run.sh) as a dry run on a machine without a GPU: every stage runs,
the CUDA backends are reported unavailable with their reason, the release run checks what is
available, and the bench says it timed nothing. On a CUDA machine this test is skipped: the run
itself is the check there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("env", "smoke", "release", "tf32", "bench")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_has_cuda(), reason="a CUDA device is present: run device/run.sh itself")
def test_dry_run_without_gpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE_EXAMPLES": "1",
        "DEVICE_TF32_EXAMPLES": "1",
        "DEVICE_WORKERS": "1",
    }
    res = subprocess.run(
        ["bash", str(ROOT / "device" / "run.sh"), str(tmp_path)],
        cwd=tmp_path,  # the script finds the project itself
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == list(STAGES)
    assert all(": exit 0 in " in line for line in summary), summary

    results = json.loads((tmp_path / "results.json").read_text())
    unavailable = {b["name"]: b for b in results["backends"] if not b["available"]}
    for name in ("torch-cuda", "torch-cuda-cl", "kernels-cuda", "mlx-gpu"):
        assert name in unavailable, sorted(unavailable)
        assert unavailable[name]["detail"], name
    ran = {r["backend"] for r in results["records"]}
    assert ran == {"numpy-ref"}
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "tf32.json").exists()

    bench = (tmp_path / "bench.md").read_text()
    assert "dry run: nothing to time on this machine" in bench
    assert "not available: kernels-cuda:" in bench
    assert "not available: cudnn: PyTorch" in bench
