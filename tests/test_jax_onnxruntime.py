"""The JAX and ONNX Runtime adapters: their layout translation, the op spelling each library
needs, and the way they report what they cannot run.

The conformance tests (conformance/test_conformance.py) already run every op on both backends;
these pin the pieces a conformance failure would be hard to trace back to: the transposed
conv's two JAX spellings, the output padding JAX has no parameter for, ONNX's pads order and
the casts of the bfloat16 model.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.backends.base import LayoutError
from conformance.case import Case, parse_id
from conformance.inputs import make_inputs, run_reference
from conformance.runner import Runner

jax = pytest.importorskip("jax")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conformance.backends import jax_backend as J  # noqa: E402
from conformance.backends import onnxruntime_backend as O  # noqa: E402

#: Transposed cases through both JAX spellings (groups 1: lax.conv_transpose; groups > 1:
#: conv_general_dilated over the dilated input), with output padding, dilation, padding past the
#: dilated kernel (negative pads crop) and 1-D/2-D/3-D.
TRANSPOSED = [
    "conv_transpose1d-n2-c3x4-s5-k3-st2-p1-op1-bias-f32",
    "conv_transpose1d-n1-c4x6-s5-k3-st2-p1-op1-g2-f32",
    "conv_transpose1d-n1-c2x2-s6-k2-st2-p2-f32",
    "conv_transpose1d-n1-c2x4-s6-k2-st2-p2-g2-f32",
    "conv_transpose2d-n1-c3x2-s4x5-k3x2-st2x3-p1x0-d2x1-op1x2-f32",
    "conv_transpose2d-n2-c6x3-s4-k3-st3-p2-d2-op2-g3-bias-f32",
    "conv_transpose3d-n1-c2x3-s3x2x3-k2x3x2-st2x1x2-p1x0x1-op1x0x1-f32",
    "conv_transpose3d-n1-c4x2-s2x3x2-k2-st2-d2-op1-g2-bias-f32",
]
FORWARD = [
    "conv1d-n2-c3x4-s9-k3-st2-p2-d2-bias-f32",
    "conv2d-n1-c4x6-s7x6-k3x2-st2x1-p1x0-d1x2-g2-f32",
    "conv3d-n1-c3x3-s5x4x4-k2x3x2-st1x2x1-p1-g3-bias-f32",
]


def _backend(name: str):
    (backend,) = resolve([name])
    if not backend.availability.available:
        pytest.skip(f"{name}: {backend.availability.detail}")
    return backend


@pytest.mark.parametrize("case_id", FORWARD + TRANSPOSED)
@pytest.mark.parametrize("name", ["jax-cpu", "onnxruntime-cpu"])
def test_adapter_agrees_with_the_reference(name, case_id):
    """float32 outputs within the bound (a layout or padding slip is off by O(1), far past it)."""
    case = parse_id(case_id)
    inputs = make_inputs(case)
    got = _backend(name).run(case, inputs)
    result = D.compare(case, got, run_reference(case, inputs), D.Tolerance())
    assert result.verdict == D.PASS, result.detail


def test_jax_dimension_numbers_read_our_layout_as_it_is():
    case = parse_id("conv2d-n1-c2x3-s4-k3-f32")
    assert J.dimension_numbers(case) == ("NHWC", "OHWI", "NHWC")
    t = parse_id("conv_transpose3d-n1-c2x3-s4-k3-f32")
    # transpose_kernel swaps I and O: our (C_out, *K, C_in) is the forward conv's (I, *K, O).
    assert J.dimension_numbers(t, transpose_kernel=True) == ("NDHWC", "IDHWO", "NDHWC")


def test_jax_transposed_paddings():
    case = parse_id("conv_transpose2d-n1-c2x2-s4-k3x2-st2x3-p1x3-d2x1-op1x2-f32")
    # lax.conv_transpose(use_consistent_padding=True) takes the forward conv's pads.
    assert J.transposed_padding(case) == [(1, 0), (3, 1)]
    # conv_general_dilated pads the dilated input by d*(k-1)-p, plus output padding on the high
    # side; the second axis (p=3 > d*(k-1)=1) crops.
    assert J.dilated_input_padding(case) == [(3, 4), (-2, 0)]


@pytest.mark.parametrize(
    "case_id, axis",
    [
        ("conv_transpose1d-n1-c1x1-s3-k3-st2-op2-f32", 0),  # op == stride, dilation 1
        ("conv_transpose2d-n1-c2x2-s3-k2-st2x3-d1x2-op0x3-g2-f32", 1),  # op == max(st, d)
    ],
)
def test_jax_refuses_output_padding_it_cannot_check(case_id, axis):
    """JAX has no output_padding; the adapter refuses an invalid one (both spellings), naming the
    parameter and the rule, instead of padding the output silently."""
    with pytest.raises(LayoutError, match=rf"output_padding \(\d+ on axis {axis}\) must be"):
        _backend("jax-cpu").run(parse_id(case_id), make_inputs(parse_id(case_id)))


def test_jax_output_padding_below_dilation_is_valid():
    """output_padding may reach max(stride, dilation) - 1 even above the stride (PyTorch's rule)."""
    case = parse_id("conv_transpose1d-n1-c1x1-s3-k2-d3-op2-f32")
    got = _backend("jax-cpu").run(case, make_inputs(case))
    assert got.shape == (1, 8, 1)


def test_onnx_attributes_spell_pads_as_begins_then_ends():
    case = parse_id("conv_transpose2d-n1-c2x2-s4-k3x2-st2x3-p1x2-d2x1-op1x2-g2-f32")
    assert O.node_attributes(case) == {
        "kernel_shape": [3, 2],
        "strides": [2, 3],
        "pads": [1, 2, 1, 2],
        "dilations": [2, 1],
        "group": 2,
        "output_padding": [1, 2],
    }
    assert "output_padding" not in O.node_attributes(parse_id("conv2d-n1-c2x2-s4-k3-f32"))


@pytest.mark.parametrize(
    "dtype, ops, io",
    [
        ("float32", ["Conv"], np.float32),
        ("float16", ["Conv"], np.float16),
        # bfloat16 enters and leaves as float32, cast in the graph.
        ("bfloat16", ["Cast", "Conv", "Cast"], np.float32),
    ],
)
def test_onnx_model_is_one_node_in_the_case_dtype(dtype, ops, io):
    case = Case("conv2d", 1, 2, 3, (4, 4), (3, 3), bias=True, dtype=dtype)
    inputs = make_inputs(case)
    model = O.build_model(case, np.ones((3, 2, 3, 3), np.float32), inputs.bias)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ops
    assert [i.name for i in model.graph.initializer] == ["W", "B"]
    assert O.io_dtype(dtype) == np.dtype(io)


def test_onnxruntime_without_a_kernel_is_unsupported_with_its_message():
    """ONNX Runtime's CPU provider (the pinned 1.32) has no bfloat16 Conv: the case is
    unsupported, with ONNX Runtime's own words, and float32 is not."""
    backend = _backend("onnxruntime-cpu")
    bf16 = parse_id("conv2d-n1-c2x2-s4-k3-bf16")
    reason = backend.unsupported_reason(bf16)
    assert reason is not None and "bfloat16 Conv" in reason and "NOT_IMPLEMENTED" in reason
    assert backend.unsupported_reason(parse_id("conv2d-n1-c2x2-s4-k3-f32")) is None
    (rec,) = Runner([backend]).run_case(bf16)
    assert rec.verdict == D.UNSUPPORTED


@pytest.mark.parametrize("name", ["jax-cpu", "onnxruntime-cpu"])
def test_invalid_case_is_rejected_by_the_library(name):
    """Stride 0 reaches the library, which raises its own error: both-rejected."""
    case = parse_id("conv2d-n1-c1x1-s5-k3-st0-f32")
    (rec,) = Runner([_backend(name)]).run_case(case)
    assert rec.verdict == D.BOTH_REJECTED
    assert "stride" in rec.error_message.lower()


def test_unavailable_devices_say_why():
    """No GPU here: the CUDA variants are listed as not available, with the library's reason."""
    for name in ("jax-cuda", "onnxruntime-cuda"):
        (backend,) = resolve([name])
        if backend.availability.available:
            continue
        assert "cuda" in backend.availability.detail.lower()
