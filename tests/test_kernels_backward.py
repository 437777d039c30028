"""The convcheck kernels' weight and bias gradients (``bwd_w``): one body, ``conv_weight_grad``,
for every op (conv directly, conv_transpose through its adjoint convolution, the bias as the
weight gradient of a 1x1 convolution of ones), judged as the runner judges them
(:mod:`conformance.directions`), and its plumbing in every dialect."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import diff as D
from conformance import profiles  # noqa: F401 (registers the "ci" profile)
from conformance.case import OPS, Case, parse_id
from conformance.directions import adjoint, expected, judge, output_names
from conformance.dtypes import DTYPES
from conformance.generate import generated_cases
from conformance.inputs import make_inputs
from conformance.runner import Runner
from conformance.strategies import invalid_cases, valid_cases
from kernels import plan, source
from kernels.backends import BACKENDS, KernelsHost
from tests.test_kernels import GROUPED_3D, rejected_as_by_the_reference

HOST = KernelsHost()
needs_host = pytest.mark.skipif(
    not HOST.availability.available, reason=f"kernels-host: {HOST.availability.detail}"
)

#: The ``ci`` profile (deterministic, bounded) whatever profile pytest loaded.
CI = settings(settings.get_profile("ci"))


def _judged(case: Case) -> D.Diff:
    """The verdict on kernels-host's ``bwd_w`` outputs for ``case``, as the runner gives it."""
    assert case.direction == "bwd_w"
    assert HOST.unsupported_reason(case) is None, case.id
    inputs = make_inputs(case)
    want = expected(case, inputs)
    got = HOST.run(case, inputs)
    outputs = got if isinstance(got, tuple) else (got,)
    assert len(outputs) == len(output_names(case))
    assert all(o.dtype == np.float32 for o in outputs)
    return judge(case, got, want)


def _passes(case: Case) -> None:
    d = _judged(case)
    assert d.verdict == D.PASS, f"{case.id}: {d.verdict}: {d.detail}\n{d.metrics}"


# --- the host dialect against the reference -------------------------------------------------------


@needs_host
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(OPS))
@CI
@given(data=st.data())
def test_host_bwd_w_matches_reference(op: str, dtype: str, data: st.DataObject) -> None:
    _passes(
        data.draw(
            valid_cases(op, dtypes=(dtype,), directions=("bwd_w",), padding_modes=False),
            label="case",
        )
    )


@needs_host
def test_host_passes_the_generated_bwd_w_cases() -> None:
    """The CLI's generator (``run --dirs bwd_w``, default seed): every case passes through the
    one runner, but for the padding-mode cases (``psame``/``pvalid``), which the kernels, taking
    explicit numbers only, report unsupported."""
    cases = generated_cases(valid_per_op=15, invalid_per_op=0, seed=0, directions=("bwd_w",))
    assert {c.direction for c in cases} == {"bwd_w"} and len(cases) == 15 * len(OPS)
    assert any(c.bias for c in cases) and any(c.groups > 1 for c in cases)
    runner = Runner([HOST])
    passed = 0
    for case in cases:
        (rec,) = runner.run_case(case)
        assert rec.verdict == D.PASS or (case.moded and rec.verdict == D.UNSUPPORTED), rec.summary()
        passed += rec.verdict == D.PASS
    assert passed >= 12 * len(OPS)  # the modes are a quarter or less of the forward ops' cases


NAMED = [
    *GROUPED_3D,
    # Depthwise; full tiles of 4 channels (the 4-wide loads of dy).
    Case("conv2d", 2, 16, 16, (9, 8), (3, 3), padding=1, groups=16, bias=True),
    Case("conv2d", 2, 8, 16, (7, 6), (3, 2), stride=2, padding=1, bias=True),
    # Output padding >= stride (dilation > stride): the adjoint convolution's output is longer
    # than the transposed op's input, so dy (there: x) has fewer positions than it.
    Case("conv_transpose1d", 2, 4, 6, (4,), (3,), dilation=2, output_padding=1, bias=True),
    # Padding wider than the kernel's reach: taps that land nowhere get a zero gradient.
    Case("conv1d", 2, 3, 5, (4,), (2,), padding=3, bias=True),
    # Stride == kernel (upsampling): one tap per output element.
    Case("conv_transpose2d", 1, 6, 4, (4, 5), (2, 2), stride=2, output_padding=1, groups=2),
    # A long reduction: many positions and samples per weight element.
    Case("conv1d", 4, 8, 8, (200,), (5,), stride=1, padding=2, bias=True),
]


@needs_host
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", NAMED, ids=lambda c: c.id)
def test_host_bwd_w_named_cases(case: Case, dtype: str) -> None:
    _passes(replace(case, dtype=dtype, direction="bwd_w"))


@needs_host
@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_empty_batch_gives_zero_gradients(op: str) -> None:
    case = Case(op, 0, 4, 6, (5, 5), (2, 2), stride=2, bias=True, direction="bwd_w")
    inputs = make_inputs(case)
    dw, db = HOST.run(case, inputs)
    assert dw.shape == case.w_shape and db.shape == (6,)
    assert not dw.any() and not db.any()
    assert judge(case, (dw, db), expected(case, inputs)).verdict == D.PASS


@needs_host
@pytest.mark.parametrize("op", ["conv1d", "conv2d", "conv3d"])
@settings(max_examples=10, derandomize=True, deadline=None, database=None)
@given(data=st.data())
def test_every_tile_gives_the_same_bits(op: str, data: st.DataObject) -> None:
    """Each weight-gradient channel sums over n and positions in the same order whatever the
    tile (partial tiles and the 4-wide loads included), so every tile gives the same bits."""
    from kernels import host

    case = data.draw(valid_cases(op, directions=("bwd_w",), padding_modes=False), label="case")
    inputs = make_inputs(case)
    outs = {}
    for tile in source.TILES:
        p = plan.make_weight_grad_plan(case, inputs.x.shape, inputs.dy.shape, tile=tile)
        assert p.out_shape == case.w_shape and p.op == plan.WEIGHT_GRAD
        outs[tile] = host.run_weight_grad(p, case.dtype, inputs.x, inputs.dy)
    for tile, out in outs.items():
        np.testing.assert_array_equal(out, outs[1], err_msg=f"{case.id}, tile {tile}")


# --- planted bugs: the judge catches them ---------------------------------------------------------


@needs_host
def test_planted_bugs_fail() -> None:
    """A dropped bias gradient, one perturbed weight-gradient element, and a transposed op's
    gradient left in its adjoint's channel order (the regroup forgotten) all fail."""
    case = parse_id("conv_transpose2d-n2-c4x4-s5-k3-st2-p1-op1-bias-f32-bwd_w-seed4")
    inputs = make_inputs(case)
    want = expected(case, inputs)
    dw, db = HOST.run(case, inputs)
    assert judge(case, (dw, db), want).verdict == D.PASS

    dropped = judge(case, dw, want)
    assert dropped.verdict == D.SHAPE_MISMATCH and "expected 2" in dropped.detail

    off = dw.copy()
    off[1, 2, 0, 3] += 1e-2 * np.abs(dw).max()
    perturbed = judge(case, (off, db), want)
    assert perturbed.verdict == D.VALUE_MISMATCH and perturbed.detail.startswith("grad_weight")

    adj = adjoint(case)
    unregrouped = HOST._weight_grad(adj.case, inputs.dy, inputs.x)  # (C_in, *K, C_out/G)
    assert unregrouped.shape == dw.shape  # 4 channels, one group: only the values are wrong
    assert judge(case, (unregrouped, db), want).verdict == D.VALUE_MISMATCH

    bias_off = db.copy()
    bias_off[-1] += 1e-2 * np.abs(db).max()
    assert judge(case, (dw, bias_off), want).detail.startswith("grad_bias")


# --- the backends: directions, rejection ----------------------------------------------------------


def test_every_kernels_backend_computes_bwd_w() -> None:
    case = parse_id("conv_transpose2d-n2-c4x6-s5-k3-st2-p1-op1-g2-bias-f32-bwd_w-seed4")
    for backend in BACKENDS:
        assert backend.directions == ("fwd", "bwd_d", "bwd_w")
        assert backend.unsupported_reason(case) is None


@needs_host
@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=5, derandomize=True, deadline=None, database=None)
@given(data=st.data())
def test_invalid_bwd_w_cases_rejected(op: str, data: st.DataObject) -> None:
    """An invalid bwd_w case is rejected with the reference's own ValueError (as the forward op
    rejects it), before anything is launched."""
    case = data.draw(invalid_cases(op), label="case")
    case = replace(case, direction="bwd_w", fill="uniform")
    rejected_as_by_the_reference(case, expected)


def test_weight_grad_plan_checks_its_shapes() -> None:
    case = Case("conv2d", 2, 6, 4, (5, 6), (3, 2), stride=2, groups=2)
    p = plan.make_weight_grad_plan(case, case.x_shape, (2, 2, 3, 4), dialect="cuda")
    assert p.out_shape == (4, 3, 2, 3) and p.tile == 1  # 2 output channels per group
    assert p.threads == 3 * 2 * 3 * 2 * 2  # taps x input channels x groups x tiles per group
    slots = source.param_slots()
    assert list(p.params[slots["O"] : slots["O"] + 3]) == [1, 2, 3]
    with pytest.raises(ValueError, match="cotangent's shape"):
        plan.make_weight_grad_plan(case, case.x_shape, (2, 3, 3, 4))  # longer than the output
    with pytest.raises(ValueError, match="cotangent's shape"):
        plan.make_weight_grad_plan(case, case.x_shape, (2, 2, 3, 5))
    with pytest.raises(ValueError, match="plans a convolution"):
        plan.make_weight_grad_plan(replace(case, op="conv_transpose2d"), (2, 5, 6, 6), (2,) * 4)


# --- the body in every dialect --------------------------------------------------------------------


def test_weight_grad_body_in_every_dialect() -> None:
    """The body is pasted verbatim into every dialect, with its own inputs (x, dy, params); the
    CUDA dialect of every kernel is compiled by test_kernels.py::test_cuda_dialect_compiles_with_
    nvcc (kernels.check_cuda compiles every op in kernels.source.OPS)."""
    op = plan.WEIGHT_GRAD
    assert op in source.OPS
    assert source.input_names(op) == ("x", "dy", "params")
    body = source.body(op)
    tu = source.host_translation_unit()
    assert body in tu
    assert f"void {source.host_symbol(op, 'bfloat16', 8)}(const void* x, const void* dy," in tu
    for tile in source.TILES:
        for dtype in DTYPES:
            t = source.ELEMENT_TYPE["cuda"][dtype]
            cuda = source.cuda_translation_unit(op, dtype, tile)[1]
            assert body in cuda
            assert f"const {t}* x,\n    const {t}* dy,\n    const int32_t* params,\n" in cuda
            metal = source.metal_translation_unit(op, dtype, tile)[1]
            assert body in metal and "* dy [[buffer(1)]]" in metal
    for dialect in ("cuda", "metal"):
        src = source.kernel_source(dialect, op, 4)
        for name in source.input_names(op):
            assert not re.search(rf"\b{name}_(shape|strides|ndim)\b", src)


def test_metal_weight_grad_source_as_mlx_assembles_it(
    capfd: pytest.CaptureFixture[str], tmp_path
) -> None:
    """As test_kernels.py::test_metal_source_as_mlx_assembles_it, for the weight-gradient
    kernel's own signature (x, dy, params)."""
    mx = pytest.importorskip("mlx.core")
    if mx.metal.is_available():
        pytest.skip("Metal is available: the kernels-metal backend runs for real instead")
    from kernels import mlx_launch

    case = Case("conv2d", 2, 4, 8, (5, 5), (2, 2), dtype="bfloat16", direction="bwd_w")
    inputs = make_inputs(case)
    p = plan.make_weight_grad_plan(case, inputs.x.shape, inputs.dy.shape, dialect="metal")
    dt = mx.bfloat16

    def call(x, dy, prm):
        return mlx_launch.kernel("metal", p.op, p.tile)(
            inputs=[x, dy, prm],
            template=[("T", dt)],
            grid=(p.threads, 1, 1),
            threadgroup=(mlx_launch.THREADGROUP, 1, 1),
            output_shapes=[p.out_shape],
            output_dtypes=[dt],
            verbose=True,
        )

    args = [mx.array(inputs.x).astype(dt), mx.array(inputs.dy).astype(dt), mx.array(p.params)]
    try:
        mx.export_function(str(tmp_path / "k.mlxfn"), call, *args)
    except Exception as exc:  # an MLX without export tracing of custom kernels
        pytest.skip(f"MLX cannot trace metal_kernel here: {exc}")
    printed = capfd.readouterr().out
    name, ours = source.metal_translation_unit(p.op, "bfloat16", p.tile)
    assert ours.strip() in printed, "MLX assembles Metal kernels differently now"
    assert name in printed


def test_gpu_weight_grad_launch_without_gpu_raises() -> None:
    mx = pytest.importorskip("mlx.core")
    from kernels import mlx_launch

    case = Case("conv2d", 1, 2, 4, (4, 4), (3, 3), direction="bwd_w")
    inputs = make_inputs(case)
    p = plan.make_weight_grad_plan(case, inputs.x.shape, inputs.dy.shape)
    for dialect, available in (
        ("cuda", mx.cuda.is_available()),
        ("metal", mx.metal.is_available()),
    ):
        if available:
            continue
        with pytest.raises(RuntimeError, match="back-end"):
            mlx_launch.run_weight_grad(dialect, p, "float32", inputs.x, inputs.dy)
