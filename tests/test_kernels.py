"""The convcheck kernels (issue 4): the host dialect against the float64 reference, the CUDA
dialect through nvcc, the GPU launch plumbing as far as a machine without a GPU can check it,
and up-front rejection of what the kernels do not do."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.case import OPS, Case
from conformance.diff import PASS, compare
from conformance.dtypes import DTYPES, round_to
from conformance.inputs import make_inputs, run_reference
from conformance.strategies import invalid_cases, valid_cases
from kernels import check_cuda, plan, source
from kernels.backends import BACKENDS, KernelsCuda, KernelsHost, KernelsMetal

HOST = KernelsHost()
needs_host = pytest.mark.skipif(
    not HOST.availability.available, reason=f"kernels-host: {HOST.availability.detail}"
)

SETTINGS = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


#: Groups in 3-D (which upstream MLX rejects), with bias, every parameter non-trivial: the
#: named cases of every direction start with them (tests/test_kernels_backward.py too).
GROUPED_3D = [
    Case(
        "conv_transpose3d",
        2,
        6,
        9,
        (3, 4, 2),
        (3, 2, 2),
        stride=(2, 1, 3),
        padding=(1, 0, 1),
        dilation=(1, 2, 1),
        output_padding=(1, 1, 0),
        groups=3,
        bias=True,
    ),
    Case(
        "conv3d",
        2,
        6,
        4,
        (5, 6, 4),
        (3, 2, 2),
        stride=(2, 1, 1),
        padding=(1, 0, 1),
        dilation=(1, 2, 1),
        groups=2,
        bias=True,
    ),
]


def _conforms(case: Case) -> None:
    assert HOST.unsupported_reason(case) is None, case.id
    inputs = make_inputs(case)
    ref = run_reference(case, inputs)
    got = HOST.run(case, inputs)
    assert got.dtype == np.float32
    d = compare(case, got, ref)
    assert d.verdict == PASS, f"{case.id}: {d.verdict}: {d.detail}\n{d.metrics}"


# --- host dialect against the reference ---------------------------------------------------------


@needs_host
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(OPS))
@SETTINGS
@given(data=st.data())
def test_host_matches_reference(op: str, dtype: str, data: st.DataObject) -> None:
    _conforms(data.draw(valid_cases(op, dtypes=(dtype,), padding_modes=False), label="case"))


@needs_host
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "case",
    [
        *GROUPED_3D,
        # Depthwise, larger channel counts, a longer reduction.
        Case("conv2d", 1, 16, 16, (9, 8), (3, 3), padding=1, groups=16, bias=True),
        Case(
            "conv_transpose2d",
            1,
            32,
            24,
            (5, 4),
            (3, 3),
            stride=2,
            padding=1,
            output_padding=1,
            bias=True,
        ),
        Case("conv1d", 2, 64, 8, (40,), (5,), stride=3, dilation=2, padding=2),
    ],
    ids=lambda c: c.id,
)
def test_host_named_cases(case: Case, dtype: str) -> None:
    _conforms(replace(case, dtype=dtype))


# --- tiles: output channels per thread -----------------------------------------------------------


def _host_run_with_tile(case: Case, inputs, tile: int) -> np.ndarray:
    from kernels import host

    p = plan.make_plan(
        case,
        inputs.x.shape,
        inputs.w.shape,
        None if inputs.bias is None else inputs.bias.shape,
        tile=tile,
    )
    return host.run(p, case.dtype, inputs.x, inputs.w, inputs.bias)


@needs_host
@pytest.mark.parametrize("op", list(OPS))
@SETTINGS
@given(data=st.data())
def test_every_tile_gives_the_same_bits(op: str, data: st.DataObject) -> None:
    """A thread's channels are summed in the same order whatever the tile, so every tile size
    gives bit-identical outputs, partial last tiles (channels per group not a multiple of the
    tile) included; and the chooser's pick passes against the reference."""
    case = data.draw(valid_cases(op, padding_modes=False), label="case")
    inputs = make_inputs(case)
    outs = {tile: _host_run_with_tile(case, inputs, tile) for tile in source.TILES}
    for tile, out in outs.items():
        np.testing.assert_array_equal(out, outs[1], err_msg=f"{case.id}, tile {tile}")
    _conforms(case)


@pytest.mark.parametrize(
    ("cout_g", "tile"),
    [(0, 1), (1, 1), (3, 1), (4, 4), (7, 4), (8, 8), (16, 16), (31, 16), (32, 32), (512, 32)],
)
def test_tile_choice(cout_g: int, tile: int) -> None:
    assert plan.choose_tile(cout_g, "cuda") == tile
    assert plan.choose_tile(cout_g, "host") == min(tile, 4)
    with pytest.raises(ValueError, match="dialect must be one of"):
        plan.choose_tile(cout_g, "vulkan")


def test_threads_cover_partial_tiles() -> None:
    """9 output channels in 3 groups of 3 with tile 4: one partial tile per group."""
    case = Case("conv2d", 2, 6, 9, (5, 4), (3, 3), groups=3)
    p = plan.make_plan(case, case.x_shape, case.w_shape, None, tile=4)
    assert p.out_shape == (2, 3, 2, 9)
    assert p.threads == 2 * 3 * 2 * 3 * 1
    with pytest.raises(ValueError, match="tile must be one of"):
        plan.make_plan(case, case.x_shape, case.w_shape, None, tile=3)


UNIT_TAP = [
    Case("conv_transpose1d", 2, 4, 6, (7,), (3,), stride=3, output_padding=2, bias=True),
    Case("conv_transpose2d", 1, 6, 4, (4, 5), (2, 2), stride=2, output_padding=1, groups=2),
    Case("conv_transpose3d", 1, 4, 8, (2, 3, 2), (2, 1, 3), stride=(2, 1, 3), groups=4, bias=True),
]


@needs_host
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UNIT_TAP, ids=lambda c: c.id)
def test_stride_equals_kernel(case: Case, dtype: str) -> None:
    """The upsampling layers of real networks: each output element gets exactly one tap
    (k = o % stride), output padding adds positions with none."""
    _conforms(replace(case, dtype=dtype))


@needs_host
def test_empty_batch() -> None:
    case = Case("conv_transpose2d", 0, 4, 4, (5, 5), (2, 2), stride=2)
    inputs = make_inputs(case)
    got = HOST.run(case, inputs)
    assert got.shape == run_reference(case, inputs).out.shape == (0, 10, 10, 4)


@needs_host
def test_host_16bit_conversions() -> None:
    """The prelude's float16/bfloat16 loads are exact and its stores round to nearest even."""
    from kernels import host

    lib = host.load()
    bits = np.arange(2**16, dtype=np.uint16)
    for dtype, want in (
        ("float16", bits.view(np.float16).astype(np.float32)),
        ("bfloat16", (bits.astype(np.uint32) << 16).view(np.float32)),
    ):
        got = lib.from_bits(bits, dtype)
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan)
        assert np.array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])
    rng = np.random.default_rng(0)
    edges = np.array(
        [
            0.0,
            -0.0,
            65504,
            65519.99,
            65520,
            -65520,
            2.0**-24,
            2.0**-25,
            2.0**-25 * 1.0000001,
            3 * 2.0**-26,
            2.0**-14 * (1 - 2.0**-12),
            1 + 2.0**-11,
            1 + 3 * 2.0**-11,
            1 + 2.0**-8,
            1 + 3 * 2.0**-8,
            3.4e38,
            np.inf,
            -np.inf,
        ]
    )
    samples = [
        rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        edges.astype(np.float32),
    ]
    values = np.concatenate(samples)
    values = values[~np.isnan(values)]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(
            lib.to_bits(values, "float16"), values.astype(np.float16).view(np.uint16)
        )
    np.testing.assert_array_equal(
        lib.to_bits(values, "bfloat16"),
        (round_to(values, "bfloat16").view(np.uint32) >> 16).astype(np.uint16),
    )
    nan_bits = lib.to_bits(np.array([np.nan, -np.nan], np.float32), "float16")
    assert np.isnan(nan_bits.view(np.float16)).all()


# --- rejection ------------------------------------------------------------------------------------


@needs_host
@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=8, derandomize=True, deadline=None, database=None)
@given(data=st.data())
def test_invalid_cases_rejected(op: str, data: st.DataObject) -> None:
    """Invalid cases are not "unsupported": run raises the reference's ValueError (the runner
    records "both rejected"), before anything is launched."""
    case = data.draw(invalid_cases(op), label="case")
    rejected_as_by_the_reference(case, run_reference)


def rejected_as_by_the_reference(case: Case, reference) -> None:
    """Every kernels backend takes ``case`` (no ``unsupported`` reason) and rejects it with the
    ValueError that ``reference(case, inputs)`` raises, word for word."""
    inputs = make_inputs(case)
    with pytest.raises(ValueError) as ref_err:
        reference(case, inputs)
    for backend in BACKENDS:
        assert backend.unsupported_reason(case) is None
        with pytest.raises(ValueError) as err:
            backend.run(case, inputs)
        assert str(err.value) == str(ref_err.value)


@pytest.mark.parametrize(
    "case",
    [
        Case("conv_transpose3d", 1, 64, 64, (512, 512, 512), (2, 2, 2), stride=2),
        Case("conv2d", 1, 8, 8, (2**15, 2**15), (1, 1), stride=4),  # input too large
        Case("conv1d", 2**16, 8, 8, (2**13,), (1,)),  # output too large
    ],
    ids=lambda c: c.id,
)
def test_too_large_is_unsupported(case: Case) -> None:
    """Cases past 32-bit indexing are rejected up front, with a reason (no inputs are built)."""
    for backend in BACKENDS:
        reason = backend.unsupported_reason(case)
        assert reason is not None and "32-bit" in reason
    with pytest.raises(ValueError, match="32-bit"):
        plan.make_plan(case, case.x_shape, case.w_shape, None)


# --- the shared source and the GPU dialects ----------------------------------------------------


def test_backends_registered() -> None:
    assert [b.name for b in BACKENDS] == ["kernels-host", "kernels-cuda", "kernels-metal"]
    assert [type(b) for b in BACKENDS] == [KernelsHost, KernelsCuda, KernelsMetal]


def test_gpu_availability_is_honest() -> None:
    mx = pytest.importorskip("mlx.core")
    assert KernelsCuda().availability.available == bool(mx.cuda.is_available())
    assert KernelsMetal().availability.available == bool(mx.metal.is_available())


@pytest.mark.parametrize("op", source.OPS)
def test_one_body_every_dialect(op: str) -> None:
    """Every dialect's source holds the body verbatim, and only the thin prelude differs."""
    body = source.body(op)
    assert body in source.host_translation_unit()
    for tile in source.TILES:
        for dtype in DTYPES:
            assert body in source.cuda_translation_unit(op, dtype, tile)[1]
            assert body in source.metal_translation_unit(op, dtype, tile)[1]
    # MLX adds shape/stride/ndim arguments only for names the source mentions: none here, which
    # is what cuda_translation_unit/metal_translation_unit assume.
    for dialect in ("cuda", "metal"):
        src = source.kernel_source(dialect, op, 4)
        for name in source.input_names(op):
            assert not re.search(rf"\b{name}_(shape|strides|ndim)\b", src)
    assert "thread_position_in_grid" in source.kernel_source("metal", op, 1)


def test_metal_source_as_mlx_assembles_it(capfd: pytest.CaptureFixture[str], tmp_path) -> None:
    """Without Metal, MLX can still trace a metal_kernel call for export; with verbose=True it
    prints the Metal source it assembles. Check our call is accepted and that source holds our
    header, the entry line, the body and the thread-position attribute."""
    mx = pytest.importorskip("mlx.core")
    if mx.metal.is_available():
        pytest.skip("Metal is available: the kernels-metal backend runs for real instead")
    from kernels import mlx_launch

    case = Case("conv_transpose2d", 1, 4, 4, (5, 5), (2, 2), stride=2, dtype="float16")
    inputs = make_inputs(case)
    p = plan.make_plan(case, inputs.x.shape, inputs.w.shape, None)
    dt = mx.float16

    def call(x, w, b, prm):
        return mlx_launch.kernel("metal", p.op, p.tile)(
            inputs=[x, w, b, prm],
            template=[("T", dt)],
            grid=(p.threads, 1, 1),
            threadgroup=(mlx_launch.THREADGROUP, 1, 1),
            output_shapes=[p.out_shape],
            output_dtypes=[dt],
            verbose=True,
        )

    args = [
        mx.array(inputs.x).astype(dt),
        mx.array(inputs.w).astype(dt),
        mx.zeros((1,), dtype=dt),
        mx.array(p.params),
    ]
    try:
        mx.export_function(str(tmp_path / "k.mlxfn"), call, *args)
    except Exception as exc:  # an MLX without export tracing of custom kernels
        pytest.skip(f"MLX cannot trace metal_kernel here: {exc}")
    printed = capfd.readouterr().out
    assert source.header("metal") in printed
    assert source.kernel_source("metal", p.op, p.tile) in printed
    assert "uint3 thread_position_in_grid [[thread_position_in_grid]]" in printed
    # Our reading of MLX's assembly (for review) matches what it printed.
    name, ours = source.metal_translation_unit(p.op, "float16", p.tile, has_bias=False)
    assert ours.strip() in printed, "MLX assembles Metal kernels differently now"
    assert name in printed


def test_gpu_launch_without_gpu_raises() -> None:
    """No CUDA/Metal here: the launch path fails with MLX's "no back-end" error, not a crash or
    a TypeError from our call."""
    mx = pytest.importorskip("mlx.core")
    from kernels import mlx_launch

    case = Case("conv2d", 1, 2, 2, (4, 4), (3, 3), bias=True)
    inputs = make_inputs(case)
    p = plan.make_plan(case, inputs.x.shape, inputs.w.shape, inputs.bias.shape)
    for dialect, available in (
        ("cuda", mx.cuda.is_available()),
        ("metal", mx.metal.is_available()),
    ):
        if available:
            continue
        with pytest.raises(RuntimeError, match="back-end"):
            mlx_launch.run(dialect, p, "float32", inputs.x, inputs.w, inputs.bias)


def test_cuda_dialect_compiles_with_nvcc() -> None:
    """nvcc -arch=sm_90 -c on every (kernel, tile, dtype) translation unit as MLX assembles it."""
    if check_cuda.nvcc() is None:
        pytest.skip("nvcc not found: the CUDA dialect is not compile-checked on this machine")
    results = check_cuda.check()
    assert len(results) == len(source.OPS) * len(source.TILES) * len(DTYPES)
    failed = [
        f"{r.kernel}/{r.dtype}: {' '.join(r.command)}\n{r.output}" for r in results if not r.ok
    ]
    assert not failed, "\n\n".join(failed)
