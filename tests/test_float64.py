"""float64 cases: the dtype, its inputs, its bound (float64 accumulation plus the reference's own
error), the backends that compute it, and a planted downcast the harness must catch."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends.base import unsupported
from conformance.backends.mlx_backend import MLXBackend
from conformance.backends.numpy_ref import NumpyReference
from conformance.backends.torch_backend import TorchBackend
from conformance.case import parse_id
from conformance.cli import main
from conformance.corpus import load_corpus
from conformance.dtypes import ALL_DTYPES, DTYPES, round_to, ulp_between
from conformance.inputs import make_inputs, run_reference
from conformance.runner import Runner
from tests.planted_precision import Float64InFloat32


def test_float64_values_and_ulps():
    assert "float64" in ALL_DTYPES and "float64" not in DTYPES  # drawn only when asked
    third = round_to(np.array([1 / 3]), "float64")
    assert third.dtype == np.float64 and third[0] == 1 / 3  # no float32 rounding
    one = np.array([1.0, -2.0, 0.0])
    up = np.nextafter(one, np.inf)
    assert ulp_between(one, up, "float64").tolist() == [1, 1, 1]
    assert ulp_between(np.array([-0.0]), np.array([5e-324]), "float64").tolist() == [1]
    assert ulp_between(np.array([1.0]), np.array([1.0 + 2**-20]), "float64").tolist() == [2**32]


def test_inputs_of_a_float64_case_are_float64_with_full_mantissas():
    case = parse_id("conv2d-n1-c3x4-s6-k3-f64")
    inputs = make_inputs(case)
    assert inputs.x.dtype == inputs.w.dtype == np.float64
    # Uniform draws keep their 53-bit mantissas: most are no float32.
    assert np.mean(inputs.x.astype(np.float32) != inputs.x) > 0.9
    special = make_inputs(parse_id("conv2d-n1-c3x4-s6-k3-f64-fspecial"))
    tiny = np.abs(special.x[np.isfinite(special.x) & (special.x != 0)])
    assert tiny.min() < np.finfo(np.float64).tiny  # float64 subnormals


def test_float64_bound_is_float64_accumulation_plus_the_references_own():
    case = parse_id("conv1d-n1-c64x4-s20-k5-f64")
    ref = run_reference(case)
    bound = D.error_bound(case, ref, D.Tolerance())
    u64 = 2.0**-53
    acc = u64 * ref.terms * ref.abs_sum
    assert np.all(bound >= 2 * acc) and np.all(bound <= 2 * acc + u64 * np.abs(ref.out) + 1e-300)
    # Tolerance.accumulation is the other dtypes' knob: float64 stays float64.
    loose = D.error_bound(case, ref, D.Tolerance(accumulation="float16"))
    assert np.array_equal(loose, bound)


def test_a_downcast_float64_backend_fails_with_the_float32_hint():
    runner = Runner([Float64InFloat32()])
    (rec,) = runner.run_case(parse_id("conv2d-n2-c16x8-s9-k3-p1-f64"))
    assert rec.verdict == D.VALUE_MISMATCH
    assert rec.metrics.precision_hint.endswith(
        "float32 arithmetic (inputs rounded to float32, float32 accumulation)"
    )
    # The same planted backend is right for a float32 case: it computes float32 correctly.
    (ok,) = runner.run_case(parse_id("conv2d-n2-c16x8-s9-k3-p1-f32"))
    assert ok.verdict == D.PASS


def test_float32_output_for_a_float64_case_is_a_dtype_mismatch():
    case = parse_id("conv1d-n1-c2x2-s5-k3-f64")
    ref = run_reference(case)
    diff = D.compare(case, ref.out.astype(np.float32), ref)
    assert diff.verdict == D.DTYPE_MISMATCH and "needs float64 output" in diff.detail
    assert D.compare(case, ref.out, ref).verdict == D.PASS


def test_who_computes_float64():
    case = parse_id("conv2d-n1-c2x2-s5-k3-f64")
    assert unsupported(NumpyReference(), case) is None
    assert unsupported(TorchBackend("cpu"), case) is None
    assert unsupported(TorchBackend("cpu", memory_format="channels_last"), case) is None
    assert "MPS has no float64" in unsupported(TorchBackend("mps"), case)
    assert "does not compute float64" in unsupported(MLXBackend("cpu"), case)


def test_the_float64_corpus_passes_on_torch_cpu():
    cases = [f.case for f in load_corpus() if f.case.dtype == "float64"]
    assert len(cases) >= 12
    assert {c.direction for c in cases} == {"fwd", "bwd_d", "bwd_w"}
    assert {c.op for c in cases} >= {
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    }
    runner = Runner([TorchBackend("cpu"), NumpyReference()])
    for case in cases:
        for rec in runner.run_case(case):
            assert rec.verdict == D.PASS, rec.summary()


def test_a_run_draws_float64_only_when_asked(tmp_path, capsys):
    code = main(
        [
            "cases",
            "--no-corpus",
            "--max-examples",
            "5",
            "--invalid-examples",
            "0",
            "--ops",
            "conv2d",
        ]
    )
    assert code == 0 and "-f64" not in capsys.readouterr().out
    code = main(
        [
            "cases",
            "--no-corpus",
            "--max-examples",
            "20",
            "--invalid-examples",
            "0",
            "--ops",
            "conv2d",
            "--dtypes",
            "float32,float64",
        ]
    )
    ids = capsys.readouterr().out.split()
    assert code == 0 and any("-f64" in i for i in ids) and any("-f32" in i for i in ids)


@pytest.mark.parametrize(
    "case_id",
    [
        "conv_transpose1d-n2-c8x4-s9-k4-st2-p1-op1-bias-f64-bwd_w",
        "conv1d-n1-c32x16-s40-k4-psame-d2-f64-bwd_d",
    ],
)
def test_float64_gradients_pass_on_torch_cpu(case_id):
    (rec,) = Runner([TorchBackend("cpu")]).run_case(parse_id(case_id))
    assert rec.verdict == D.PASS, rec.summary()
