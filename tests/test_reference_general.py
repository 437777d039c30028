"""The general forward convolution (MLX's ``conv_general``: low/high padding, input dilation,
kernel flip) checked against its definition spelled out with array operations it does not
share with the reference: zeros inserted between input elements, explicit zero padding, a
reversed kernel, then the literal cross-correlation of ``tests.test_reference``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.core import ConvResult
from reference.ops import run_op
from reference.params import GENERAL_OPS, general_output_shape
from tests.test_reference import assert_bound_sums, int_array, literal_conv, prop


def literal_general(
    x, w, bias, *, stride, padding, padding_hi, dilation, input_dilation, flip, groups
):
    """The definition: dilate the input with zeros, pad it, reverse the kernel if flipped, and
    cross-correlate with no padding."""
    nd = x.ndim - 2
    n, *size, c = x.shape
    dilated = np.zeros((n, *((s - 1) * i + 1 for s, i in zip(size, input_dilation)), c))
    dilated[(slice(None), *(slice(None, None, i) for i in input_dilation), slice(None))] = x
    padded = np.pad(dilated, [(0, 0), *zip(padding, padding_hi), (0, 0)])
    kernel = (
        w[(slice(None), *(slice(None, None, -1) for _ in range(nd)), slice(None))] if flip else w
    )
    return literal_conv(padded, kernel, bias, stride, (0,) * nd, dilation, groups)


@st.composite
def general_params(draw, nd: int) -> dict:
    kmax = {1: 4, 2: 3, 3: 2}[nd]
    groups = draw(st.integers(1, 2))
    dims = []
    for _ in range(nd):
        k, s, d = draw(st.integers(1, kmax)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        i, lo, hi = draw(st.integers(1, 3)), draw(st.integers(0, 2)), draw(st.integers(0, 3))
        # The dilated, padded input must hold the kernel's extent.
        need = max(1, -(-(d * (k - 1) + 1 - lo - hi - 1) // i) + 1)
        size = draw(st.integers(need, need + 2))
        dims.append((size, k, s, d, i, lo, hi))
    size, kernel, stride, dilation, in_dil, lo, hi = (tuple(v) for v in zip(*dims))
    return dict(
        batch=draw(st.integers(1, 2)),
        c_in=groups * draw(st.integers(1, 2)),
        c_out=groups * draw(st.integers(1, 2)),
        size=size,
        kernel=kernel,
        groups=groups,
        kw=dict(
            stride=stride,
            padding=lo,
            padding_hi=hi,
            dilation=dilation,
            input_dilation=in_dil,
            flip=draw(st.booleans()),
            groups=groups,
        ),
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.mark.parametrize("op", list(GENERAL_OPS))
@prop(40)
@given(data=st.data())
def test_general_matches_its_definition(op, data):
    nd = GENERAL_OPS[op][0]
    p = data.draw(general_params(nd))
    rng = np.random.default_rng(p["seed"])
    x = int_array(rng, (p["batch"], *p["size"], p["c_in"]))
    w = int_array(rng, (p["c_out"], *p["kernel"], p["c_in"] // p["groups"]))
    b = int_array(rng, (p["c_out"],)) if p["bias"] else None
    want, abs_sum, terms = literal_general(x, w, b, **p["kw"])
    res = run_op(op, nd, False, x, w, b, with_bound=True, **p["kw"])
    assert isinstance(res, ConvResult)
    np.testing.assert_array_equal(res.out, want)
    np.testing.assert_array_equal(run_op(op, nd, False, x, w, b, **p["kw"]), want)
    # The literal form also counts the taps that land on inserted zeros and padding; the
    # reference skips them: its sums are the same and its term counts at most the literal ones.
    assert np.all(res.terms <= terms)
    assert_bound_sums(res.abs_sum, abs_sum, terms)


def test_general_hand_example():
    """1-D, input [1, 2, 3] dilated by 2 to [1, 0, 2, 0, 3], padded (1, 2) to
    [0, 1, 0, 2, 0, 3, 0, 0], kernel [1, 10] flipped to [10, 1], stride 3."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    w = np.array([1.0, 10.0]).reshape(1, 2, 1)
    out = run_op(
        "conv_general1d",
        1,
        False,
        x,
        w,
        stride=3,
        padding=1,
        padding_hi=2,
        input_dilation=2,
        flip=True,
    )
    # windows at 0, 3, 6: [0, 1] -> 1, [2, 0] -> 20, [0, 0] -> 0
    np.testing.assert_array_equal(out.ravel(), [1.0, 20.0, 0.0])
    assert general_output_shape((3,), (2,), (3,), (1,), (2,), (1,), (2,)) == (3,)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(input_dilation=0), r"^conv_general1d: input_dilation must be >= 1, got 0$"),
        (dict(padding_hi=-1), r"^conv_general1d: padding_hi must be >= 0, got -1$"),
        (dict(flip=1), r"^conv_general1d: flip must be a bool, got 1$"),
        (dict(padding_hi=(1, 2)), r"padding_hi must have one entry per spatial dimension"),
    ],
)
def test_bad_general_parameters_name_the_rule(kw, match):
    x, w = np.ones((1, 4, 1)), np.ones((1, 2, 1))
    with pytest.raises(ValueError, match=match):
        run_op("conv_general1d", 1, False, x, w, **kw)


def test_transposed_ops_take_no_general_parameters():
    x, w = np.ones((1, 4, 1)), np.ones((1, 2, 1))
    with pytest.raises(ValueError, match="apply to forward convolution only"):
        run_op("conv_transpose1d", 1, True, x, w, input_dilation=2)


def test_high_padding_alone_can_make_room_for_the_kernel():
    x, w = np.ones((1, 2, 1)), np.ones((1, 4, 1))
    out = run_op("conv_general1d", 1, False, x, w, padding=0, padding_hi=2)
    np.testing.assert_array_equal(out.ravel(), [2.0])
    with pytest.raises(ValueError, match="output size must be >= 1"):
        run_op("conv_general1d", 1, False, x, w, padding=0, padding_hi=1)
