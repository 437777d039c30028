"""The Hypothesis strategies: valid cases are valid, invalid cases are invalid, and between them
they reach every corner of the parameter space the harness claims to test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import reference
from conformance.case import OPS, Case
from conformance.dtypes import DTYPES
from conformance.strategies import (
    BUDGET,
    INVALID_RULES,
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_DEPTHWISE,
    MAX_DILATION,
    MAX_GROUPS,
    MAX_KERNEL,
    MAX_PADDING,
    MAX_STRIDE,
    invalid_cases,
    valid_cases,
    work,
)
from reference import conv_output_shape, conv_transpose_output_shape
from reference.ops import run_op

ALL_OPS = tuple(OPS)
TRANSPOSED_OPS = tuple(op for op in OPS if OPS[op][1])
OP_FN = {op: getattr(reference, op) for op in ALL_OPS}


def prop(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


#: find() settings: deterministic, and no shrinking (any example showing the corner will do).
FIND = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    derandomize=True,
    phases=(Phase.generate,),
    suppress_health_check=list(HealthCheck),
)


def run_reference(case: Case, with_bound: bool = False):
    """The reference op on arrays of the case's shapes (negative sizes as 0)."""
    rng = np.random.default_rng(case.seed)

    def arr(shape):
        return rng.uniform(-1, 1, tuple(max(s, 0) for s in shape))

    bias = arr(case.bias_shape) if case.bias else None
    args = (arr(case.x_shape), arr(case.w_shape), bias)
    if case.moded:  # the public functions take symmetric padding: the op with both sides
        return run_op(case.op, case.ndim, False, *args, with_bound=with_bound, **case.params())
    return OP_FN[case.op](*args, with_bound=with_bound, **case.params())


def expected_shape(case: Case) -> tuple[int, ...]:
    args = (case.spatial, case.kernel, case.stride, case.padding, case.dilation)
    if case.padding_mode == "same":  # ceil(S / s) per axis, whatever the kernel
        out = tuple(-(-n // s) for n, s in zip(case.spatial, case.stride))
        return (case.batch, *out, case.out_channels)
    if case.padding_mode == "valid":
        args = (case.spatial, case.kernel, case.stride, (0,) * case.ndim, case.dilation)
    if case.transposed:
        out = conv_transpose_output_shape(*args, case.output_padding)
    else:
        out = conv_output_shape(*args)
    return (case.batch, *out, case.out_channels)


# --- valid cases are valid ----------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS)
@prop(50)
@given(data=st.data())
def test_valid_cases_accepted_by_reference(op, data):
    case = data.draw(valid_cases(op))
    assert case.op == op
    res = run_reference(case, with_bound=True)
    assert res.out.shape == expected_shape(case)
    assert np.all(np.isfinite(res.out))
    if not case.transposed:
        assert not any(case.output_padding)
    # within the advertised limits and the work budget
    nd = case.ndim
    assert all(1 <= k <= MAX_KERNEL for k in case.kernel)
    assert all(1 <= s <= MAX_STRIDE[nd] for s in case.stride)
    assert all(1 <= d <= MAX_DILATION[nd] for d in case.dilation)
    if not case.moded:  # a mode's padding follows from the sizes
        assert all(0 <= p <= MAX_PADDING for p in case.padding)
    assert 1 <= case.batch <= MAX_BATCH
    assert case.in_channels <= MAX_CHANNELS and case.out_channels <= MAX_CHANNELS
    assert 1 <= case.groups <= MAX_GROUPS or case.groups == case.in_channels <= MAX_DEPTHWISE
    assert case.in_channels % case.groups == 0 and case.out_channels % case.groups == 0
    products, nbytes = work(case)
    assert products <= BUDGET.products and nbytes <= BUDGET.bytes


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@prop(10)
@given(data=st.data())
def test_valid_cases_respect_dtypes_and_bias(op, dtype, data):
    case = data.draw(valid_cases(op, (dtype,), bias=True))
    assert case.dtype == dtype and case.bias
    case = data.draw(valid_cases(op, (dtype,), bias=False))
    assert case.dtype == dtype and not case.bias


# --- invalid cases are invalid ------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS)
@prop(60)
@given(data=st.data())
def test_invalid_cases_rejected_by_reference(op, data):
    case = data.draw(invalid_cases(op))
    assert case.op == op
    with pytest.raises(ValueError, match=rf"^{op}: ") as info:
        run_reference(case)
    message = str(info.value)
    assert any(word in message for word in ("stride", "dilation", "padding", "groups", "output"))


def broken_rules(case: Case) -> set[str]:
    """Which of INVALID_RULES a case breaks, judged from its fields alone (not the reference)."""
    rules = set()
    if any(s < 1 for s in case.stride):
        rules.add("stride")
    if any(d < 1 for d in case.dilation):
        rules.add("dilation")
    if any(p < 0 for p in case.padding):
        rules.add("padding")
    if case.transposed and any(
        o >= max(s, d) for o, s, d in zip(case.output_padding, case.stride, case.dilation)
    ):
        rules.add("output_padding")
    if case.groups < 1 or case.in_channels % case.groups or case.out_channels % case.groups:
        rules.add("groups")
    if "stride" not in rules and "dilation" not in rules:
        # The output-size formulas, whatever the sign of the padding.
        args = zip(case.spatial, case.kernel, case.stride, case.padding, case.dilation)
        if case.transposed:
            sizes = [
                (n - 1) * s - 2 * p + d * (k - 1) + o + 1
                for (n, k, s, p, d), o in zip(args, case.output_padding)
            ]
        else:
            sizes = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in args]
        if min(sizes) < 1:
            rules.add("output_size")
    return rules


@pytest.mark.parametrize("op", ALL_OPS)
@prop(60)
@given(data=st.data())
def test_invalid_cases_break_exactly_one_rule(op, data):
    rules = broken_rules(data.draw(invalid_cases(op)))
    assert len(rules) == 1, rules
    assert rules <= set(INVALID_RULES)


# --- coverage: hypothesis.find shows each corner is reachable -----------------------------------


def _find(strategy, condition):
    return find(strategy, condition, settings=FIND)


VALID_CORNERS = {
    "groups>1": lambda c: c.groups > 1,
    "groups=3": lambda c: c.groups == 3,
    "dilation>1": lambda c: any(d > 1 for d in c.dilation),
    "stride>1": lambda c: any(s > 1 for s in c.stride),
    "stride>kernel": lambda c: any(s > k for s, k in zip(c.stride, c.kernel)),
    "padding>0": lambda c: any(p > 0 for p in c.padding),
    "bias": lambda c: c.bias,
    "no bias": lambda c: not c.bias,
    "batch 2": lambda c: c.batch == 2,
    "batch 4": lambda c: c.batch == 4,
    "groups=8": lambda c: c.groups == 8,
    "depthwise": lambda c: c.groups == c.in_channels > 1,
    "kernel 7": lambda c: MAX_KERNEL in c.kernel,
    "64 channels": lambda c: c.in_channels >= 64 and c.out_channels >= 64,
    "kernel 1": lambda c: all(k == 1 for k in c.kernel),
    "unequal dims": lambda c: c.ndim == 1 or len(set(c.kernel)) > 1,
    "channels differ": lambda c: c.in_channels != c.out_channels,
    "bfloat16": lambda c: c.dtype == "bfloat16",
    "float16": lambda c: c.dtype == "float16",
    "float32": lambda c: c.dtype == "float32",
    "seed>0": lambda c: c.seed > 0,
    "all at once": lambda c: (
        c.groups > 1
        and c.bias
        and any(d > 1 for d in c.dilation)
        and any(s > k for s, k in zip(c.stride, c.kernel))
        and any(p > 0 for p in c.padding)
    ),
}

TRANSPOSED_CORNERS = {
    "output_padding>0": lambda c: any(o > 0 for o in c.output_padding),
    "output_padding>=stride": lambda c: any(o >= s for o, s in zip(c.output_padding, c.stride)),
    "output_padding with groups": lambda c: c.groups > 1 and any(c.output_padding),
    "padding>d(K-1)": lambda c: any(
        p > d * (k - 1) for p, d, k in zip(c.padding, c.dilation, c.kernel)
    ),
    "input size 1": lambda c: any(s == 1 for s in c.spatial),
}

FORWARD_CORNERS = {
    "output size 1": lambda c: any(o == 1 for o in expected_shape(c)[1:-1]),
    "padding>=kernel": lambda c: any(p >= k for p, k in zip(c.padding, c.kernel)),
    "stride skips input": lambda c: any(
        (s_in + 2 * p - d * (k - 1) - 1) % st_ > 0
        for s_in, k, st_, p, d in zip(c.spatial, c.kernel, c.stride, c.padding, c.dilation)
    ),
}


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("corner", VALID_CORNERS)
def test_valid_cases_reach(op, corner):
    case = _find(valid_cases(op), VALID_CORNERS[corner])
    assert VALID_CORNERS[corner](case)
    run_reference(case)


@pytest.mark.parametrize("op", TRANSPOSED_OPS)
@pytest.mark.parametrize("corner", TRANSPOSED_CORNERS)
def test_valid_transposed_cases_reach(op, corner):
    case = _find(valid_cases(op), TRANSPOSED_CORNERS[corner])
    run_reference(case)


@pytest.mark.parametrize("op", [op for op in ALL_OPS if not OPS[op][1]])
@pytest.mark.parametrize("corner", FORWARD_CORNERS)
def test_valid_forward_cases_reach(op, corner):
    case = _find(valid_cases(op), FORWARD_CORNERS[corner])
    run_reference(case)


INVALID_CORNERS = {
    "stride 0": lambda c: 0 in c.stride,
    "stride negative": lambda c: any(s < 0 for s in c.stride),
    "dilation 0": lambda c: 0 in c.dilation,
    "dilation negative": lambda c: any(d < 0 for d in c.dilation),
    "padding negative": lambda c: any(p < 0 for p in c.padding),
    "groups 0": lambda c: c.groups == 0,
    "groups not dividing": lambda c: c.groups >= 1 and c.in_channels % c.groups != 0,
    "output size": lambda c: broken_rules(c) == {"output_size"},
}


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("corner", INVALID_CORNERS)
def test_invalid_cases_reach(op, corner):
    case = _find(invalid_cases(op), INVALID_CORNERS[corner])
    with pytest.raises(ValueError):
        run_reference(case)


@pytest.mark.parametrize("op", TRANSPOSED_OPS)
def test_invalid_transposed_cases_reach_output_padding(op):
    case = _find(invalid_cases(op), lambda c: broken_rules(c) == {"output_padding"})
    with pytest.raises(ValueError, match="output_padding"):
        run_reference(case)


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_invalid_cases_reach_every_axis(op, axis):
    """The broken entry can sit in any spatial dimension."""
    nd = OPS[op][0]
    if axis >= nd:
        return
    case = _find(invalid_cases(op), lambda c: c.stride[axis] < 1)
    with pytest.raises(ValueError, match=rf"stride(\[{axis}\])? must be >= 1"):
        run_reference(case)
