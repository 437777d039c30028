"""Time real-network layers on every available backend (pytest-benchmark; `nox -s bench`).

Group ``kernels``: each backend in the case dtype (float32): our kernels, upstream MLX, PyTorch
(on CUDA with TF32 off, and separately on), reported in GFLOP/s and as a ratio to cuDNN
(``torch-cuda``) where there is a GPU, else to ``torch-cpu``. The float64 oracle against
``torch.nn.functional`` is timed in ``test_bench_oracle.py``.

No assertions on time: numbers are for the table, not for pass/fail.
"""

from __future__ import annotations

import pytest

from benchmarks.conftest import record
from benchmarks.layers import LAYERS, flops, layer
from conformance.backends import Backend, resolve
from conformance.backends.torch_backend import TorchBackend
from conformance.inputs import make_inputs

KERNEL_BACKENDS = [
    "kernels-host",
    "kernels-cuda",
    "kernels-metal",
    "mlx-cpu",
    "mlx-gpu",
    "torch-cpu",
    "torch-cuda",
    "torch-mps",
]


def _backends() -> list[Backend]:
    found = [b for b in resolve(KERNEL_BACKENDS) if b.availability.available]
    tf32 = TorchBackend("cuda", allow_tf32=True)
    if tf32.availability.available:
        tf32.name = "torch-cuda-tf32"
        found.append(tf32)
    return found


BACKENDS = _backends()


@pytest.mark.parametrize("backend", BACKENDS, ids=[b.name for b in BACKENDS])
@pytest.mark.parametrize("name", list(LAYERS))
def test_kernels(benchmark, name, backend):
    case = layer(name)
    reason = backend.unsupported_reason(case)
    if reason:
        pytest.skip(reason)
    inputs = make_inputs(case)
    backend.run(case, inputs)  # warm-up: compile, plan caches
    benchmark.group = f"kernels {name}"
    benchmark.extra_info["gflop"] = flops(case) / 1e9
    benchmark.pedantic(backend.run, args=(case, inputs), rounds=5, iterations=1)
    record("kernels", name, backend.name, benchmark.stats.stats.median, flops(case))
