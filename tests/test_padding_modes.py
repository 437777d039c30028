"""``padding='same'`` / ``'valid'``: the case field, its numbers, the reference, the adapters
that pass the strings, and a planted off-by-one the harness must catch."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conformance import diff as D
from conformance.backends.base import unsupported
from conformance.backends.mlx_backend import MLXBackend
from conformance.backends.onnxruntime_backend import node_attributes
from conformance.backends.torch_backend import TorchBackend
from conformance.case import Case, parse_id
from conformance.cli import main
from conformance.inputs import make_inputs, reference_output
from conformance.runner import Runner
from kernels.backends import KernelsHost
from reference.params import mode_padding
from tests.planted import SameLower


@pytest.mark.parametrize(
    ("spatial", "kernel", "stride", "dilation", "lo", "hi"),
    [
        ((5,), (3,), (1,), (1,), (1,), (1,)),  # odd kernel: even split
        ((5,), (4,), (1,), (1,), (1,), (2,)),  # even kernel: the odd one at the end
        ((7,), (2,), (1,), (3,), (1,), (2,)),  # extent d(K-1)+1 = 4
        ((6,), (3,), (2,), (1,), (0,), (1,)),  # 3 outputs: (3-1)*2 + 3 - 6 = 1
        ((9,), (4,), (2,), (1,), (1,), (2,)),  # 5 outputs: 8 + 4 - 9 = 3
        ((2,), (1,), (4,), (1,), (0,), (0,)),  # 1 output, needs none
    ],
)
def test_same_padding_numbers(spatial, kernel, stride, dilation, lo, hi):
    assert mode_padding("same", spatial, kernel, stride, dilation) == (lo, hi)
    case = Case(
        "conv1d", 1, 1, 1, spatial, kernel, stride=stride, dilation=dilation, padding_mode="same"
    )
    assert (case.padding, case.padding_hi) == (lo, hi)
    assert case.output_spatial() == (-(-spatial[0] // stride[0]),)


def test_valid_is_no_padding_and_mode_rules():
    case = Case("conv2d", 1, 2, 2, (6, 5), (3, 2), padding_mode="valid")
    assert case.padding == (0, 0) and case.output_spatial() == (4, 4)
    with pytest.raises(ValueError, match="padding_mode 'same' applies to conv1d/2d/3d only"):
        Case("conv_transpose2d", 1, 2, 2, (6, 5), (3, 2), padding_mode="same")
    with pytest.raises(ValueError, match="padding_mode 'same' applies to conv1d/2d/3d only"):
        Case("conv_general1d", 1, 2, 2, (6,), (3,), padding_mode="same")
    with pytest.raises(ValueError, match="Case.padding_mode must be one of explicit, same, valid"):
        Case("conv1d", 1, 2, 2, (6,), (3,), padding_mode="full")
    with pytest.raises(ValueError, match="mode must be 'same' or 'valid'"):
        mode_padding("explicit", (5,), (3,), (1,), (1,))


def test_ids_round_trip_and_sizes_rederive_the_padding():
    case = parse_id("conv2d-n2-c3x4-s7x6-k2x3-st1x2-psame-d3x1-bias-f16-bwd_w")
    assert case.padding_mode == "same"
    assert (case.padding, case.padding_hi) == ((1, 0), (2, 1))
    assert case.id == "conv2d-n2-c3x4-s7x6-k2x3-st1x2-psame-d3x1-bias-f16-bwd_w"
    assert Case.from_dict(case.to_dict()) == case
    assert case.params()["padding_hi"] == (2, 1)
    assert case.api_params() == {
        "stride": (1, 2),
        "padding": "same",
        "dilation": (3, 1),
        "groups": 1,
    }
    # replace() of a size keeps the mode's meaning: the padding follows.
    grown = replace(case, kernel=(3, 3))
    assert (grown.padding, grown.padding_hi) == ((3, 0), (3, 1))
    assert parse_id("conv1d-n1-c1x1-s5-k3-pvalid-f32").api_params()["padding"] == "valid"
    with pytest.raises(ValueError, match="field 'p' given twice"):
        parse_id("conv1d-n1-c1x1-s5-k3-p1-psame-f32")


@pytest.mark.parametrize(
    "case_id",
    [
        "conv1d-n2-c3x4-s9-k4-psame-d2-bias-f32",
        "conv2d-n1-c2x3-s6x7-k2x3-psame-g1-f32",
        "conv3d-n1-c2x2-s4x5x3-k2-psame-bias-f32",
        "conv2d-n2-c2x3-s6x7-k2x3-pvalid-d2x1-f32",
    ],
)
def test_reference_matches_torch_float64_string_padding(case_id):
    case = parse_id(case_id)
    inputs = make_inputs(case)
    want = torch_forward(case, inputs.x, inputs.w, inputs.bias)
    got = reference_output(case, inputs.x, inputs.w, inputs.bias, with_bound=False)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def torch_forward(case: Case, x, w, b):
    xt = torch.from_numpy(np.moveaxis(x.astype(np.float64), -1, 1).copy())
    wt = torch.from_numpy(np.moveaxis(w.astype(np.float64), -1, 1).copy())
    bt = None if b is None else torch.from_numpy(b.astype(np.float64))
    with warnings.catch_warnings():  # even kernels pad a copy: what is checked
        warnings.simplefilter("ignore", UserWarning)
        y = getattr(F, case.op)(xt, wt, bt, **case.api_params())
    return np.moveaxis(y.numpy(), 1, -1)


def test_backends_that_take_no_strings_say_so():
    case = parse_id("conv2d-n1-c2x2-s5-k3-psame-f32")
    assert "integer padding only" in unsupported(MLXBackend("cpu"), case)
    assert "explicit symmetric padding" in unsupported(KernelsHost(), case)
    strided = parse_id("conv2d-n1-c2x2-s5-k3-st2-psame-f32")
    assert "stride 1 only" in unsupported(TorchBackend("cpu"), strided)
    assert unsupported(TorchBackend("cpu"), case) is None
    assert unsupported(TorchBackend("cpu"), parse_id("conv2d-n1-c2x2-s5-k3-st2-pvalid-f32")) is None


def test_onnx_gets_auto_pad_instead_of_pads():
    same = node_attributes(parse_id("conv2d-n1-c2x2-s5-k4-psame-f32"))
    assert same["auto_pad"] == "SAME_UPPER" and "pads" not in same
    assert node_attributes(parse_id("conv2d-n1-c2x2-s5-k4-pvalid-f32"))["auto_pad"] == "VALID"
    assert "auto_pad" not in node_attributes(parse_id("conv2d-n1-c2x2-s5-k4-p1-f32"))


@pytest.mark.parametrize(
    ("case_id", "verdict"),
    [
        ("conv1d-n1-c2x2-s6-k3-psame-f32", D.PASS),  # odd kernel: both ends the same
        ("conv1d-n1-c2x2-s6-k4-psame-f32", D.VALUE_MISMATCH),
        ("conv2d-n1-c2x2-s5-k3x2-psame-f32", D.VALUE_MISMATCH),
        ("conv1d-n1-c2x2-s6-k4-pvalid-f32", D.PASS),
        ("conv1d-n1-c2x2-s6-k4-p1-f32", D.PASS),
    ],
)
def test_the_planted_same_lower_bug_shows_on_even_kernels_only(case_id, verdict):
    (record,) = Runner([SameLower()]).run_case(parse_id(case_id))
    assert record.verdict == verdict


def test_a_run_catches_same_lower_and_only_on_same_cases(tmp_path):
    out = tmp_path / "r.json"
    code = main(
        [
            "run",
            "--plugin",
            "tests.planted:SameLower",
            "--backends",
            "planted-same-lower",
            "--ops",
            "conv1d,conv2d",
            "--dirs",
            "fwd",
            "--layouts",
            "contiguous",
            "--max-examples",
            "40",
            "--invalid-examples",
            "0",
            "--no-corpus",
            "--json",
            str(out),
        ]
    )
    assert code == 1
    records = json.loads(out.read_text())["records"]
    failed = [r["case_id"] for r in records if r["verdict"] not in ("pass", "unsupported")]
    assert failed and all("-psame-" in cid for cid in failed)
    same = [r for r in records if "-psame-" in r["case_id"]]
    assert len(failed) < len(same)  # odd kernel extents pass
