"""The diff engine on outputs with known errors: verdicts, metrics, bound, pattern, hints."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import diff as D
from conformance.case import parse_id
from conformance.dtypes import UNIT_ROUNDOFF, round_to
from conformance.inputs import make_inputs, run_reference


def judged(case_id: str, transform):
    case = parse_id(case_id)
    ref = run_reference(case)
    got = transform(case, ref)
    return case, ref, D.compare(case, got, ref)


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_correctly_rounded_output_passes_within_half_ulp(dtype):
    case, ref, diff = judged(
        f"conv_transpose2d-n2-c4x6-s5-k3-st2-p1-op1-g2-bias-{dtype}-seed3",
        lambda c, r: round_to(r.out, c.dtype),
    )
    assert diff.verdict == D.PASS
    assert diff.metrics.max_ulp <= 1  # rounding the float64 value: at most one ULP away
    assert diff.metrics.over_tolerance == 0
    assert diff.metrics.max_error_over_bound <= 1


def test_float32_accumulation_error_is_within_bound():
    """A float32 computation of a float16 case passes: the contract is fp32 accumulation."""
    case = parse_id("conv1d-n1-c64x8-s32-k7-p3-f16")
    inputs = make_inputs(case)
    ref = run_reference(case)
    from reference.core import conv_general

    # Accumulate in float32, tap by tap, like a real kernel.
    x32, w32 = inputs.x.astype(np.float32), inputs.w.astype(np.float32)
    acc = np.zeros(ref.out.shape, np.float32)
    for k in range(7):
        one_tap = np.zeros_like(w32)
        one_tap[:, k, :] = w32[:, k, :]
        acc += conv_general(
            x32, one_tap, stride=(1,), padding_lo=(3,), padding_hi=(3,), kernel_dilation=(1,)
        ).out.astype(np.float32)
    diff = D.compare(case, round_to(acc, "float16"), ref)
    assert diff.verdict == D.PASS, diff


def test_float16_accumulation_is_caught_and_named():
    case = parse_id("conv1d-n1-c64x8-s32-k7-p3-f16")
    inputs = make_inputs(case)
    ref = run_reference(case)
    # Sequential float16 accumulation over all 448 products of each output element.
    xp = np.pad(inputs.x[0].astype(np.float16), ((3, 3), (0, 0)))
    w = inputs.w.astype(np.float16)
    out = np.zeros(ref.out.shape, np.float16)
    for o in range(32):
        for co in range(8):
            acc = np.float16(0)
            for k in range(7):
                for ci in range(64):
                    acc = np.float16(acc + np.float16(xp[o + k, ci] * w[co, k, ci]))
            out[0, o, co] = acc
    diff = D.compare(case, out.astype(np.float32), ref)
    assert diff.verdict == D.VALUE_MISMATCH
    assert "float16 accumulation" in diff.metrics.precision_hint


def test_tf32_inputs_are_caught_and_named():
    case = parse_id("conv2d-n1-c32x8-s9-k3-p1-f32-seed5")
    inputs = make_inputs(case)

    def tf32(a):  # round to a 10-bit mantissa (nearest even), as TF32 tensor cores do
        bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = ((bits + 0xFFF + ((bits >> 13) & 1)) >> 13) << 13
        return (bits & 0xFFFFFFFF).astype(np.uint32).view(np.float32)

    from reference.ops import conv2d

    got = conv2d(tf32(inputs.x).astype(np.float64), tf32(inputs.w).astype(np.float64), padding=1)
    diff = D.compare(case, got.astype(np.float32), run_reference(case))
    assert diff.verdict == D.VALUE_MISMATCH
    assert "TF32" in diff.metrics.precision_hint


def test_bound_formula_matches_documentation():
    case = parse_id("conv1d-n1-c3x2-s6-k3-bias-bf16")
    ref = run_reference(case)
    bound = D.error_bound(case, ref, D.Tolerance(factor=2.0))
    u32, ubf = UNIT_ROUNDOFF["float32"], UNIT_ROUNDOFF["bfloat16"]
    expected = (
        2.0 * u32 * ref.terms * ref.abs_sum + ubf * (np.abs(ref.out) + ref.abs_sum) + 2.0**-134
    )
    np.testing.assert_allclose(bound, expected, rtol=1e-15)
    assert (ref.terms == 3 * 3 + 1).all()  # 3 taps x 3 channels, plus the bias


def test_one_element_off_is_located_by_logical_index():
    def perturb(c, r):
        out = round_to(r.out, c.dtype).copy()
        out[1, 2, 3, 4] += 0.5
        return out

    case, ref, diff = judged("conv_transpose2d-n2-c3x5-s3-k2-st2-f32", perturb)
    assert diff.verdict == D.VALUE_MISMATCH
    m = diff.metrics
    assert m.over_tolerance == 1 and m.elements == ref.out.size
    assert (m.worst.batch, m.worst.position, m.worst.channel) == (1, (2, 3), 4)
    assert m.worst.abs_error == pytest.approx(0.5, abs=1e-6)
    assert m.worst.want == pytest.approx(ref.out[1, 2, 3, 4])
    assert m.error_map_axes == ("row (H)", "column (W)")
    assert np.argmax(np.array(m.error_map)) == 2 * 6 + 3  # the heatmap peaks at (2, 3)


def test_error_pattern_names_the_last_positions():
    def zero_tail(c, r):
        out = round_to(r.out, c.dtype).copy()
        out[:, -1, :] = 0.0
        return out

    _, _, diff = judged("conv_transpose1d-n1-c2x3-s5-k3-st2-f32-seed1", zero_tail)
    assert "only the last 1 of 11 positions along spatial axis 0" in diff.metrics.pattern


def test_error_pattern_names_a_group():
    def break_group(c, r):
        out = round_to(r.out, c.dtype).copy()
        out[..., 4:] *= 1.5  # channels 4, 5: the second group of two
        return out

    _, _, diff = judged("conv2d-n1-c6x6-s5-k3-g3-f32-seed2", break_group)
    assert "only group 2 of 3" in diff.metrics.pattern


def test_shape_mismatch_reports_both_shapes():
    _, _, diff = judged("conv_transpose1d-n1-c1x1-s5-k2-st2-p2-f32", lambda c, r: r.out[:, :4])
    assert diff.verdict == D.SHAPE_MISMATCH
    assert "(1, 4, 1)" in diff.detail and "(1, 6, 1)" in diff.detail


def test_nan_where_reference_is_finite():
    def nan_one(c, r):
        out = round_to(r.out, c.dtype).copy()
        out[0, 1, 0] = np.nan
        return out

    _, _, diff = judged("conv1d-n1-c2x2-s6-k3-f16", nan_one)
    assert diff.verdict == D.NAN_INF_MISMATCH
    assert "(0, 1, 0)" in diff.detail


def test_values_off_the_dtype_grid_are_a_dtype_mismatch():
    # float64 values returned for a float16 case: the backend never produced float16.
    _, _, diff = judged("conv1d-n1-c2x2-s6-k3-f16", lambda c, r: r.out)
    assert diff.verdict == D.DTYPE_MISMATCH
    _, _, diff = judged("conv1d-n1-c2x2-s6-k3-f16", lambda c, r: r.out.astype(np.int64))
    assert diff.verdict == D.DTYPE_MISMATCH


def test_tolerance_rejects_nonsense():
    with pytest.raises(ValueError, match="factor"):
        D.Tolerance(factor=0)
    with pytest.raises(ValueError, match="accumulation"):
        D.Tolerance(accumulation="int8")


def test_metrics_round_trip_through_dicts():
    def perturb(c, r):
        out = round_to(r.out, c.dtype).copy()
        out[0, 0, 0, 0, 0] += 1
        return out

    _, _, diff = judged("conv_transpose3d-n1-c2x2-s2-k2-st2-f32", perturb)
    m = diff.metrics
    assert D.DiffMetrics.from_dict(m.to_dict()) == m
