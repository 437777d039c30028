"""The reference cores' formulations, blocking, chooser and memory bound (``reference/core.py``).

* every formulation (``per-tap``, ``im2col``), with the default block budget and with tiny ones
  that force many blocks (one row each at the extreme), with and without the fused bias, equals
  the literal definition of ``tests/test_reference.py`` exactly: output, ``abs_sum`` and
  ``terms``;
* they agree with each other on the scatter-vs-gather identity (input dilation, flipped kernel,
  asymmetric and negative padding), and on float32, float64 and non-contiguous inputs;
* the chooser's decisions on named corpus layers;
* the peak memory of a public op call (``tracemalloc``, which NumPy reports its allocations to)
  stays within twice the float64 bytes of input, weight, bias and output.

Integer-valued inputs make every sum exact, so all comparisons are exact.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from conformance.case import OPS, parse_id
from reference.core import (
    FORMULATIONS,
    Span,
    auto_formulation,
    blocks,
    choose_formulation,
    conv_general,
    conv_transpose_general,
    gather_span,
    restrict,
    scatter_span,
)
from reference.params import check_params, check_shapes
from tests.test_reference import (
    assert_bound_sums,
    core_params,
    gather_as_transpose,
    inputs_for,
    int_array,
    literal_conv,
    literal_conv_transpose,
    prop,
    scatter_core,
    tiny_params,
)

#: Block budgets: tiny ones split the work into one-row blocks (and blocks of one batch item),
#: ``None`` is the default budget (one block for these sizes).
BLOCK_BYTES = st.sampled_from([1, 200, 2000, None])


def _layout(data, arr: np.ndarray) -> np.ndarray:
    """``arr`` as float64, float32 or a non-contiguous float64 view (same values), so the cores'
    no-copy matrix views, their cast-while-copying path and their copy fallback all run."""
    kind = data.draw(st.sampled_from(["float64", "float32", "strided"]), label="layout")
    if kind == "float32":
        return arr.astype(np.float32)
    if kind == "strided":
        wide = np.zeros((*arr.shape[:-1], 2 * arr.shape[-1]))
        wide[..., ::2] = arr
        return wide[..., ::2]
    return arr


def _forward(x, w, p, formulation, block_bytes, bias=None):
    return conv_general(
        x,
        w,
        stride=p["stride"],
        padding_lo=p["padding"],
        padding_hi=p["padding"],
        kernel_dilation=p["dilation"],
        groups=p["groups"],
        with_bound=True,
        formulation=formulation,
        block_bytes=block_bytes,
        bias=bias,
    )


def _transposed(x, w, p, formulation, block_bytes, bias=None):
    return conv_transpose_general(
        x,
        w,
        stride=p["stride"],
        padding_lo=p["padding"],
        padding_hi=p["padding"],
        dilation=p["dilation"],
        output_padding=p["output_padding"],
        groups=p["groups"],
        with_bound=True,
        formulation=formulation,
        block_bytes=block_bytes,
        bias=bias,
    )


def _assert_same(res, want, *, literal: bool = True) -> None:
    """``res`` equals ``want``: the literal definition (whose ``abs_sum`` is exact, so the
    reference's may exceed it by its float32 allowance) or another formulation's result."""
    out, abs_sum, terms = want
    assert res.out.dtype == np.float64 and res.out.flags.c_contiguous
    np.testing.assert_array_equal(res.out, out)
    if literal:
        assert_bound_sums(res.abs_sum, abs_sum, np.broadcast_to(terms, abs_sum.shape))
    else:
        np.testing.assert_array_equal(res.abs_sum, abs_sum)
    assert res.terms.dtype == np.int64
    np.testing.assert_array_equal(res.terms, terms)


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("op", ["conv1d", "conv2d", "conv3d"])
@prop(30)
@given(data=st.data())
def test_gather_formulations_match_literal(op, formulation, data):
    p = data.draw(tiny_params(op))
    x, w, b = inputs_for(p)
    want = literal_conv(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"])
    block_bytes = data.draw(BLOCK_BYTES)
    res = _forward(_layout(data, x), _layout(data, w), p, formulation, block_bytes, b)
    _assert_same(res, want)


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("op", ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"])
@prop(30)
@given(data=st.data())
def test_scatter_formulations_match_literal(op, formulation, data):
    p = data.draw(tiny_params(op))
    x, w, b = inputs_for(p)
    want = literal_conv_transpose(
        x, w, b, p["stride"], p["padding"], p["dilation"], p["output_padding"], p["groups"]
    )
    block_bytes = data.draw(BLOCK_BYTES)
    res = _transposed(_layout(data, x), _layout(data, w), p, formulation, block_bytes, b)
    _assert_same(res, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@prop(30)
@given(data=st.data())
def test_formulations_agree_on_scatter_gather_identity(nd, data):
    """Every scatter formulation equals every gather formulation run as MLX defines
    conv_transpose: input dilation = stride, flipped kernel, padding ``d(K-1) - lo`` and
    ``d(K-1) - hi + op`` (negative: crops), with batch 0 among the draws."""
    p = data.draw(core_params(nd))
    x, w, _ = inputs_for(p)
    block_bytes = data.draw(BLOCK_BYTES)
    results = []
    for formulation in FORMULATIONS:
        kw = dict(formulation=formulation, block_bytes=block_bytes)
        results.append(scatter_core(x, w, p, **kw))
        results.append(gather_as_transpose(x, w, p, **kw))
    first = results[0]
    for res in results[1:]:
        _assert_same(res, (first.out, first.abs_sum, first.terms), literal=False)


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("op", list(OPS))
def test_empty_batch_each_formulation(op, formulation):
    nd, transposed = OPS[op]
    x = np.zeros((0, *(5,) * nd, 4))
    w = np.ones((6, *(3,) * nd, 2))
    p = dict(stride=(2,) * nd, padding=(1,) * nd, dilation=(1,) * nd, groups=2)
    if transposed:
        res = _transposed(x, w, dict(p, output_padding=(1,) * nd), formulation, None)
    else:
        res = _forward(x, w, p, formulation, None)
    assert res.out.shape[0] == 0 and res.out.dtype == np.float64
    assert res.out.shape == res.abs_sum.shape == res.terms.shape


def test_depthwise_and_grouped_larger_blocks():
    """Depthwise (C_in/groups = 1, channel multiplier 2) and grouped layers with bias, a little
    larger than the Hypothesis draws, in many blocks: every formulation equals the literal
    definition."""
    rng = np.random.default_rng(11)
    for groups, c_in, c_out in [(6, 6, 12), (2, 6, 4)]:
        x = int_array(rng, (2, 7, 6, c_in))
        w = int_array(rng, (c_out, 3, 2, c_in // groups))
        b = int_array(rng, (c_out,))
        p = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=groups)
        want = literal_conv(x, w, b, p["stride"], p["padding"], p["dilation"], groups)
        pt = dict(p, output_padding=(1, 0))
        want_t = literal_conv_transpose(
            x, w, b, p["stride"], p["padding"], p["dilation"], (1, 0), groups
        )
        for formulation in FORMULATIONS:
            for block_bytes in (1, 3000, None):
                _assert_same(_forward(x, w, p, formulation, block_bytes, b), want)
                _assert_same(_transposed(x, w, pt, formulation, block_bytes, b), want_t)


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize(
    "x_shape, w_shape",
    [
        ((2, 40, 3), (5, 4, 3)),  # output larger than the weight: im2col fuses the bias
        ((1, 6, 8), (4, 5, 8)),  # weight larger than the output: the bias is added per block
    ],
)
def test_bias_with_large_and_small_weights(formulation, x_shape, w_shape):
    rng = np.random.default_rng(5)
    x, w, b = int_array(rng, x_shape), int_array(rng, w_shape), int_array(rng, w_shape[:1])
    p = dict(stride=(1,), padding=(1,), dilation=(1,), groups=1)
    want = literal_conv(x, w, b, (1,), (1,), (1,), 1)
    for block_bytes in (1, None):
        _assert_same(_forward(x, w, p, formulation, block_bytes, b), want)


def test_bad_formulation_raises():
    x, w = np.ones((1, 4, 2)), np.ones((2, 3, 2))
    with pytest.raises(ValueError, match="formulation must be 'auto' or one of per-tap, im2col"):
        conv_general(
            x,
            w,
            stride=(1,),
            padding_lo=(0,),
            padding_hi=(0,),
            kernel_dilation=(1,),
            formulation="fft",
        )
    with pytest.raises(ValueError, match="formulation must be"):
        conv_transpose_general(
            x,
            w,
            stride=(1,),
            padding_lo=(0,),
            padding_hi=(0,),
            dilation=(1,),
            output_padding=(0,),
            formulation="im2row",
        )


# --- index arithmetic and blocks ----------------------------------------------------------------


@prop(60)
@given(
    offset=st.integers(-12, 12),
    size=st.integers(1, 8),
    input_dilation=st.integers(1, 4),
    stride=st.integers(1, 4),
    n_out=st.integers(1, 10),
)
def test_gather_span_lists_exactly_the_real_input_elements(
    offset, size, input_dilation, stride, n_out
):
    span = gather_span(offset, size, input_dilation, stride, n_out)
    want = [
        (o, (o * stride + offset) // input_dilation)
        for o in range(n_out)
        if (o * stride + offset) % input_dilation == 0
        and 0 <= (o * stride + offset) // input_dilation < size
    ]
    got = [
        (span.out_start + j * span.out_step, span.in_start + j * span.in_step)
        for j in range(span.count)
    ]
    assert got == want


@prop(60)
@given(
    offset=st.integers(-12, 12),
    size=st.integers(1, 8),
    stride=st.integers(1, 4),
    n_out=st.integers(1, 20),
    lo=st.integers(0, 8),
    width=st.integers(0, 8),
)
def test_scatter_span_and_restrict(offset, size, stride, n_out, lo, width):
    span = scatter_span(offset, size, stride, n_out)
    pairs = [(i * stride + offset, i) for i in range(size) if 0 <= i * stride + offset < n_out]

    def listed(s: Span):
        return [(s.out_start + j * s.out_step, s.in_start + j * s.in_step) for j in range(s.count)]

    assert listed(span) == pairs
    hi = lo + width
    assert listed(restrict(span, lo, hi, side="in")) == [p for p in pairs if lo <= p[1] < hi]
    assert listed(restrict(span, lo, hi, side="out")) == [p for p in pairs if lo <= p[0] < hi]


@pytest.mark.parametrize(
    "n, rows, row_elems, budget, want",
    [
        (3, 4, 10, 120, [(0, 3, 0, 4)]),  # everything fits: one block
        (3, 4, 10, 80, [(0, 2, 0, 4), (2, 3, 0, 4)]),  # two whole items per block
        (2, 4, 10, 25, [(0, 1, 0, 2), (0, 1, 2, 4), (1, 2, 0, 2), (1, 2, 2, 4)]),  # row ranges
        (1, 3, 10, 1, [(0, 1, 0, 1), (0, 1, 1, 2), (0, 1, 2, 3)]),  # at least one row
    ],
)
def test_blocks_cover_batch_and_rows(n, rows, row_elems, budget, want):
    got = [(b.start, b.stop, r.start, r.stop) for b, r in blocks(n, rows, row_elems, budget)]
    assert got == want


# --- the chooser --------------------------------------------------------------------------------


def _auto(case_id: str) -> str:
    case = parse_id(case_id)
    p = check_params(case.op, case.ndim, transposed=case.transposed, **case.params())
    out = check_shapes(p, case.x_shape, case.w_shape)
    return auto_formulation(
        case.x_shape, case.w_shape, out, transposed=case.transposed, groups=case.groups
    )


@pytest.mark.parametrize(
    "case_id, want",
    [
        ("conv2d-n1-c64x2-s128-k1-bias-f32", "per-tap"),  # one tap
        ("conv2d-n1-c64x64-s32-k3-p1-g64-bias-f32", "per-tap"),  # depthwise
        ("conv_transpose2d-n1-c64x64-s32-k4-st2-p1-g64-f32", "per-tap"),  # depthwise
        ("conv1d-n1-c1x512-s4000-k10-st5-bias-f32", "im2col"),  # inner dim 1 -> 10
        ("conv1d-n1-c80x384-s300-k3-p1-bias-f32", "im2col"),  # narrow inner dim
        ("conv2d-n1-c512x256-s32-k3-p1-bias-f32", "per-tap"),  # wide inner dim
        ("conv1d-n1-c512x512-s799-k3-st2-bias-f32", "per-tap"),
        ("conv3d-n1-c128x64-s4x16x16-k3-p1-bias-f32", "per-tap"),  # im2col row over budget
        ("conv_transpose2d-n2-c64x3-s32-k4-st2-p1-f32", "im2col"),  # thin output: col2im
        ("conv_transpose2d-n8-c256x128-s8-k4-st2-p1-f32", "per-tap"),
        ("conv_transpose1d-n1-c512x256-s32-k16-st8-p4-bias-f32", "per-tap"),
    ],
)
def test_chooser_on_named_layers(case_id, want):
    assert _auto(case_id) == want


def test_chooser_budget_rule():
    """The 3-D layer picks im2col by its channels but per-tap once a patch row would not fit."""
    kw = dict(transposed=False, c_in=128, c_out=64, groups=1, kernel=(3, 3, 3))
    row = 16 * 16 * 27 * 128 * 8
    assert choose_formulation(row_positions=256, budget_bytes=row, **kw) == "im2col"
    assert choose_formulation(row_positions=256, budget_bytes=row - 1, **kw) == "per-tap"


# --- memory -------------------------------------------------------------------------------------

MEMORY_CASES = [
    # (op, x shape, w shape, keyword arguments)
    ("conv_transpose3d", (1, 16, 16, 16, 32), (16, 2, 2, 2, 32), dict(stride=2)),
    ("conv2d", (1, 64, 64, 64), (64, 3, 3, 64), dict(padding=1)),
    ("conv2d", (1, 64, 64, 64), (64, 3, 3, 1), dict(padding=1, groups=64)),
    ("conv1d", (1, 2048, 64), (64, 16, 64), dict(padding=8)),
    ("conv1d", (1, 4000, 1), (512, 10, 1), dict(stride=5)),
    ("conv_transpose1d", (1, 256, 128), (64, 16, 128), dict(stride=8, padding=4)),
    ("conv_transpose2d", (2, 32, 32, 64), (3, 4, 4, 64), dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("op, x_shape, w_shape, kw", MEMORY_CASES)
def test_peak_memory_within_twice_inputs_and_output(op, x_shape, w_shape, kw):
    """Float32 inputs (the harness's), bias included: the float64 output, at most one float64
    weight copy and the block temporaries stay under 2x (x + w + bias + out) in float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    fn = getattr(reference, op)
    tracemalloc.start()
    try:
        out = fn(x, w, b, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    counted = 8 * (x.size + w.size + b.size + out.size)
    assert peak <= 2 * counted, (peak, counted)
