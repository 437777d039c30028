"""The float64 reference (``reference/``) checked against definitions it does not share code with.

* a literal loop-over-the-definition implementation written here (gather for conv, scatter for
  conv_transpose), output and ``with_bound`` terms included;
* algebraic identities: the adjoint identity between conv and conv_transpose, the group split,
  and the scatter core against the gather core with input dilation and a flipped kernel;
* ``torch.nn.functional`` in float64, outputs and output shapes;
* parameter validation: every bad parameter raises ``ValueError`` naming op and parameter.

Exact comparisons use small integer-valued float64 inputs: every product and partial sum is then
an integer far below 2**53, so any summation order gives the same bits.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conformance.case import OPS, Case
from conformance.strategies import valid_cases
from reference import (
    conv_general,
    conv_output_shape,
    conv_transpose_general,
    conv_transpose_output_shape,
)
from reference.core import ConvResult
from reference.ops import run_op

ALL_OPS = tuple(OPS)
FORWARD_OPS = ("conv1d", "conv2d", "conv3d")
TRANSPOSED_OPS = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
OP_FN = {op: getattr(reference, op) for op in ALL_OPS}


def prop(max_examples: int) -> settings:
    """Explicit example counts (the Hypothesis profile still decides derandomization)."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def int_array(rng: np.random.Generator, shape: tuple[int, ...], lim: int = 4) -> np.ndarray:
    """Integer values in [-lim, lim] as float64: every conv sum of them is exact."""
    return rng.integers(-lim, lim + 1, size=shape).astype(np.float64)


# --- the literal definitions --------------------------------------------------------------------


def literal_conv(x, w, bias, stride, padding, dilation, groups):
    """out[n, o, co] = sum_{k, ci} x[n, o*s - p + k*d, g*Cin_g + ci] * w[co, k, ci] (+ bias[co]),
    g = co // Cout_g, positions outside the input skipped. Returns (out, abs_sum, terms)."""
    n_batch, *size, c_in = x.shape
    c_out, *kernel, c_in_g = w.shape
    nd = len(size)
    c_out_g = c_out // groups
    out_size = [
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(nd)
    ]
    out = np.zeros((n_batch, *out_size, c_out))
    abs_sum = np.zeros_like(out)
    terms = np.zeros(out.shape, dtype=np.int64)
    for n in range(n_batch):
        for o in itertools.product(*(range(v) for v in out_size)):
            for co in range(c_out):
                g = co // c_out_g
                acc, acc_abs, count = 0.0, 0.0, 0
                for k in itertools.product(*(range(v) for v in kernel)):
                    pos = tuple(
                        o[i] * stride[i] - padding[i] + k[i] * dilation[i] for i in range(nd)
                    )
                    if not all(0 <= pos[i] < size[i] for i in range(nd)):
                        continue
                    for ci in range(c_in_g):
                        xv = x[(n, *pos, g * c_in_g + ci)]
                        wv = w[(co, *k, ci)]
                        acc += xv * wv
                        acc_abs += abs(xv) * abs(wv)
                        count += 1
                if bias is not None:
                    acc += bias[co]
                    acc_abs += abs(bias[co])
                    count += 1
                out[(n, *o, co)] = acc
                abs_sum[(n, *o, co)] = acc_abs
                terms[(n, *o, co)] = count
    return out, abs_sum, terms


def literal_conv_transpose(x, w, bias, stride, padding, dilation, output_padding, groups):
    """Scatter: for every input position i, tap k, input channel g*Cin_g + ci and output channel
    co = g*Cout_g + c, out[n, i*s - p + k*d, co] += x[n, i, g*Cin_g + ci] * w[co, k, ci], positions
    outside the output (size (S-1)s - 2p + d(K-1) + op + 1) dropped; then + bias[co]."""
    n_batch, *size, c_in = x.shape
    c_out, *kernel, c_in_g = w.shape
    nd = len(size)
    c_out_g = c_out // groups
    out_size = [
        (size[i] - 1) * stride[i]
        - 2 * padding[i]
        + dilation[i] * (kernel[i] - 1)
        + output_padding[i]
        + 1
        for i in range(nd)
    ]
    out = np.zeros((n_batch, *out_size, c_out))
    abs_sum = np.zeros_like(out)
    terms = np.zeros(out.shape, dtype=np.int64)
    for n in range(n_batch):
        for i in itertools.product(*(range(v) for v in size)):
            for k in itertools.product(*(range(v) for v in kernel)):
                pos = tuple(i[a] * stride[a] - padding[a] + k[a] * dilation[a] for a in range(nd))
                if not all(0 <= pos[a] < out_size[a] for a in range(nd)):
                    continue
                for g in range(groups):
                    for ci in range(c_in_g):
                        xv = x[(n, *i, g * c_in_g + ci)]
                        for c in range(c_out_g):
                            co = g * c_out_g + c
                            wv = w[(co, *k, ci)]
                            out[(n, *pos, co)] += xv * wv
                            abs_sum[(n, *pos, co)] += abs(xv) * abs(wv)
                            terms[(n, *pos, co)] += 1
    if bias is not None:
        out += bias
        abs_sum += np.abs(bias)
        terms += 1
    return out, abs_sum, terms


# --- tiny parameter sets, drawn independently of conformance.strategies -------------------------


@st.composite
def tiny_params(draw, op: str) -> dict:
    """Shapes and parameters small enough for the literal loops (3-D especially)."""
    nd, transposed = OPS[op]
    kmax, extra = {1: (4, 4), 2: (3, 3), 3: (2, 2)}[nd]
    groups = draw(st.integers(1, 3))
    c_in_g = draw(st.integers(1, 2))
    c_out_g = draw(st.integers(1, 2))
    dims = []
    for _ in range(nd):
        k = draw(st.integers(1, kmax))
        s = draw(st.integers(1, 3))
        d = draw(st.integers(1, 3 if nd < 3 else 2))
        if transposed:
            size = draw(st.integers(1, 1 + extra))
            o = draw(st.integers(0, max(s, d) - 1))
            full = (size - 1) * s + d * (k - 1) + 1 + o
            p = draw(st.integers(0, (full - 1) // 2))
        else:
            o = 0
            p = draw(st.integers(0, 2))
            need = max(1, d * (k - 1) + 1 - 2 * p)
            size = draw(st.integers(need, need + extra))
        dims.append((size, k, s, p, d, o))
    size, kernel, stride, padding, dilation, out_pad = (tuple(v) for v in zip(*dims))
    return dict(
        batch=draw(st.integers(1, 2)),
        c_in=groups * c_in_g,
        c_out=groups * c_out_g,
        size=size,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=out_pad,
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def inputs_for(p: dict):
    """Integer-valued (x, w, bias) for drawn parameters ``p`` (bias None unless ``p["bias"]``)."""
    rng = np.random.default_rng(p["seed"])
    x = int_array(rng, (p["batch"], *p["size"], p["c_in"]))
    w = int_array(rng, (p["c_out"], *p["kernel"], p["c_in"] // p["groups"]))
    b = int_array(rng, (p["c_out"],)) if p.get("bias") else None
    return x, w, b


@pytest.mark.parametrize("op", ALL_OPS)
@prop(40)
@given(data=st.data())
def test_matches_literal_definition(op, data):
    p = data.draw(tiny_params(op))
    x, w, b = inputs_for(p)
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    if OPS[op][1]:
        want = literal_conv_transpose(x, w, b, output_padding=p["output_padding"], **kw)
        res = OP_FN[op](x, w, b, output_padding=p["output_padding"], with_bound=True, **kw)
        plain = OP_FN[op](x, w, b, output_padding=p["output_padding"], **kw)
    else:
        want = literal_conv(x, w, b, **kw)
        res = OP_FN[op](x, w, b, with_bound=True, **kw)
        plain = OP_FN[op](x, w, b, **kw)
    assert isinstance(res, ConvResult)
    assert res.out.dtype == np.float64 and plain.dtype == np.float64
    np.testing.assert_array_equal(res.out, want[0])
    np.testing.assert_array_equal(plain, want[0])
    assert res.terms.shape == want[2].shape
    np.testing.assert_array_equal(res.terms, want[2])
    assert_bound_sums(res.abs_sum, want[1], want[2])


def assert_bound_sums(got: np.ndarray, exact: np.ndarray, terms: np.ndarray) -> None:
    """``abs_sum`` is ``sum |x||w|`` (float64 sums, within their own rounding, far below what
    the error bound resolves) or an upper bound on it, by at most a relative ``(2 (terms + 1) +
    6) 2^-24`` (float32 sums, raised by their worst-case rounding) plus the underflow
    allowance."""
    assert got.shape == exact.shape
    assert np.all(got >= exact * (1 - 1e-12)), np.max(exact - got)
    slack = exact * (2.0 * (terms + 1) + 6) * 2.0**-24 * 1.01 + (terms + 1) * 2.0**-147
    assert np.all(got - exact <= slack), np.max((got - exact) / np.maximum(slack, 1e-300))


def test_literal_definition_hand_example():
    """The literal implementation itself on a case computed by hand."""
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    w = np.array([1.0, 10.0]).reshape(1, 2, 1)
    # padding 1, stride 2: windows [0, 1], [2, 3], [4, 0] -> 10*1, 2 + 30, 4
    out, abs_sum, terms = literal_conv(x, w, None, (2,), (1,), (1,), 1)
    assert out.ravel().tolist() == [10.0, 32.0, 4.0]
    assert terms.ravel().tolist() == [1, 2, 1]
    np.testing.assert_array_equal(reference.conv1d(x, w, stride=2, padding=1).ravel(), out.ravel())
    # transposed, stride 2: x[i] scatters to 2i (w0) and 2i+1 (w1).
    xt = np.array([1.0, 2.0]).reshape(1, 2, 1)
    out, _, terms = literal_conv_transpose(xt, w, None, (2,), (0,), (1,), (0,), 1)
    assert out.ravel().tolist() == [1.0, 10.0, 2.0, 20.0]
    np.testing.assert_array_equal(reference.conv_transpose1d(xt, w, stride=2).ravel(), out.ravel())


# --- adjoint identity ---------------------------------------------------------------------------


def swap_roles(w: np.ndarray, groups: int) -> np.ndarray:
    """The weight of the adjoint op, in MLX layout.

    ``w`` is ``(A, *K, B/groups)`` with A output and B input channels of one op. Group g's block
    is ``w[g*A_g:(g+1)*A_g, ..., :]``; the adjoint op maps A channels to B channels, so its
    weight is ``(B, *K, A/groups)`` with ``w'[g*B_g + b, *k, a] = w[g*A_g + a, *k, b]``: the
    channel roles are swapped within each group, the kernel is neither flipped nor moved.
    """
    a, *kernel, b_g = w.shape
    a_g = a // groups
    wg = w.reshape(groups, a_g, *kernel, b_g)
    wg = np.moveaxis(np.moveaxis(wg, 1, -1), -2, 1)  # (G, B_g, *K, A_g)
    return np.ascontiguousarray(wg.reshape(groups * b_g, *kernel, a_g))


def test_swap_roles_mapping():
    groups, a_g, b_g, kernel = 2, 3, 2, (2, 3)
    w = np.arange(groups * a_g * math.prod(kernel) * b_g, dtype=np.float64)
    w = w.reshape(groups * a_g, *kernel, b_g)
    ws = swap_roles(w, groups)
    assert ws.shape == (groups * b_g, *kernel, a_g)
    for g, a, b, k0, k1 in itertools.product(
        range(groups), range(a_g), range(b_g), range(kernel[0]), range(kernel[1])
    ):
        assert ws[g * b_g + b, k0, k1, a] == w[g * a_g + a, k0, k1, b]
    np.testing.assert_array_equal(swap_roles(ws, groups), w)


def _adjoint_check(lhs: float, rhs: float, scale: float) -> None:
    assert abs(lhs - rhs) <= 1e-10 * scale, (lhs, rhs, scale)


@pytest.mark.parametrize("nd", [1, 2, 3])
@prop(25)
@given(data=st.data())
def test_adjoint_forward_cases(nd, data):
    """<conv(x, w), y> == <x, conv_transpose(y, w')>, w' = swap_roles(w), output_padding = the
    remainder r = (S + 2p - d(K-1) - 1) mod s the forward floor division dropped (r < s, so it is
    a legal output padding), which makes the transposed output exactly x's shape."""
    case = data.draw(valid_cases(f"conv{nd}d"))
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    w = rng.standard_normal(case.w_shape)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    fwd = OP_FN[f"conv{nd}d"](x, w, with_bound=True, **kw)
    y = rng.standard_normal(fwd.out.shape)
    r = tuple(
        (s + 2 * p - d * (k - 1) - 1) % st_
        for s, k, st_, p, d in zip(
            case.spatial, case.kernel, case.stride, case.padding, case.dilation
        )
    )
    back = OP_FN[f"conv_transpose{nd}d"](y, swap_roles(w, case.groups), output_padding=r, **kw)
    assert back.shape == x.shape
    scale = float(np.sum(fwd.abs_sum * np.abs(y)))
    _adjoint_check(float(np.sum(fwd.out * y)), float(np.sum(x * back)), scale)


@pytest.mark.parametrize("nd", [1, 2, 3])
@prop(25)
@given(data=st.data())
def test_adjoint_transposed_cases(nd, data):
    """<conv_transpose(x, w), y> == <x, conv(y, w')[:S]>, w' = swap_roles(w). The forward conv
    of the transposed output has floor(((S-1)s + op) / s) + 1 positions, S when op < s and more
    when op >= s (allowed when d > s); the extra positions belong to no input, so crop to S."""
    case = data.draw(valid_cases(f"conv_transpose{nd}d"))
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    w = rng.standard_normal(case.w_shape)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    fwd = OP_FN[f"conv_transpose{nd}d"](
        x, w, output_padding=case.output_padding, with_bound=True, **kw
    )
    y = rng.standard_normal(fwd.out.shape)
    back = OP_FN[f"conv{nd}d"](y, swap_roles(w, case.groups), **kw)
    for axis, (s_in, o, st_) in enumerate(zip(case.spatial, case.output_padding, case.stride)):
        assert back.shape[1 + axis] == s_in + o // st_
    back = back[(slice(None), *(slice(0, s) for s in case.spatial), slice(None))]
    assert back.shape == x.shape
    scale = float(np.sum(fwd.abs_sum * np.abs(y)))
    _adjoint_check(float(np.sum(fwd.out * y)), float(np.sum(x * back)), scale)


# --- group split --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS)
@prop(20)
@given(data=st.data())
def test_group_split(op, data):
    """A grouped op is the channel-concatenation of ungrouped ops on each group's slices."""
    case = data.draw(valid_cases(op).filter(lambda c: c.groups > 1))
    g = case.groups
    rng = np.random.default_rng(case.seed)
    x = int_array(rng, case.x_shape)
    w = int_array(rng, case.w_shape)
    b = int_array(rng, (case.out_channels,)) if case.bias else None
    params = case.params()
    whole = reference_op(case, x, w, b, **params)
    ci, co = case.in_channels // g, case.out_channels // g
    parts = []
    for i in range(g):
        ungrouped = dict(params, groups=1)
        parts.append(
            reference_op(
                case,
                x[..., i * ci : (i + 1) * ci],
                w[i * co : (i + 1) * co],
                None if b is None else b[i * co : (i + 1) * co],
                **ungrouped,
            )
        )
    np.testing.assert_array_equal(whole, np.concatenate(parts, axis=-1))


# --- scatter core vs gather core ----------------------------------------------------------------


@st.composite
def core_params(draw, nd: int) -> dict:
    """Parameters for the cores directly: separate low/high padding, any of which may exceed
    d(K-1) (then the equivalent gather padding is negative and crops)."""
    groups = draw(st.integers(1, 2))
    dims = []
    for _ in range(nd):
        size = draw(st.integers(1, 4 if nd < 3 else 3))
        k = draw(st.integers(1, 3))
        s = draw(st.integers(1, 3))
        d = draw(st.integers(1, 3))
        o = draw(st.integers(0, max(s, d) - 1))
        full = (size - 1) * s + d * (k - 1) + 1
        lo = draw(st.integers(0, full + o - 1))
        hi = draw(st.integers(0, full + o - 1 - lo))
        dims.append((size, k, s, d, o, lo, hi))
    size, kernel, stride, dilation, out_pad, lo, hi = (tuple(v) for v in zip(*dims))
    return dict(
        batch=draw(st.integers(0, 2)),
        c_in=groups * draw(st.integers(1, 2)),
        c_out=groups * draw(st.integers(1, 2)),
        size=size,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        output_padding=out_pad,
        lo=lo,
        hi=hi,
        groups=groups,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def scatter_core(x, w, p: dict, **kw):
    """The scatter core on ``core_params`` parameters, with the bound (``kw``: e.g. the
    formulation)."""
    return conv_transpose_general(
        x,
        w,
        stride=p["stride"],
        padding_lo=p["lo"],
        padding_hi=p["hi"],
        dilation=p["dilation"],
        output_padding=p["output_padding"],
        groups=p["groups"],
        with_bound=True,
        **kw,
    )


def gather_as_transpose(x, w, p: dict, **kw):
    """The same transposed convolution from the gather core, as MLX defines it: input dilation
    = stride, flipped kernel, padding ``d(K-1) - lo`` and ``d(K-1) - hi + op`` (negative:
    crops)."""
    ext = [d * (k - 1) for d, k in zip(p["dilation"], p["kernel"])]
    return conv_general(
        x,
        w,
        stride=(1,) * len(ext),
        padding_lo=[e - lo for e, lo in zip(ext, p["lo"])],
        padding_hi=[e - hi + o for e, hi, o in zip(ext, p["hi"], p["output_padding"])],
        kernel_dilation=p["dilation"],
        input_dilation=p["stride"],
        groups=p["groups"],
        flip=True,
        with_bound=True,
        **kw,
    )


@pytest.mark.parametrize("nd", [1, 2, 3])
@prop(60)
@given(data=st.data())
def test_scatter_equals_gather(nd, data):
    """conv_transpose_general == conv_general(input_dilation=s, padding lo' = d(K-1) - lo,
    hi' = d(K-1) - hi + op, flip=True): MLX's definition of conv_transpose. Output, abs_sum and
    terms (zeros inserted by the input dilation are no terms)."""
    p = data.draw(core_params(nd))
    x, w, _ = inputs_for(p)
    scatter = scatter_core(x, w, p)
    gather = gather_as_transpose(x, w, p)
    ext = [d * (k - 1) for d, k in zip(p["dilation"], p["kernel"])]
    want_size = [
        (s - 1) * st_ + e + 1 - lo - hi + o
        for s, st_, e, lo, hi, o in zip(
            p["size"], p["stride"], ext, p["lo"], p["hi"], p["output_padding"]
        )
    ]
    assert scatter.out.shape == (p["batch"], *want_size, p["c_out"])
    assert gather.out.shape == scatter.out.shape
    np.testing.assert_array_equal(scatter.out, gather.out)
    np.testing.assert_array_equal(scatter.abs_sum, gather.abs_sum)
    np.testing.assert_array_equal(scatter.terms, gather.terms)


def test_scatter_equals_gather_negative_padding_example():
    """p = 3 > d(K-1) = 2 on both sides: the gather form crops one input element per side."""
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    w = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1)
    want = reference.conv_transpose1d(x, w, padding=3)
    # full scatter: positions 0..6 get 1, 12, 123, 234, 345, 450, 500; crop 3 each side.
    assert want.ravel().tolist() == [234.0]
    got = conv_general(
        x, w, stride=(1,), padding_lo=(-1,), padding_hi=(-1,), kernel_dilation=(1,), flip=True
    )
    assert got.out.ravel().tolist() == [234.0]


# --- agreement with torch.nn.functional in float64 ----------------------------------------------


def to_torch_weight(op: str, w: np.ndarray, groups: int) -> torch.Tensor:
    """MLX-layout weight to torch's: forward (C_out, C_in/g, *K); transposed (C_in, C_out/g, *K)
    with torch's weight[g*Cin_g + ci, c, *k] = w[g*Cout_g + c, *k, ci]."""
    if not OPS[op][1]:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(w, -1, 1)))
    c_out, *kernel, c_in_g = w.shape
    wg = np.moveaxis(w.reshape(groups, c_out // groups, *kernel, c_in_g), -1, 1)
    return torch.from_numpy(
        np.ascontiguousarray(wg.reshape(groups * c_in_g, c_out // groups, *kernel))
    )


def reference_op(case: Case, x, w, b, **params):
    """The reference op of ``case`` with ``params``; through ``run_op``, which takes a padding
    mode's separate high padding (the public functions take symmetric padding only)."""
    return run_op(case.op, case.ndim, case.transposed, x, w, b, **params)


def padded_for_torch(xt: torch.Tensor, params: dict) -> tuple[torch.Tensor, dict]:
    """A channels-first input and reference ``params`` as torch takes them: a separate high
    padding (``'same'`` with an even kernel extent) spelled out with ``F.pad``, which takes
    (low, high) pairs from the last axis backwards, and padding 0 then."""
    params = dict(params)
    hi = params.pop("padding_hi", None)
    if hi is None:
        return xt, params
    lo = params["padding"]
    params["padding"] = 0
    return F.pad(xt, [n for a in reversed(range(len(hi))) for n in (lo[a], hi[a])]), params


def torch_run(op: str, x: np.ndarray, w: np.ndarray, b, params: dict) -> np.ndarray:
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    bt = None if b is None else torch.from_numpy(b)
    xt, params = padded_for_torch(xt, params)
    with torch.no_grad():
        y = getattr(F, op)(xt, to_torch_weight(op, w, params["groups"]), bt, **params)
    return np.moveaxis(y.numpy(), 1, -1)


@pytest.mark.parametrize("op", ALL_OPS)
@prop(25)
@given(data=st.data())
def test_matches_torch_float64(op, data):
    case = data.draw(valid_cases(op))
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    w = rng.standard_normal(case.w_shape)
    b = rng.standard_normal((case.out_channels,)) if case.bias else None
    res = reference_op(case, x, w, b, with_bound=True, **case.params())
    want = torch_run(op, x, w, b, case.params())
    assert res.out.shape == want.shape
    err = np.abs(res.out - want)
    assert np.all(err <= 1e-13 * res.terms * res.abs_sum + 1e-300), float(err.max())


@pytest.mark.parametrize(
    "op, kw",
    [
        ("conv2d", dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
        (
            "conv_transpose2d",
            dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2, output_padding=(1, 2)),
        ),
        ("conv_transpose1d", dict(stride=1, padding=0, dilation=3, groups=1, output_padding=2)),
        ("conv3d", dict(stride=(1, 2, 3), padding=(0, 1, 2), dilation=(2, 1, 1), groups=2)),
    ],
)
def test_matches_torch_fixed(op, kw):
    """A few hand-picked cases with mixed per-dimension parameters."""
    nd = OPS[op][0]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, *(5,) * nd, 4))
    w = rng.standard_normal((6, *(3,) * nd, 4 // kw["groups"]))
    b = rng.standard_normal(6)
    got = OP_FN[op](x, w, b, **kw)
    np.testing.assert_allclose(got, torch_run(op, x, w, b, kw), rtol=1e-12, atol=1e-12)


# --- output shapes against torch ----------------------------------------------------------------


def _torch_shape(op: str, size, kernel, stride, padding, dilation, output_padding):
    """torch's output spatial shape, or None if torch rejects it or gives an empty output.

    CPU tensors: torch's meta kernels check only the first spatial dimension of a transposed
    output for emptiness. Even on CPU torch lets a size of 0 through when output padding is what
    lifts it from -1 to 0 (an empty tensor); the reference rejects every size below 1."""
    nd = len(size)
    x = torch.zeros((1, 1, *size))
    w = torch.zeros((1, 1, *kernel))
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    if OPS[op][1]:
        kw["output_padding"] = output_padding
    try:
        shape = tuple(getattr(F, op)(x, w, **kw).shape[2 : 2 + nd])
    except RuntimeError:
        return None
    return shape if min(shape) >= 1 else None


@st.composite
def shape_params(draw, op: str):
    nd, transposed = OPS[op]
    dims = []
    for _ in range(nd):
        s = draw(st.integers(1, 4))
        d = draw(st.integers(1, 4))
        o = draw(st.integers(0, max(s, d) - 1)) if transposed else 0
        dims.append(
            (draw(st.integers(1, 12)), draw(st.integers(1, 6)), s, draw(st.integers(0, 5)), d, o)
        )
    return tuple(tuple(v) for v in zip(*dims))


@pytest.mark.parametrize("op", ALL_OPS)
@prop(60)
@given(data=st.data())
def test_output_shape_matches_torch(op, data):
    size, kernel, stride, padding, dilation, out_pad = data.draw(shape_params(op))
    want = _torch_shape(op, size, kernel, stride, padding, dilation, out_pad)
    try:
        if OPS[op][1]:
            got = conv_transpose_output_shape(size, kernel, stride, padding, dilation, out_pad)
        else:
            got = conv_output_shape(size, kernel, stride, padding, dilation)
    except ValueError as exc:
        assert want is None, f"torch gives {want}, reference raised {exc}"
        assert "output size" in str(exc)
        return
    assert got == want


def test_output_shape_formulas_by_hand():
    assert conv_output_shape([7], [3], [2], [1], [1]) == (4,)
    assert conv_output_shape([10, 5], [3, 5], [3, 1], [0, 0], [2, 1]) == (2, 1)
    assert conv_transpose_output_shape([4], [3], [2], [1], [1], [1]) == (8,)
    assert conv_transpose_output_shape([1, 2], [1, 2], [1, 3], [0, 0], [1, 4], [0, 3]) == (1, 11)
    with pytest.raises(ValueError, match=r"conv: output size must be >= 1, got 0"):
        conv_output_shape([2], [5], [1], [1], [1])
    with pytest.raises(ValueError, match=r"output size\[1\] must be >= 1, got -1"):
        conv_transpose_output_shape([2, 1], [1, 1], [1, 1], [0, 1], [1, 1], [0, 0])


# --- batch 0 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS)
def test_empty_batch(op):
    nd, transposed = OPS[op]
    x = np.zeros((0, *(4,) * nd, 4))
    w = np.ones((6, *(3,) * nd, 2))
    kw = dict(stride=2, padding=1, groups=2)
    if transposed:
        kw["output_padding"] = 1
        size = (4 - 1) * 2 - 2 + 2 + 1 + 1
    else:
        size = (4 + 2 - 2 - 1) // 2 + 1
    out = OP_FN[op](x, w, np.ones(6), **kw)
    assert out.shape == (0, *(size,) * nd, 6)
    assert out.dtype == np.float64
    res = OP_FN[op](x, w, with_bound=True, **kw)
    assert res.out.shape == res.abs_sum.shape == res.terms.shape == out.shape


# --- dtypes and inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.bool_])
def test_computes_in_float64_from_any_real_input(dtype):
    rng = np.random.default_rng(3)
    x = int_array(rng, (1, 5, 5, 2), lim=1)
    w = int_array(rng, (3, 2, 2, 2), lim=1)
    if dtype is np.bool_:
        x, w = np.abs(x), np.abs(w)
    got = reference.conv2d(x.astype(dtype), w.astype(dtype))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, reference.conv2d(x, w))


def test_inputs_not_modified():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 3))
    w = rng.standard_normal((3, 2, 3))
    x0, w0 = x.copy(), w.copy()
    x.setflags(write=False)
    w.setflags(write=False)
    reference.conv1d(x, w, padding=1, with_bound=True)
    reference.conv_transpose1d(x, w, stride=2, with_bound=True)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


# --- bad parameters -----------------------------------------------------------------------------


def _arrays(nd: int, c_in: int = 4, c_out: int = 4, groups: int = 1, size: int = 5, k: int = 3):
    return np.ones((1, *(size,) * nd, c_in)), np.ones((c_out, *(k,) * nd, c_in // groups))


BAD_PARAMS = [
    # (op, keyword arguments, message pattern)
    ("conv1d", dict(stride=0), r"^conv1d: stride must be >= 1, got 0$"),
    ("conv2d", dict(stride=(1, -1)), r"^conv2d: stride\[1\] must be >= 1, got -1$"),
    ("conv_transpose3d", dict(stride=(1, 0, 1)), r"^conv_transpose3d: stride\[1\] must be >= 1"),
    ("conv1d", dict(dilation=0), r"^conv1d: dilation must be >= 1, got 0$"),
    ("conv_transpose2d", dict(dilation=(-2, 1)), r"^conv_transpose2d: dilation\[0\] must be >= 1"),
    ("conv3d", dict(padding=(0, 0, -1)), r"^conv3d: padding\[2\] must be >= 0, got -1$"),
    ("conv_transpose1d", dict(padding=-1), r"^conv_transpose1d: padding must be >= 0, got -1$"),
    ("conv2d", dict(groups=0), r"^conv2d: groups must be >= 1, got 0$"),
    ("conv_transpose2d", dict(groups=-2), r"^conv_transpose2d: groups must be >= 1, got -2$"),
    ("conv_transpose1d", dict(output_padding=-1), r"output_padding must be >= 0, got -1"),
    (
        "conv_transpose2d",
        dict(stride=2, output_padding=(0, 2)),
        r"^conv_transpose2d: output_padding\[1\] must be smaller than max\(stride, dilation\) = 2,"
        r" got 2$",
    ),
    (
        "conv_transpose1d",
        dict(output_padding=1),
        r"^conv_transpose1d: output_padding must be smaller than max\(stride, dilation\) = 1",
    ),
    (
        "conv_transpose3d",
        dict(stride=(1, 2, 1), dilation=(1, 1, 3), output_padding=(0, 1, 3)),
        r"output_padding\[2\] must be smaller than max\(stride, dilation\) = 3, got 3",
    ),
    # wrong-length tuples
    ("conv2d", dict(stride=(1, 1, 1)), r"^conv2d: stride must have one entry per spatial dim"),
    ("conv3d", dict(padding=(1, 1)), r"padding must have one entry per spatial dimension \(3\)"),
    ("conv_transpose1d", dict(dilation=()), r"dilation must have one entry per spatial"),
    ("conv_transpose2d", dict(output_padding=[0]), r"output_padding must have one entry"),
    # non-int parameters
    ("conv1d", dict(stride=1.5), r"^conv1d: stride must be an int or a sequence of 1 ints"),
    ("conv2d", dict(stride=True), r"^conv2d: stride must be an int or a sequence of 2 ints"),
    ("conv2d", dict(padding=(1, 0.5)), r"^conv2d: padding entries must be ints"),
    ("conv2d", dict(dilation=(1, True)), r"^conv2d: dilation entries must be ints"),
    ("conv1d", dict(padding="1"), r"^conv1d: padding must be an int or a sequence"),
    ("conv1d", dict(dilation=None), r"^conv1d: dilation must be an int or a sequence"),
    ("conv_transpose1d", dict(output_padding=np.float64(0.0)), r"output_padding must be an int"),
    ("conv1d", dict(stride=np.bool_(True)), r"^conv1d: stride must be an int"),
    ("conv2d", dict(groups=1.5), r"^conv2d: groups must be an int, got 1.5$"),
    ("conv_transpose2d", dict(groups=True), r"^conv_transpose2d: groups must be an int, got True$"),
    ("conv1d", dict(groups="2"), r"^conv1d: groups must be an int"),
]


@pytest.mark.parametrize("op, kw, match", BAD_PARAMS)
def test_bad_parameter_raises(op, kw, match):
    x, w = _arrays(OPS[op][0])
    with pytest.raises(ValueError, match=match):
        OP_FN[op](x, w, **kw)
    with pytest.raises(ValueError, match=match):
        OP_FN[op](x, w, with_bound=True, **kw)


def test_output_padding_on_forward_conv():
    x, w = _arrays(2)
    with pytest.raises(ValueError, match=r"^conv2d: output_padding is only defined for transp"):
        run_op("conv2d", 2, False, x, w, output_padding=1)
    with pytest.raises(ValueError, match=r"^conv1d: output_padding"):
        run_op("conv1d", 1, False, *_arrays(1), stride=2, output_padding=(1,))
    # an explicit zero is fine
    run_op("conv2d", 2, False, x, w, output_padding=(0, 0))


def test_output_padding_below_dilation_is_legal():
    """output_padding < max(stride, dilation): with stride 1, dilation 3 allows 2."""
    x, w = _arrays(1, size=2, k=2)
    out = reference.conv_transpose1d(x, w, dilation=3, output_padding=2)
    assert out.shape == (1, 2 - 1 + 3 + 2 + 1, 4)


@pytest.mark.parametrize(
    "op, c_in, c_out, groups, match",
    [
        ("conv2d", 3, 4, 2, r"^conv2d: groups \(2\) must divide input channels \(3\)$"),
        ("conv_transpose1d", 4, 3, 2, r"groups \(2\) must divide output channels \(3\)$"),
        ("conv3d", 6, 6, 4, r"groups \(4\) must divide input channels \(6\)"),
    ],
)
def test_groups_must_divide_channels(op, c_in, c_out, groups, match):
    nd = OPS[op][0]
    x = np.ones((1, *(4,) * nd, c_in))
    w = np.ones((c_out, *(2,) * nd, max(c_in // groups, 1)))
    with pytest.raises(ValueError, match=match):
        OP_FN[op](x, w, groups=groups)


@pytest.mark.parametrize("op", ALL_OPS)
def test_bad_shapes_raise(op):
    nd = OPS[op][0]
    x, w = _arrays(nd, c_in=4, c_out=6, groups=2)
    ok = dict(groups=2)
    OP_FN[op](x, w, np.zeros(6), **ok)  # the baseline is valid
    checks = [
        ((x[..., 0], w), rf"^{op}: input must have rank {nd + 2}"),
        ((x[None], w), rf"^{op}: input must have rank {nd + 2}"),
        ((x, w[..., 0]), rf"^{op}: weight must have rank {nd + 2}"),
        ((x, w[None]), rf"^{op}: weight must have rank {nd + 2}"),
        (
            (x, np.ones((6, *(3,) * nd, 4))),
            r"weight's last dimension must be C_in/groups = 2, got 4",
        ),
        (
            (x, np.ones((6, *(3,) * nd, 1))),
            r"weight's last dimension must be C_in/groups = 2, got 1",
        ),
        ((x, w, np.zeros(5)), rf"^{op}: bias must have shape \(6,\), got \(5,\)"),
        ((x, w, np.zeros((1, 6))), r"bias must have shape \(6,\), got \(1, 6\)"),
        ((x, w, np.float64(1.0)), r"bias must have shape \(6,\), got \(\)"),
        ((x[:, :0], w), rf"^{op}: input spatial size"),
        ((x, w[:, :0]), rf"^{op}: kernel size"),
        ((x.astype(complex), w), rf"^{op}: input must be a real numeric array"),
        ((x, w.astype(object)), rf"^{op}: weight must be a real numeric array"),
        ((x, w, np.array(["a"] * 6)), rf"^{op}: bias must be a real numeric array"),
    ]
    for args, match in checks:
        with pytest.raises(ValueError, match=match):
            OP_FN[op](*args, **ok)


@pytest.mark.parametrize("op", ALL_OPS)
def test_rank_of_other_op_rejected(op):
    """Arrays shaped for a different number of spatial dimensions."""
    nd = OPS[op][0]
    other = 1 + nd % 3
    x, w = _arrays(other)
    with pytest.raises(ValueError, match=rf"^{op}: input must have rank {nd + 2}"):
        OP_FN[op](x, w)


@pytest.mark.parametrize(
    "op, size, k, kw, match",
    [
        ("conv1d", 2, 3, {}, r"^conv1d: output size must be >= 1, got 0"),
        ("conv2d", 3, 2, dict(dilation=(1, 4)), r"^conv2d: output size\[1\] must be >= 1"),
        ("conv3d", 2, 4, dict(padding=(1, 0, 1)), r"^conv3d: output size\[1\] must be >= 1"),
        ("conv_transpose1d", 1, 1, dict(padding=1), r"output size must be >= 1, got -1"),
        ("conv_transpose2d", 2, 1, dict(padding=(0, 1)), r"output size\[1\] must be >= 1, got 0"),
        ("conv_transpose3d", 1, 2, dict(padding=(0, 3, 0)), r"output size\[1\] must be >= 1"),
    ],
)
def test_empty_or_negative_output_size(op, size, k, kw, match):
    x, w = _arrays(OPS[op][0], size=size, k=k)
    with pytest.raises(ValueError, match=match):
        OP_FN[op](x, w, **kw)


@pytest.mark.parametrize("op", ALL_OPS)
def test_numpy_integer_parameters_accepted(op):
    nd, transposed = OPS[op]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, *(6,) * nd, 4))
    w = rng.standard_normal((4, *(2,) * nd, 2))
    plain = dict(stride=2, padding=1, dilation=2, groups=2)
    numpy_kw = dict(
        stride=np.int64(2),
        padding=tuple(np.int32(1) for _ in range(nd)),
        dilation=np.array([2] * nd),
        groups=np.int64(2),
    )
    if transposed:
        plain["output_padding"] = 1
        numpy_kw["output_padding"] = [np.uint8(1)] * nd
    np.testing.assert_array_equal(OP_FN[op](x, w, **numpy_kw), OP_FN[op](x, w, **plain))
