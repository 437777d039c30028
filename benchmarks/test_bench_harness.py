"""Harness throughput (`nox -s bench`): cases per second end to end, and where the time goes.

The cases are those of a default ``nox -s conformance`` run at a smaller scale: generated valid
and invalid cases for every op and dtype, plus the real-network corpus. They run through the
runner on the CPU backends (numpy-ref, kernels-host, torch-cpu, mlx-cpu), once with every
backend in this process and once isolated (one worker process per backend, the CLI default),
then the results JSON and the HTML report are written. The stage times
(:mod:`conformance.timing`) go to the throughput table printed at the end.

Not a test of speed: nothing here asserts on time.
"""

from __future__ import annotations

import time

import pytest

from benchmarks.conftest import record_stages
from benchmarks.layers import REAL_NETWORK_CORPORA
from conformance.case import OPS
from conformance.cli import DEFAULT_SEED
from conformance.corpus import load_corpus
from conformance.dtypes import DTYPES
from conformance.generate import generated_cases
from conformance.parallel import RunSpec, close_runner, start_isolated
from conformance.report import write_report
from conformance.results import RunResults, backend_entry
from conformance.timing import StageTimes

BACKENDS = ("numpy-ref", "kernels-host", "torch-cpu", "mlx-cpu")
#: Valid cases per op (and a quarter as many invalid ones): 6 ops x 75 + the corpus.
VALID_PER_OP = 60


def _cases():
    frozen = [f.case for f in load_corpus(list(REAL_NETWORK_CORPORA))]
    generated = generated_cases(
        list(OPS),
        list(DTYPES),
        valid_per_op=VALID_PER_OP,
        invalid_per_op=VALID_PER_OP // 4,
        seed=DEFAULT_SEED,
    )
    return frozen + generated


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_harness_throughput(benchmark, mode, tmp_path):
    spec = RunSpec(backends=BACKENDS, isolate=mode == "isolated")
    backends = spec.resolve()
    if not any(b.availability.available for b in backends):
        pytest.skip("none of the CPU backends is available")
    cases = _cases()
    times = StageTimes()

    def run_all() -> float:
        runner = spec.runner(backends)
        try:
            start_isolated(runner)
            start = time.perf_counter()
            records = []
            for case in cases:
                records += runner.run_case(case)
            results = RunResults(
                settings={"profile": "bench"},
                backends=[backend_entry(b) for b in backends],
                records=records,
            )
            with runner.times.stage("results"):
                results.write(tmp_path / "results.json")
            with runner.times.stage("report"):
                write_report(results, tmp_path / "report.html")
            wall = time.perf_counter() - start
        finally:
            close_runner(runner)
        times.merge(runner.times)
        return wall

    benchmark.group = "harness"
    benchmark.extra_info["cases"] = len(cases)
    wall = benchmark.pedantic(run_all, rounds=1, iterations=1)
    record_stages(f"{mode}, {len(cases)} cases", times, wall)
