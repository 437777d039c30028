"""BLAS threads per op (reference/threads.py): a small op runs on one BLAS thread, a large one
on the cores no other process is running on, never more than the library's default, and the
setting is restored afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from reference import threads
from reference.ops import run_op

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def blas() -> list[int]:
    before = _blas_threads()
    if not before or max(before) < 2:
        pytest.skip("NumPy reports no multi-threaded BLAS here")
    return before


def test_small_op_runs_on_one_blas_thread(monkeypatch, blas) -> None:
    seen: list[list[int]] = []
    real = np.matmul

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr("reference.core.np.matmul", spy)
    x = np.ones((1, 64, 32))
    w = np.ones((32, 3, 32))  # 2 x 64 x 3072 multiply-adds: above TINY_OP_MACS, below SMALL
    out = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    assert out.out.shape == (1, 62, 32)
    assert np.all(out.out == 96.0) and np.all(out.abs_sum >= 96.0)
    assert seen and all(s == [1] * len(blas) for s in seen)
    assert _blas_threads() == blas  # restored


@pytest.mark.parametrize(("free", "want"), [(None, "default"), (64, "default"), (1, 1)])
def test_large_op_uses_the_free_cores(monkeypatch, blas, free, want) -> None:
    monkeypatch.setattr(threads, "free_cores", lambda: free)
    with threads.blas_threads_for(threads.SMALL_OP_MACS):
        assert _blas_threads() == (blas if want == "default" else [want] * len(blas))
    with threads.blas_threads_for(threads.SMALL_OP_MACS - 1):
        assert _blas_threads() == [1] * len(blas)
    assert _blas_threads() == blas


def test_threads_for_rules(monkeypatch) -> None:
    monkeypatch.setattr(threads, "free_cores", lambda: 3)
    assert threads.threads_for(threads.SMALL_OP_MACS - 1, 8) == 1
    assert threads.threads_for(threads.SMALL_OP_MACS, 8) == 3
    assert threads.threads_for(threads.SMALL_OP_MACS, 2) == 2


def test_free_cores_counts_other_processes() -> None:
    free = threads.free_cores()
    if free is None:
        pytest.skip("no /proc/stat here")
    assert 1 <= free <= (threads.os.cpu_count() or 1)
