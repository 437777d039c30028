"""Time real-network layers on every available backend (pytest-benchmark; `nox -s bench`).

Two groups:

* ``kernels``: each backend in the case dtype (float32): our kernels, upstream MLX, PyTorch (on
  CUDA with TF32 off, and separately on), reported in GFLOP/s and as a ratio to cuDNN
  (``torch-cuda``) where there is a GPU, else to ``torch-cpu``;
* ``oracle``: the float64 NumPy reference against ``torch.nn.functional`` in float64 on the CPU.

No assertions on time: numbers are for the table, not for pass/fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.conftest import record
from benchmarks.layers import LAYERS, flops, layer
from conformance.backends import Backend, resolve
from conformance.backends.base import channels_first
from conformance.backends.torch_backend import TorchBackend, torch_weight
from conformance.inputs import make_inputs
from reference.ops import run_op

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


def _reference_f64(case, inputs):
    return run_op(
        case.op, case.ndim, case.transposed, inputs.x, inputs.w, inputs.bias, **case.params()
    )


def _torch_f64(case, tensors):
    import torch
    import torch.nn.functional as F

    x, w, b = tensors
    with torch.no_grad():
        return getattr(F, case.op)(x, w, b, **case.params())


@pytest.mark.parametrize("impl", ["reference-f64", "torch-cpu-f64"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_oracle(benchmark, name, impl):
    case = layer(name)
    inputs = make_inputs(case)
    benchmark.group = f"oracle {name}"
    if impl == "reference-f64":
        fn, args = _reference_f64, (case, inputs)
    else:
        torch = pytest.importorskip("torch")
        tensors = (
            torch.from_numpy(channels_first(inputs.x).astype(np.float64)),
            torch.from_numpy(torch_weight(case, inputs.w).astype(np.float64)),
            None if inputs.bias is None else torch.from_numpy(inputs.bias.astype(np.float64)),
        )
        fn, args = _torch_f64, (case, tensors)
    benchmark.pedantic(fn, args=args, rounds=3, iterations=1, warmup_rounds=1)
    record("oracle", name, impl, benchmark.stats.stats.median, flops(case))
