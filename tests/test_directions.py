"""Directions (fwd, bwd_d, bwd_w) as part of the case: ids, inputs, the reference's outputs, the
judge, the known-failures field, the strategies, our kernels' bwd_d, and the one runner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.backends.base import channels_first_weight, mlx_weight, unsupported
from conformance.backends.numpy_ref import NumpyReference
from conformance.case import DIRECTIONS, OPS, Case, parse_id
from conformance.directions import adjoint, expected, judge, output_names
from conformance.draw import SeededDraw
from conformance.generate import draw_cases, generated_cases
from conformance.inputs import Inputs, cotangent, make_inputs
from conformance.known_failures import KnownFailures
from conformance.runner import Runner
from conformance.strategies import draw_valid_case
from kernels.backends import KernelsHost
from reference import grad as RG

# --- the id and the case -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, direction",
    [
        ("conv2d-n1-c3x4-s5-k3-f32", "fwd"),
        ("conv2d-n1-c3x4-s5-k3-f32-bwd_d", "bwd_d"),
        ("conv1d-n2-c4x8-s9-k3-st2-bias-f16-fint-bwd_w-seed3", "bwd_w"),
    ],
)
def test_direction_ids_round_trip(text: str, direction: str) -> None:
    case = parse_id(text)
    assert case.direction == direction and case.id == text
    assert Case.from_dict(case.to_dict()) == case
    assert ("direction" in case.to_dict()) == (direction != "fwd")


def test_explicit_fwd_is_read_and_not_written() -> None:
    assert parse_id("conv1d-n1-c1x1-s3-k1-f32-fwd").id == "conv1d-n1-c1x1-s3-k1-f32"


@pytest.mark.parametrize(
    "text, message",
    [
        ("conv1d-n1-c1x1-s3-k1-f32-bwd_d-bwd_w", "direction given twice"),
        ("conv1d-n1-c1x1-s3-k1-f32-seed2-bwd_d", "direction out of order"),
        ("conv1d-n1-c1x1-s3-k1-f32-bwd_x", "cannot parse token 'bwd_x'"),
    ],
)
def test_bad_direction_tokens(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_id(text)


def test_case_checks_its_direction() -> None:
    with pytest.raises(ValueError, match="Case.direction must be one of fwd, bwd_d, bwd_w"):
        Case("conv1d", 1, 1, 1, 3, 1, direction="bwd")
    with pytest.raises(ValueError, match="Case.fill 'special' needs direction 'fwd'"):
        Case("conv1d", 1, 1, 1, 3, 1, fill="special", direction="bwd_d")


# --- inputs and the reference ---------------------------------------------------------------------


def test_cotangent_is_drawn_for_backward_cases_only() -> None:
    case = parse_id("conv_transpose1d-n2-c3x2-s4-k3-st2-op1-bf16-bwd_d-seed7")
    dy = make_inputs(case).dy
    assert dy is not None and dy.shape == (2, 10, 2) and not dy.flags.writeable
    assert not (dy.view(np.uint32) & 0xFFFF).any()  # exact in bfloat16
    assert np.array_equal(dy, make_inputs(replace(case, direction="bwd_w")).dy)
    assert not np.array_equal(dy, cotangent(replace(case, seed=8)))
    assert make_inputs(replace(case, direction="fwd")).dy is None
    # The forward inputs are the same in every direction.
    fwd = make_inputs(replace(case, direction="fwd"))
    assert np.array_equal(fwd.x, make_inputs(case).x) and np.array_equal(fwd.w, make_inputs(case).w)
    assert cotangent(parse_id("conv1d-n1-c1x1-s3-k1-st0-f32-bwd_d")) is None  # invalid


def test_expected_outputs_are_the_reference_vjps() -> None:
    case = parse_id("conv2d-n2-c4x6-s7-k3-st2-p1-g2-bias-f32-bwd_w-seed3")
    inputs = make_inputs(case)
    want = expected(case, inputs)
    assert want.names == ("grad_weight", "grad_bias") == output_names(case)
    g = RG.vjp(case.op, inputs.x, inputs.w, inputs.dy, bias=True, **case.params())
    np.testing.assert_array_equal(want.results[0].out, g.weight.out)
    np.testing.assert_array_equal(want.results[1].out, g.bias.out)
    bwd_d = replace(case, direction="bwd_d")
    np.testing.assert_array_equal(expected(bwd_d, inputs).first.out, g.input.out)
    with pytest.raises(ValueError, match="stride"):
        bad = parse_id("conv1d-n1-c1x1-s3-k1-st0-f32-bwd_d")
        expected(bad, make_inputs(bad))


# --- judging ------------------------------------------------------------------------------------


def test_bwd_w_needs_both_gradients_and_names_the_failing_one() -> None:
    case = parse_id("conv1d-n2-c3x4-s9-k3-st2-bias-f32-bwd_w-seed2")
    inputs = make_inputs(case)
    want = expected(case, inputs)
    dw, db = NumpyReference().run(case, inputs)
    assert judge(case, (dw, db), want).verdict == D.PASS
    short = judge(case, dw, want)
    assert short.verdict == D.SHAPE_MISMATCH
    assert "expected 2: grad_weight, grad_bias" in short.detail
    off = judge(case, (dw, db + 0.5), want)
    assert off.verdict == D.VALUE_MISMATCH and off.detail.startswith("grad_bias: 4 element(s)")
    flipped = np.ascontiguousarray(dw[:, ::-1])  # the weight gradient's taps reversed
    bad = judge(case, (flipped, db), want)
    assert bad.verdict == D.VALUE_MISMATCH
    assert bad.detail.startswith("grad_weight: ") and "'batch' is the output channel" in bad.detail


@pytest.mark.parametrize(
    "case_id",
    [
        "conv2d-n1-c6x4-s5-k3x2-g2-f32",
        "conv_transpose2d-n1-c6x4-s3-k3x2-g2-f32",
        "conv_transpose3d-n1-c3x6-s2-k2x1x3-g3-f32",
        "conv_transpose1d-n1-c4x4-s3-k2-g4-f32",
    ],
)
def test_mlx_weight_inverts_the_channels_first_weight(case_id: str) -> None:
    case = parse_id(case_id)
    w = np.arange(np.prod(case.w_shape), dtype=np.float32).reshape(case.w_shape)
    assert np.array_equal(mlx_weight(case, channels_first_weight(case, w)), w)


# --- backends -----------------------------------------------------------------------------------

BACKWARD_CASES = [
    "conv2d-n2-c4x6-s7-k3-st2-p1-bias-f32-bwd_d-seed3",
    "conv2d-n2-c4x6-s7-k3-st2-p1-bias-f32-bwd_w-seed3",
    "conv_transpose2d-n2-c4x6-s5-k3-st2-p1-op1-g2-bias-f32-bwd_w-seed4",
    "conv_transpose1d-n1-c4x4-s5-k3-st2-bf16-bwd_d",
    "conv3d-n1-c2x3-s4-k2-f32-fint-bwd_w",
    "conv_transpose3d-n1-c2x2-s3-k2-st2-d2-bias-f32-bwd_d-seed5",
]


@pytest.mark.parametrize("name", ["numpy-ref", "mlx-cpu", "torch-cpu", "torch-cpu-cl", "jax-cpu"])
def test_backends_with_gradients_pass_backward_cases(name: str) -> None:
    (backend,) = resolve([name])
    if not backend.availability.available:
        pytest.skip(backend.availability.detail)
    runner = Runner([backend])
    for case_id in BACKWARD_CASES:
        (rec,) = runner.run_case(parse_id(case_id))
        assert rec.verdict == D.PASS, rec.summary()


def test_forward_only_backends_call_backward_cases_unsupported() -> None:
    (onnx,) = resolve(["onnxruntime-cpu"])
    case = parse_id(BACKWARD_CASES[0])
    assert unsupported(onnx, case) == "onnxruntime-cpu computes fwd only, not bwd_d"
    kernels = KernelsHost()
    assert unsupported(kernels, replace(case, direction="bwd_w")) is None
    assert unsupported(kernels, case) is None


def test_mlx_limitations_hold_in_every_direction() -> None:
    (mlx,) = resolve(["mlx-cpu"])
    if not mlx.availability.available:
        pytest.skip(mlx.availability.detail)
    for direction in DIRECTIONS:
        case = parse_id(f"conv3d-n1-c2x2-s3-k1-g2-bias-f32-{direction}".replace("-fwd", ""))
        (rec,) = Runner([mlx]).run_case(case)
        assert rec.verdict == D.UNSUPPORTED


@pytest.mark.parametrize("op", list(OPS))
def test_kernels_bwd_d_through_the_adjoint_op(op: str) -> None:
    """The input gradient from the forward bodies (conv <-> conv_transpose, regrouped weight)
    passes on drawn cases, and equals the adjoint op run by the reference."""
    kernels = KernelsHost()
    if not kernels.availability.available:
        pytest.skip(kernels.availability.detail)
    runner = Runner([kernels])
    cases = draw_cases(lambda pick: draw_valid_case(pick, op, directions=("bwd_d",)), 12, seed=3)
    for case in cases:
        assert case.direction == "bwd_d" and case.fill != "special"
        (rec,) = runner.run_case(case)
        assert rec.verdict in (D.PASS, D.UNSUPPORTED), rec.summary()
    case = cases[0]
    adj = adjoint(case)
    assert adj.case.transposed != case.transposed and adj.case.direction == "fwd"
    assert adj.case.in_channels == case.out_channels and adj.case.out_channels == case.in_channels


# --- known failures -----------------------------------------------------------------------------


def test_known_failure_globs_cover_one_direction(tmp_path) -> None:
    (tmp_path / "numpy-ref.toml").write_text(
        '[[failure]]\nmatch = "conv2d-*"\nverdict = "value-mismatch"\nreason = "forward"\n'
        '[[failure]]\nmatch = "conv2d-*"\ndirection = "bwd_w"\nverdict = "value-mismatch"\n'
        'reason = "weight gradient"\n'
        '[[failure]]\nmatch = "conv1d-*"\ndirection = "bwd"\nverdict = "value-mismatch"\n'
        'reason = "both gradients"\n'
    )
    fwd, bwd_w, both = KnownFailures.load(tmp_path).entries
    assert fwd.covers("conv2d-n1-c1x1-s3-k1-f32") and not fwd.covers(
        "conv2d-n1-c1x1-s3-k1-f32-bwd_w"
    )
    assert bwd_w.covers("conv2d-n1-c1x1-s3-k1-f32-bwd_w-seed2")
    assert not bwd_w.covers("conv2d-n1-c1x1-s3-k1-f32-bwd_d")
    assert both.covers("conv1d-n1-c1x1-s3-k1-f32-bwd_d") and not both.covers(
        "conv1d-n1-c1x1-s3-k1-f32"
    )
    assert "direction bwd_w" in bwd_w.rule
    (tmp_path / "numpy-ref.toml").write_text(
        '[[failure]]\nmatch = "conv2d-*"\ndirection = "bwd_x"\nverdict = "value-mismatch"\n'
        'reason = "r"\n'
    )
    with pytest.raises(ValueError, match="'direction' must be one of fwd, bwd_d, bwd_w, bwd"):
        KnownFailures.load(tmp_path)
    (tmp_path / "numpy-ref.toml").write_text(
        '[[failure]]\ncase = "conv2d-n1-c1x1-s3-k1-f32"\ndirection = "bwd_d"\nreason = "r"\n'
    )
    with pytest.raises(ValueError, match="an exact 'case' id carries its own"):
        KnownFailures.load(tmp_path)


# --- generation ---------------------------------------------------------------------------------


def test_the_direction_is_the_last_draw_of_a_case() -> None:
    """Directions are drawn last, and only where there is a choice: from the same stream, a
    case with directions has the fields of the forward-only case (which draws what it drew
    before directions existed); forward in about half, each gradient in a quarter. (A transposed
    op: a forward op draws its padding mode after the direction.)"""
    drawn = []
    for seed in range(300):
        fwd = draw_valid_case(SeededDraw(seed), "conv_transpose2d")
        mixed = draw_valid_case(SeededDraw(seed), "conv_transpose2d", directions=DIRECTIONS)
        assert fwd.direction == "fwd" and replace(mixed, direction="fwd") == fwd
        drawn.append(mixed)
    counts = {d: sum(c.direction == d for c in drawn) for d in DIRECTIONS}
    assert 110 < counts["fwd"] < 190 and min(counts.values()) > 45, counts
    assert all(c.direction == "fwd" for c in drawn if c.fill == "special")
    mixed = generated_cases(valid_per_op=10, invalid_per_op=3, seed=5, directions=DIRECTIONS)
    assert all(c.direction == "fwd" for c in mixed[10:13])  # invalid cases are forward


def test_backward_only_generation_draws_no_special_fill() -> None:
    cases = generated_cases(valid_per_op=40, invalid_per_op=0, seed=5, directions=("bwd_d",))
    assert {c.direction for c in cases} == {"bwd_d"}
    assert not any(c.fill == "special" for c in cases)


def test_inputs_of_a_backward_case_reach_an_isolated_backend() -> None:
    """The cotangent travels to the worker with the other inputs; same verdicts as here."""
    from conformance.isolation import IsolatedBackend

    case = parse_id("conv_transpose1d-n2-c2x4-s3-k2-st2-op1-g2-bias-f16-bwd_w")
    iso = IsolatedBackend(NumpyReference())
    try:
        here = Runner([NumpyReference()]).run_case(case)
        there = Runner([iso]).run_case(case)
        assert [r.verdict for r in there] == [r.verdict for r in here] == [D.PASS]
        assert there[0].metrics.max_abs_error == here[0].metrics.max_abs_error
    finally:
        iso.close()


def test_inputs_class_keeps_positional_construction() -> None:
    x = np.zeros((1, 3, 1), np.float32)
    inputs = Inputs(x, x, None)
    assert inputs.dy is None
