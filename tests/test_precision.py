"""The statistical tier of the precision verdict (conformance/precision.py): correct float32
implementations in other summation orders pass; TF32 inputs, float16 accumulation and one wrong
element, all within the proven bound, fail with ``precision-mismatch``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conformance import diff as D
from conformance import precision as P
from conformance.case import parse_id
from conformance.inputs import make_inputs, run_reference
from tests import alternatives as A
from tests import planted_precision as PP

#: Real-network layers where the proven bound let planted bugs through (issue #13's examples).
WHISPER = "conv1d-n1-c384x384-s300-k3-st2-p1-bias-f32"
VGG = "conv2d-n1-c512x256-s32-k3-p1-bias-f32"
#: Small generated-style cases of every op, dtype and a few parameter regions.
SMALL = [
    "conv1d-n2-c6x4-s11-k3-st2-p1-d2-g2-bias-f32-seed7",
    "conv2d-n1-c16x8-s9x7-k3x2-p1-f16-seed3",
    "conv3d-n2-c4x4-s5-k3-st2-p1-g4-bf16-seed11",
    "conv_transpose1d-n2-c8x6-s12-k4-st2-p1-op1-bias-f32-seed5",
    "conv_transpose2d-n1-c64x32-s8-k4-st2-p1-f16-seed2",
    "conv_transpose3d-n1-c6x9-s3-k1x1x2-st1x2x3-p0x0x1-d1x2x1-op0x1x0-g3-f16-seed1749",
    "conv_transpose2d-n2-c128x64-s16-k4-st2-p1-f32",
]


def judge(case_id: str, backend, tol: D.Tolerance = D.Tolerance()) -> D.Diff:
    case = parse_id(case_id)
    inputs = make_inputs(case)
    return D.compare(case, backend.run(case, inputs), run_reference(case, inputs), tol)


@pytest.mark.parametrize("case_id", [WHISPER, VGG, *SMALL])
@pytest.mark.parametrize("impl", A.BACKENDS, ids=lambda b: b.name)
def test_correct_summation_orders_pass(case_id, impl):
    diff = judge(case_id, impl())
    assert diff.verdict == D.PASS, diff.detail
    m = diff.metrics
    # Well inside every threshold, not just under it.
    assert m.statistical_ratio < 1 and m.rms_ratio < 0.5 and m.outlier_ratio < 0.5, m


def test_tf32_inputs_fail_within_the_proven_bound():
    diff = judge(WHISPER, PP.Tf32Inputs())
    assert diff.verdict == D.PRECISION_MISMATCH
    m = diff.metrics
    assert m.max_error_over_bound < 1  # the proven bound alone passes it
    assert m.rms_ratio > 10  # the error level is far above float32 accumulation's
    assert "TF32" in (m.precision_hint or "")
    proven_only = judge(WHISPER, PP.Tf32Inputs(), D.Tolerance(statistical=False))
    assert proven_only.verdict == D.PASS and proven_only.metrics.rms_ratio is None


def test_one_element_1000_ulps_off_in_a_big_output_fails():
    case = parse_id(VGG)
    diff = judge(VGG, PP.OneBadElement())
    assert diff.verdict == D.PRECISION_MISMATCH, diff.detail
    m = diff.metrics
    assert m.max_error_over_bound < 0.1 and m.statistical_ratio < 1 and m.rms_ratio < 0.5
    assert m.outlier_ratio > 1
    assert "1 element(s) out of line" in diff.detail
    assert m.precision_hint is None  # one wrong element is no lower-precision arithmetic
    # The worst element shown is the planted one: the last.
    assert (m.worst.batch, m.worst.position, m.worst.channel) == (0, (31, 31), 255)
    assert case.out_channels == 256


def test_float16_accumulation_in_a_float16_case():
    """Taps' partial sums added in float16 over 4608 products per element: within the proven
    bound (float32 accumulation over n terms allows n u32 S), far above what float32
    accumulation gives. (With fewer products the proven bound catches it already.)"""
    case_id = "conv2d-n1-c512x64-s8-k3-p1-f16-seed4"
    diff = judge(case_id, PP.Float16Accumulation())
    assert diff.verdict == D.PRECISION_MISMATCH, (diff.verdict, diff.metrics)
    assert diff.metrics.max_error_over_bound < 1
    assert "float16 accumulation" in (diff.metrics.precision_hint or "")
    assert judge(case_id, A.Float32PerTap()).verdict == D.PASS


def test_tolerance_factor_scales_the_statistical_tier():
    diff = judge(WHISPER, PP.Tf32Inputs())
    rms = diff.metrics.rms_ratio
    relaxed = judge(WHISPER, PP.Tf32Inputs(), D.Tolerance(factor=2 * rms))
    assert relaxed.metrics.rms_ratio == pytest.approx(0.5)
    assert relaxed.metrics.statistical_ratio < diff.metrics.statistical_ratio


def _synthetic(n_elements: int, terms: int, seed: int = 0):
    """A reference result of ``n_elements`` outputs of ``terms`` random-sign products each, and
    errors of the size float32 accumulation gives (z about 0.5)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.2, 0.3, (1, n_elements, 1)) * terms
    out = rng.normal(0, 1, s.shape) * np.sqrt(terms) / 3
    ref = D.ConvResult(out, s, np.broadcast_to(np.full((1, n_elements, 1), terms), s.shape))
    err = np.abs(rng.normal(0, 0.5, s.shape)) * P.UNIT_ROUNDOFF["float32"] * s
    return ref, err


def test_scores_on_errors_float32_accumulation_gives():
    ref, err = _synthetic(100_000, 4608)
    sc = P.scores("float32", False, err, ref)
    assert not sc.fails
    assert 0.1 < sc.rms_ratio < 0.5 and sc.outlier_ratio < 0.5 and sc.element_ratio < 0.1


def test_one_out_of_line_element_is_found_and_located():
    ref, err = _synthetic(100_000, 4608)
    err[0, 1234, 0] = 20 * P.UNIT_ROUNDOFF["float32"] * ref.abs_sum[0, 1234, 0]  # z = 20
    sc = P.scores("float32", False, err, ref)
    assert sc.fails and sc.outlier_ratio > 1 and sc.rms_ratio < 1 and sc.element_ratio < 1
    assert np.argwhere(sc.flagged).tolist() == [[0, 1234, 0]]


def test_out_of_line_needs_a_big_enough_output():
    """With fewer than TAU^2 elements one element cannot exceed TAU times the RMS it is part
    of: small outputs are judged by the other tests."""
    ref, err = _synthetic(100, 4608)
    err[0, 7, 0] = 50 * P.UNIT_ROUNDOFF["float32"] * ref.abs_sum[0, 7, 0]
    sc = P.scores("float32", False, err, ref)
    assert sc.outlier_ratio < 1 and sc.rms_ratio > 1  # caught by the error level instead


def test_exact_outputs_do_not_flag_one_rounding():
    """An output computed exactly but for one element off by a float32 rounding: the RMS is
    tiny, but the element is below Z_FLOOR."""
    ref, err = _synthetic(10_000, 16)
    err[...] = 0
    err[0, 5, 0] = P.UNIT_ROUNDOFF["float32"] * (abs(ref.out[0, 5, 0]) + ref.abs_sum[0, 5, 0])
    assert not P.scores("float32", False, err, ref).fails


def test_float16_output_rounding_is_absorbed():
    """Correctly rounded float16 outputs: their error is the rounding, z <= 1."""
    for case_id in SMALL:
        case = replace(parse_id(case_id), dtype="float16")
        inputs = make_inputs(case)
        ref = run_reference(case, inputs)
        got = np.asarray(ref.out, np.float16).astype(np.float64)
        sc = P.scores("float16", case.bias, np.abs(got - ref.out), ref)
        assert not sc.fails and sc.rms_ratio < 0.5, case_id
