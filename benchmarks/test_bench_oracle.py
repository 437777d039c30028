"""The float64 oracle at real sizes, on the path the harness runs (pytest-benchmark;
``nox -s bench``).

Every unique layer shape (case id without its dtype) of the real-network corpus
(``cases/{dcgan,unet2d,unet3d,vae3d,hifigan,depthwise,speech_conv1d}.toml``) and of
:data:`benchmarks.layers.LAYERS` is timed four ways, all float64 on the CPU:

* ``reference-bound``: what the runner calls for every case,
  :func:`conformance.inputs.run_reference` (the output and the error bound's inputs), on the
  harness's own inputs, formulation picked by :func:`reference.core.choose_formulation`;
* ``torch-cpu-f64``: ``torch.nn.functional`` in float64 on the same values in PyTorch's layout
  (tensors built before timing);
* ``per-tap`` and ``im2col``: the op alone (no bound, no bias) with that formulation forced,
  the numbers behind the chooser's thresholds.

Each is timed twice: ``idle``, and ``loaded``, with one busy neighbour process (a
spinning Python loop) beside the benchmark, as on a CI machine or in a ``-n auto`` run where
other workers want the cores. The reference's peak memory is measured once more, untimed, with
``tracemalloc`` (NumPy reports its allocations to it), as a ratio to the float64 bytes of input,
weight, bias and output.

The conftest prints the "oracle" and "formulations" tables. No assertions on time.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from benchmarks.conftest import record
from benchmarks.layers import LAYERS, REAL_NETWORK_CORPORA, flops, layer
from conformance.backends.base import channels_first, channels_first_weight
from conformance.case import Case
from conformance.corpus import load_corpus
from conformance.inputs import Inputs, make_inputs, run_reference
from reference.core import (
    FORMULATIONS,
    auto_formulation,
)
from reference.ops import run_op
from reference.params import check_params, check_shapes
from reference.threads import FREE_CORES_TTL

IMPLS = ("reference-bound", "torch-cpu-f64", *FORMULATIONS)
LOADS = ("idle", "loaded")
ROUNDS = 7


#: The neighbour: a bare interpreter that says it is ready, then spins on one core.
SPINNER = "import sys; print('spinning', flush=True); sys.stdout.close()\nwhile True: pass"


@contextmanager
def busy_neighbour(load: str) -> Iterator[None]:
    """With ``load == "loaded"``, one other process spinning on a core for the duration. The
    block starts only once it spins (a neighbour still starting up, as a spawned process
    importing for ~0.1-1 s, would leave the first rounds of a short layer idle) and the
    reference's reading of the free cores has expired."""
    if load == "idle":
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "spinning":
            raise RuntimeError("the busy neighbour process did not start")
        # Past the reference's cached reading of the free cores, which predates the neighbour.
        time.sleep(2 * FREE_CORES_TTL)
        yield
    finally:
        proc.kill()
        proc.wait()


def shape_id(case: Case) -> str:
    """The case id without its dtype (and seed): one entry per layer shape."""
    return replace(case, dtype="float32", seed=0).id.removesuffix("-f32")


def oracle_cases() -> dict[str, Case]:
    """Label -> float32 case, one per unique shape: the corpus in file order, then the layers of
    :data:`LAYERS` (whose name is appended to the label, also when the corpus has the shape)."""
    cases: dict[str, Case] = {}
    for frozen in load_corpus(list(REAL_NETWORK_CORPORA)):
        cases.setdefault(shape_id(frozen.case), replace(frozen.case, dtype="float32", seed=0))
    for name in LAYERS:
        case = layer(name)
        key = shape_id(case)
        cases.setdefault(key, case)
        cases[f"{key} ({name})"] = cases.pop(key)
    return cases


CASES = oracle_cases()


def out_shape(case: Case) -> tuple[int, ...]:
    p = check_params(case.op, case.ndim, transposed=case.transposed, **case.params())
    return check_shapes(p, case.x_shape, case.w_shape)


def chosen_formulation(case: Case) -> str:
    """The formulation the reference's chooser runs for ``case``."""
    return auto_formulation(
        case.x_shape,
        case.w_shape,
        out_shape(case),
        transposed=case.transposed,
        groups=case.groups,
    )


@lru_cache(maxsize=4)
def inputs_f64(case: Case) -> Inputs:
    """The case's inputs as float64 arrays, the same values both sides compute with."""
    src = make_inputs(case)
    bias = None if src.bias is None else src.bias.astype(np.float64)
    return Inputs(src.x.astype(np.float64), src.w.astype(np.float64), bias)


@lru_cache(maxsize=4)
def harness_inputs(case: Case) -> Inputs:
    """The inputs the runner gives the reference (the case dtype's values as float32)."""
    return make_inputs(case)


def reference_forced(case: Case, inputs: Inputs, formulation: str) -> np.ndarray:
    """The op without bias, with ``formulation`` forced."""
    return run_op(
        case.op,
        case.ndim,
        case.transposed,
        inputs.x,
        inputs.w,
        formulation=formulation,
        **case.params(),
    )


def torch_f64(case: Case, tensors) -> object:
    import torch
    import torch.nn.functional as F

    x, w, b = tensors
    with torch.no_grad():
        return getattr(F, case.op)(x, w, b, **case.params())


def peak_memory_ratio(case: Case) -> float:
    """Peak bytes allocated during one public op call on the harness's float32 inputs, over the
    float64 bytes of input, weight, bias and output."""
    inputs = make_inputs(case)
    tracemalloc.start()
    try:
        out = run_reference(case, inputs).out
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    counted = inputs.x.size + inputs.w.size + out.size
    counted += 0 if inputs.bias is None else inputs.bias.size
    return peak / (8 * counted)


@pytest.mark.parametrize("load", LOADS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label", list(CASES))
def test_oracle(benchmark, label, impl, load):
    case = CASES[label]
    inputs = inputs_f64(case)
    benchmark.group = f"oracle {label} {load}"
    benchmark.extra_info["gflop"] = flops(case) / 1e9
    if impl == "torch-cpu-f64":
        torch = pytest.importorskip("torch")
        tensors = (
            torch.from_numpy(channels_first(inputs.x)),
            torch.from_numpy(channels_first_weight(case, inputs.w)),
            None if inputs.bias is None else torch.from_numpy(inputs.bias),
        )
        fn, args = torch_f64, (case, tensors)
    elif impl == "reference-bound":
        fn, args = run_reference, (case, harness_inputs(case))
    else:
        fn, args = reference_forced, (case, inputs, impl)
    with busy_neighbour(load):
        benchmark.pedantic(fn, args=args, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    chosen = chosen_formulation(case)
    benchmark.extra_info["formulation"] = chosen
    if impl in FORMULATIONS:
        record("formulations", label, impl, median, flops(case), chosen=chosen, load=load)
        return
    info: dict = {"load": load}
    if impl == "reference-bound" and load == "idle":
        info |= {"memory_ratio": peak_memory_ratio(case), "formulation": chosen}
        benchmark.extra_info.update(info)
    record("oracle", label, impl, median, flops(case), **info)
