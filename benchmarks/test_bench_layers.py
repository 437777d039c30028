"""Time real-network layers on every available backend (pytest-benchmark; `nox -s bench`).

Group ``kernels``: each backend in the case dtype (float32): our kernels, upstream MLX, PyTorch
(on CUDA with TF32 off, and separately on), reported in GFLOP/s and as a ratio to cuDNN
(``torch-cuda``) where there is a GPU, else to ``torch-cpu``. The float64 oracle against
``torch.nn.functional`` is timed in ``test_bench_oracle.py``.

No assertions on time: numbers are for the table, not for pass/fail.
"""

from __future__ import annotations

from functools import partial

import pytest

from benchmarks.conftest import record
from benchmarks.layers import LAYERS, flops, layer
from conformance.backends import Backend, resolve
from conformance.backends.torch_backend import TorchBackend
from conformance.inputs import make_inputs
from kernels.source import TILES

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


HOST = next((b for b in BACKENDS if b.name == "kernels-host"), None)


@pytest.mark.skipif(HOST is None, reason="kernels-host is not available (no C++ compiler)")
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_kernels_host_tiles(benchmark, name, tile):
    """Our host build at each tile size (output channels per thread): the effect of register
    tiling, which the chooser's row (``kernels-host``, in ``test_kernels``) includes."""
    from kernels import host, plan

    case = layer(name)
    inputs = make_inputs(case)
    bias = None if inputs.bias is None else inputs.bias.shape
    p = plan.make_plan(case, inputs.x.shape, inputs.w.shape, bias, tile=tile)
    run = partial(host.run, p, case.dtype, inputs.x, inputs.w, inputs.bias)
    run()
    benchmark.group = f"kernels-host tiles {name}"
    benchmark.pedantic(run, rounds=3, iterations=1)
    record("kernels", name, f"kernels-host-t{tile}", benchmark.stats.stats.median, flops(case))
