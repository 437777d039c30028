"""The reference VJPs (``reference/grad.py``) checked by exact identities, not finite differences.

* adjoint identities, since every op is bilinear in ``(x, w)``:
  ``<op(x, w), dy> == <x, grad_input(dy)> == <w, grad_weight(x, dy)>``, and with a bias
  ``<op(x, w) + b, dy> == <x, grad_input(dy)> + <b, grad_bias(dy)>``; both sides are sums of the
  same products ``x * w * dy`` in different orders, so they agree to 1e-10 of the sum of their
  absolute values on float inputs, and bit for bit on small integers;
* ``torch.autograd`` in float64 (PyTorch layout translated back to MLX layout);
* the error-bound inputs: ``abs_sum`` is the same VJP of ``|inputs|``, ``terms`` the same VJP of
  ones (every product counted once).

Cases come from :func:`conformance.strategies.valid_cases` (every parameter, groups, output
padding, padding beyond the dilated kernel).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings

from conformance.backends.base import channels_first, channels_first_weight, channels_last
from conformance.case import OPS, Case
from conformance.strategies import valid_cases
from reference import grad as RG
from reference.core import ConvResult
from reference.ops import run_op
from tests.test_reference import assert_bound_sums, padded_for_torch

ALL_OPS = tuple(OPS)


def prop(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def arrays(case: Case, integer: bool = False):
    """x, w, bias and dy in float64 from the case seed (small integers when ``integer``)."""
    rng = np.random.default_rng(case.seed)

    def draw(shape):
        if integer:
            return rng.integers(-4, 5, size=shape).astype(np.float64)
        return rng.uniform(-1.0, 1.0, shape)

    x, w, b = draw(case.x_shape), draw(case.w_shape), draw((case.out_channels,))
    y = forward(case, x, w)
    return x, w, b, draw(y.shape)


def forward(case: Case, x, w, b=None) -> np.ndarray:
    return run_op(case.op, case.ndim, case.transposed, x, w, b, **case.params())


def grads(case: Case, x, w, dy, with_bound=False) -> RG.Gradients:
    return RG.vjp(case.op, x, w, dy, bias=True, with_bound=with_bound, **case.params())


def dot(a, b) -> float:
    return float(np.vdot(np.ravel(a), np.ravel(b)))


@pytest.mark.parametrize("op", ALL_OPS)
def test_adjoint_identities(op):
    @prop(60)
    @given(case=valid_cases(op))
    def check(case):
        x, w, b, dy = arrays(case)
        g = grads(case, x, w, dy)
        y = forward(case, x, w)
        lhs = dot(y, dy)
        # Scale: the sum of |x * w * dy| over every product, i.e. <op(|x|, |w|), |dy|>.
        scale = dot(forward(case, np.abs(x), np.abs(w)), np.abs(dy)) + 1e-300
        assert abs(lhs - dot(x, g.input.out)) <= 1e-10 * scale, "grad_input adjoint"
        assert abs(lhs - dot(w, g.weight.out)) <= 1e-10 * scale, "grad_weight adjoint"
        with_bias = dot(forward(case, x, w, b), dy)
        bias_scale = scale + dot(np.abs(b), np.abs(dy).sum(axis=tuple(range(dy.ndim - 1))))
        assert abs(with_bias - dot(x, g.input.out) - dot(b, g.bias.out)) <= 1e-10 * bias_scale
        assert g.input.out.shape == x.shape and g.weight.out.shape == w.shape
        assert g.bias.out.shape == b.shape

    check()


@pytest.mark.parametrize("op", ALL_OPS)
def test_adjoint_identities_exact_on_integers(op):
    """Small integers: every product and partial sum is exact, so the identities hold exactly."""

    @prop(30)
    @given(case=valid_cases(op))
    def check(case):
        x, w, b, dy = arrays(case, integer=True)
        g = grads(case, x, w, dy)
        lhs = dot(forward(case, x, w), dy)
        assert lhs == dot(x, g.input.out) == dot(w, g.weight.out)
        assert dot(forward(case, x, w, b), dy) == lhs + dot(b, g.bias.out)

    check()


def torch_grads(case: Case, x, w, b, dy):
    """torch.autograd in float64; results in MLX layout."""
    xt = torch.from_numpy(channels_first(x)).requires_grad_()
    wt = torch.from_numpy(channels_first_weight(case, w)).requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    xin, kw = padded_for_torch(xt, case.params())  # a mode's numbers, for any stride
    y = getattr(F, case.op)(xin, wt, bt, **kw)
    gx, gw, gb = torch.autograd.grad(y, [xt, wt, bt], torch.from_numpy(channels_first(dy)))
    gw = gw.numpy()
    if case.transposed:  # (C_in, C_out/g, *K) -> (C_out, *K, C_in/g)
        g = case.groups
        c_in, c_out_g, *kernel = gw.shape
        gw = np.moveaxis(gw.reshape(g, c_in // g, c_out_g, *kernel), 1, -1)
        gw = gw.reshape(g * c_out_g, *kernel, c_in // g)
    else:
        gw = channels_last(gw)
    return channels_last(gx.numpy()), gw, gb.numpy()


@pytest.mark.parametrize("op", ALL_OPS)
def test_agrees_with_torch_autograd_float64(op):
    @prop(40)
    @given(case=valid_cases(op))
    def check(case):
        x, w, b, dy = arrays(case)
        g = grads(case, x, w, dy, with_bound=True)
        tx, tw, tb = torch_grads(case, x, w, b, dy)
        # Both are float64 sums of the same products: within a few ulps of the absolute sum.
        for name, mine, theirs in (
            ("grad_input", g.input, tx),
            ("grad_weight", g.weight, tw),
            ("grad_bias", g.bias, tb),
        ):
            assert mine.out.shape == theirs.shape, name
            tol = 1e-13 * (mine.abs_sum + 1e-300) * mine.terms
            assert np.all(np.abs(mine.out - theirs) <= tol), name

    check()


@pytest.mark.parametrize("op", ALL_OPS)
def test_bound_inputs_are_the_vjp_of_abs_values_and_of_ones(op):
    @prop(30)
    @given(case=valid_cases(op))
    def check(case):
        x, w, _, dy = arrays(case)
        g = grads(case, x, w, dy, with_bound=True)
        kw = case.params()
        abs_in = RG.grad_input(case.op, x.shape, np.abs(w), np.abs(dy), **kw)
        abs_w = RG.grad_weight(case.op, np.abs(x), w.shape, np.abs(dy), **kw)
        # abs_sum: exact, or (float32 sums) above it by at most the rounding allowance.
        assert_bound_sums(g.input.abs_sum, abs_in, g.input.terms)
        assert_bound_sums(g.weight.abs_sum, abs_w, g.weight.terms)
        np.testing.assert_allclose(
            g.bias.abs_sum, np.abs(dy).sum(axis=tuple(range(dy.ndim - 1))), rtol=1e-14
        )
        ones_in = RG.grad_input(case.op, x.shape, np.ones_like(w), np.ones_like(dy), **kw)
        ones_w = RG.grad_weight(case.op, np.ones_like(x), w.shape, np.ones_like(dy), **kw)
        ones_b = RG.grad_bias(np.ones_like(dy))
        assert np.array_equal(g.input.terms, ones_in)
        assert np.array_equal(g.weight.terms, ones_w)
        assert np.array_equal(g.bias.terms, ones_b)
        for r in (g.input, g.weight, g.bias):
            assert r.terms.dtype == np.int64 and r.terms.shape == r.out.shape
            assert np.all(r.abs_sum >= np.abs(r.out))

    check()


def test_grad_weight_terms_count_batch_and_positions():
    """conv1d, 2 batches, 5 positions, kernel 3, padding 1: the edge taps see 4 in-range
    positions per batch, the middle tap 5; channels do not multiply the count."""
    x, w = np.ones((2, 5, 3)), np.ones((4, 3, 3))
    dy = np.ones((2, 5, 4))
    res = RG.grad_weight("conv1d", x, w.shape, dy, padding=1, with_bound=True)
    assert isinstance(res, ConvResult)
    assert res.terms[0, :, 0].tolist() == [8, 10, 8]
    gi = RG.grad_input("conv1d", x.shape, w, dy, padding=1, with_bound=True)
    assert gi.terms[0, :, 0].tolist() == [8, 12, 12, 12, 8]  # taps x C_out


def test_stride_skipped_input_positions_get_zero_gradient():
    """conv1d of 6 positions, kernel 2, stride 3 (no padding): windows cover 0-1 and 3-4; input
    positions 2 and 5 feed no output."""
    x, w = np.ones((1, 6, 1)), np.ones((1, 2, 1))
    dy = np.ones((1, 2, 1))
    gi = RG.grad_input("conv1d", x.shape, w, dy, stride=3)
    assert gi[0, :, 0].tolist() == [1, 1, 0, 1, 1, 0]


def test_output_padding_positions_feed_nothing():
    """conv_transpose1d, 2 inputs, kernel 1, stride 3, output padding 2: outputs 0 and 3 come
    from the inputs; the cotangent at the padded outputs 4, 5 (and 1, 2) must not reach them."""
    x, w = np.ones((1, 2, 1)), np.ones((1, 1, 1))
    dy = np.arange(1.0, 7.0).reshape(1, 6, 1)
    kw = {"stride": 3, "output_padding": 2}
    gi = RG.grad_input("conv_transpose1d", x.shape, w, dy, **kw)
    assert gi[0, :, 0].tolist() == [1.0, 4.0]
    gw = RG.grad_weight("conv_transpose1d", x, w.shape, dy, **kw)
    assert gw.ravel().tolist() == [5.0]


def test_regroup_weight_swaps_channel_roles():
    w = np.arange(6 * 2 * 4, dtype=np.float64).reshape(6, 2, 4)  # C_out 6, K 2, C_in/g 4; g 2
    wt = RG.regroup_weight(w, 2)
    assert wt.shape == (8, 2, 3)
    assert wt[4 + 1, 1, 2] == w[3 + 2, 1, 1]  # group 1: ci 1, co 2
    assert np.array_equal(RG.regroup_weight(wt, 2), w)


def test_rejects_bad_arguments():
    x, w = np.ones((1, 5, 2)), np.ones((3, 2, 2))
    with pytest.raises(ValueError, match="cotangent dy must have the output shape"):
        RG.grad_input("conv1d", x.shape, w, np.ones((1, 5, 3)))
    with pytest.raises(ValueError, match="cotangent dy must have the output shape"):
        RG.grad_weight("conv1d", x, w.shape, np.ones((1, 4, 2)))
    with pytest.raises(ValueError, match="unknown op"):
        RG.grad_input("conv4d", x.shape, w, np.ones((1, 4, 3)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        RG.grad_weight("conv1d", x, w.shape, np.ones((1, 4, 3)), stride=0)
    with pytest.raises(ValueError, match="rank >= 3"):
        RG.grad_bias(np.ones(3))
