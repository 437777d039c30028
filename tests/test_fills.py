"""Input fills (``Case.fill``): the id token, the inputs of each fill, the exact comparison of the
int fill, overflow of the wide fill, and a planted bug that only the sparse fill shows."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import coverage as C
from conformance import diff as D
from conformance.case import ALL_OPS, FILLS, OPS, Case, format_id, parse_id
from conformance.corpus import load_corpus, parse_corpus
from conformance.diff import is_failure
from conformance.dtypes import round_to
from conformance.inputs import (
    EXACT_INTEGER_LIMIT,
    int_magnitude,
    make_inputs,
    reduction_terms,
    reference_output,
    run_reference,
)
from conformance.known_failures import fails_with_flushed_subnormals
from conformance.runner import Runner
from reference.core import ConvResult
from reference.ops import run_op
from tests.planted_fills import FlushesSubnormals, NanOnZeroInput, NegatedSum, SquashesNaN

ROOT = Path(__file__).resolve().parent.parent
ID_RE = re.compile(r"^[a-z0-9_x-]+$")
F16_MAX = 65504.0


def with_fill(case_id: str, fill: str) -> Case:
    return replace(parse_id(case_id), fill=fill)


def float32_kernel(case: Case, formulation: str = "per-tap") -> np.ndarray:
    """A correct float32 kernel: the reference's own products and sums in float32 arithmetic,
    rounded to the case dtype."""
    inp = make_inputs(case)
    out = reference_output(
        case, inp.x, inp.w, inp.bias, formulation=formulation, compute_dtype=np.float32
    )
    return round_to(out, case.dtype)


# --- the id token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fill",
    [
        ("conv2d-n1-c3x4-s5-k3-f32", "uniform"),
        ("conv2d-n1-c3x4-s5-k3-f32-fint", "int"),
        ("conv2d-n1-c3x4-s5-k3-bias-f16-fsparse-seed7", "sparse"),
        ("conv_transpose3d-n2-c8x16-s5-k3-st2x1x2-p1-op1-bf16-fwide-seed3", "wide"),
        ("conv1d-n1-c2x2-s6-k3-f32-fspecial-seed119", "special"),
    ],
)
def test_fill_ids_round_trip(text: str, fill: str) -> None:
    case = parse_id(text)
    assert case.fill == fill
    assert format_id(case) == case.id == text
    assert ID_RE.match(text)
    assert Case.from_dict(json.loads(json.dumps(case.to_dict()))) == case


def test_uniform_is_written_nowhere_and_read_explicitly() -> None:
    case = parse_id("conv1d-n1-c2x2-s5-k3-f32-funiform-seed2")
    assert case.fill == "uniform" and case.id == "conv1d-n1-c2x2-s5-k3-f32-seed2"
    # Old result files have no fill field; a uniform case writes none either.
    d = case.to_dict()
    assert "fill" not in d and Case.from_dict(d) == case
    assert Case.from_dict({**d, "fill": "int"}).fill == "int"
    assert replace(case, fill="sparse").to_dict()["fill"] == "sparse"


@pytest.mark.parametrize(
    "text, message",
    [
        ("conv1d-n1-c2x2-s5-k3-f32-fdense", r"unknown fill 'dense'.*'fill'.*int, sparse, wide"),
        ("conv1d-n1-c2x2-s5-k3-fint-f32", r"dtype out of order"),
        ("conv1d-n1-c2x2-s5-k3-f32-seed2-fint", r"fill out of order \(after 'seed2'\)"),
        ("conv1d-n1-c2x2-s5-k3-f32-fint-fwide", r"fill given twice"),
        ("conv1d-n1-c2x2-s5-k3-f32-fint-p1", r"token 'p1' must come before bias and dtype"),
        ("conv1d-n1-c2x2-s5-k3-fint", r"missing dtype"),
    ],
)
def test_bad_fill_tokens(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_id(text)


def test_case_rejects_an_unknown_fill() -> None:
    with pytest.raises(ValueError, match=r"Case.fill must be one of uniform, int, sparse, wide"):
        Case("conv1d", 1, 1, 1, 4, 1, fill="dense")
    with pytest.raises(ValueError, match=r"Case.fill"):
        Case.from_dict({**parse_id("conv1d-n1-c1x1-s4-k1-f32").to_dict(), "fill": "Int"})


def test_positional_construction_is_unchanged() -> None:
    """``fill`` is the last field: the others keep their positions."""
    args = ("conv1d", 1, 2, 2, (5,), (3,), (2,), (1,), (1,), (0,), 1, "float16", True, 4)
    case = Case(*args)
    assert case.seed == 4 and case.fill == "uniform"
    assert case.id == "conv1d-n1-c2x2-s5-k3-st2-p1-bias-f16-seed4"


@settings(max_examples=150, deadline=None)
@given(
    op=st.sampled_from(tuple(OPS)),
    fill=st.sampled_from(FILLS),
    dtype=st.sampled_from(("float32", "float16", "bfloat16")),
    bias=st.booleans(),
    seed=st.integers(0, 10**6),
    stride=st.integers(1, 3),
)
def test_any_fill_round_trips_and_selects_by_op(op, fill, dtype, bias, seed, stride) -> None:
    case = Case(op, 2, 4, 6, 5, 3, stride=stride, dtype=dtype, bias=bias, seed=seed, fill=fill)
    text = case.id
    assert ID_RE.match(text)
    assert parse_id(text) == case and format_id(parse_id(text)) == text
    assert Case.from_dict(json.loads(json.dumps(case.to_dict()))) == case
    # pytest -k OP selects by op: no other op's name appears in the id.
    assert [name for name in OPS if name in text.split("-")[0]] == [op]
    assert not any(name in "-".join(text.split("-")[1:]) for name in OPS)


def _existing_ids() -> list[str]:
    ids = [fc.case.id for fc in load_corpus()]
    golden = ROOT / "tests" / "golden"
    for path in sorted(golden.glob("*.txt")):
        ids += [
            line.strip()
            for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return ids


def test_every_existing_id_parses_and_formats_the_same() -> None:
    """Corpus ids without a fill token (most were written before fills existed) are uniform
    cases, the others have their token's fill; golden ids (the generated list, which draws
    fills) round-trip whatever their fill."""
    corpus = [fc.case.id for fc in load_corpus()]
    assert len(corpus) > 50
    for text in corpus:
        tokens = [t[1:] for t in text.split("-") if t[1:] in FILLS and t[0] == "f"]
        assert parse_id(text).fill == (tokens[0] if tokens else "uniform"), text
        assert format_id(parse_id(text)) == text
    for text in _existing_ids():
        assert format_id(parse_id(text)) == text


def test_corpus_reads_fill_ids(tmp_path: Path) -> None:
    path = tmp_path / "fills.toml"
    path.write_text(
        '[[case]]\nid = "conv2d-n1-c4x4-s6-k3-f16-fint-seed2"\nnote = "exact"\n'
        '[[case]]\nid = "conv1d-n1-c2x2-s6-k3-f32-fsparse"\nnote = "zeros"\n'
    )
    assert [fc.case.fill for fc in parse_corpus(path)] == ["int", "sparse"]
    path.write_text('[[case]]\nid = "conv1d-n1-c2x2-s6-k3-f32-fzero"\n')
    with pytest.raises(ValueError, match=r"fills.toml: case #1: 'id': .*unknown fill 'zero'"):
        parse_corpus(path)


def test_coverage_has_a_region_per_non_default_fill() -> None:
    fill_regions = {g.label: g for g in C.REGIONS if g.label in FILLS}
    assert set(fill_regions) == {"int", "sparse", "wide", "special"}
    for label, region in fill_regions.items():
        assert region.ops == tuple(ALL_OPS)
        holds = {
            fill for fill in FILLS if region.holds(with_fill("conv1d-n1-c2x2-s5-k3-f32", fill))
        }
        assert holds == {label}


# --- the inputs of each fill --------------------------------------------------------------------


def test_uniform_inputs_are_unchanged() -> None:
    """The uniform fill draws exactly what every earlier version drew: x, w, then bias."""
    case = parse_id("conv_transpose2d-n2-c4x6-s5-k3-st2-g2-bias-bf16-seed11")
    rng = np.random.default_rng(11)
    inp = make_inputs(case)
    for got, shape in ((inp.x, case.x_shape), (inp.w, case.w_shape), (inp.bias, (6,))):
        np.testing.assert_array_equal(got, round_to(rng.uniform(-1.0, 1.0, shape), "bfloat16"))


INT_CASES = [
    "conv1d-n2-c3x5-s9-k3-f32-fint",
    "conv2d-n2-c6x4-s7-k3-p1-g2-bias-f16-fint-seed1",
    "conv2d-n1-c16x8-s6-k3-bias-bf16-fint-seed2",  # 144 products: m = 1
    "conv2d-n1-c32x8-s6-k3-bf16-fint-seed3",  # 288 >= 256: sparse +-1 weights
    "conv2d-n1-c256x4-s5-k3-bias-f16-fint-seed4",  # 2304 >= 2048: sparse +-1 weights
    "conv3d-n1-c4x4-s5-k3-st2-d1x2x1-bias-f16-fint",
    "conv_transpose1d-n2-c8x4-s7-k5-st3-op2-bias-f32-fint-seed5",
    "conv_transpose2d-n1-c6x6-s4-k3-st2-p1-op1-g3-bf16-fint",
    "conv_transpose3d-n1-c4x8-s3-k2-st2-bias-f16-fint-seed6",
]


@pytest.mark.parametrize("case_id", INT_CASES)
def test_int_fill_makes_the_reference_exact(case_id: str) -> None:
    case = parse_id(case_id)
    inp = make_inputs(case)
    limit = EXACT_INTEGER_LIMIT[case.dtype]
    arrays = [inp.x, inp.w] + ([inp.bias] if case.bias else [])
    m = int_magnitude(case)
    for a in arrays:
        assert np.all(a == np.rint(a))
        assert np.abs(a).max() <= max(m, 1)
    n = reduction_terms(case)
    if m:
        assert n * m * m + case.bias * m <= limit < n * (m + 1) ** 2 + case.bias * (m + 1)
    else:  # at most L - [bias] nonzero weights per output channel
        assert n + case.bias > limit
        per_channel = np.count_nonzero(inp.w.reshape(case.out_channels, -1), axis=1)
        assert per_channel.max() <= limit - case.bias
    ref = run_reference(case)
    # Every partial sum is at most sum |x||w| (+ |b|) <= L: exact in float32 and in the dtype.
    assert ref.abs_sum.max() <= limit
    assert np.all(ref.out == np.rint(ref.out))
    np.testing.assert_array_equal(round_to(ref.out, case.dtype), ref.out)
    # Any summation order in float32 gives the same, bit for bit.
    for formulation in ("per-tap", "im2col"):
        got = float32_kernel(case, formulation)
        np.testing.assert_array_equal(got, ref.out)
        assert D.compare(case, got, ref).verdict == D.PASS


def test_int_fill_reference_matches_integer_arithmetic() -> None:
    case = parse_id("conv2d-n2-c6x4-s7-k3-p1-g2-bias-f16-fint-seed1")
    inp = make_inputs(case)
    x = np.pad(inp.x.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    w = inp.w.astype(np.int64)  # (4, 3, 3, 3): two groups of 2 output x 3 input channels
    out = np.zeros((2, 7, 7, 4), np.int64)
    for g in range(2):
        for i in range(3):
            for j in range(3):
                patch = x[:, i : i + 7, j : j + 7, 3 * g : 3 * g + 3]
                out[..., 2 * g : 2 * g + 2] += np.einsum(
                    "nhwc,oc->nhwo", patch, w[2 * g : 2 * g + 2, i, j]
                )
    out += inp.bias.astype(np.int64)
    np.testing.assert_array_equal(run_reference(case).out, out)


def _one_ulp_up(got: np.ndarray, index: tuple[int, ...], dtype: str) -> np.ndarray:
    """``got`` with the element at ``index`` moved one ulp of ``dtype`` away from zero."""
    out = np.array(got, copy=True)
    v = np.float32(out[index])
    if dtype == "float16":
        half = np.float16(v)
        out[index] = np.nextafter(half, np.copysign(np.float16(np.inf), half))
    elif dtype == "bfloat16":  # the top half of a float32: one ulp is 1 << 16 in its bits
        out[index] = (np.array([v]).view(np.uint32) + np.uint32(1 << 16)).view(np.float32)[0]
    else:
        out[index] = np.nextafter(v, np.copysign(np.float32(np.inf), v))
    assert abs(out[index]) > abs(got[index])
    np.testing.assert_array_equal(round_to(out, dtype), out)
    return out


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_one_ulp_on_one_element_fails_under_int_and_passes_under_uniform(dtype: str) -> None:
    """The int fill's comparison is exact; the same one-ulp error on one element of a long
    uniform reduction is within what float32 accumulation gives."""
    base = f"conv2d-n2-c128x16-s8-k3-p1-bias-{dtype}-seed3"
    for fill, want in (("int", D.VALUE_MISMATCH), ("uniform", D.PASS)):
        case = with_fill(base, fill)
        ref = run_reference(case)
        correct = round_to(ref.out, case.dtype)
        assert D.compare(case, correct, ref).verdict == D.PASS
        index = (1, 3, 4, 5)
        result = D.compare(case, _one_ulp_up(correct, index, case.dtype), ref)
        assert result.verdict == want, (fill, result.detail)
        if fill == "int":
            assert "int fill" in result.detail and "exact" in result.detail
            assert result.metrics.over_tolerance == 1
            assert result.metrics.worst.batch == 1 and result.metrics.worst.channel == 5
            assert result.metrics.statistical_ratio is None  # no statistical tier
            assert result.metrics.precision_hint is None


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_int_fill_catches_one_unit_where_the_bound_would_not(dtype: str) -> None:
    """With a bias, the proven bound's output rounding term ``u_out (|want| + S)`` can pass one
    unit (an integer): a depthwise 1x1 layer has one product per element, so its int fill uses
    nearly all of the dtype's integers. The exact comparison still fails an element off by 1."""
    case = parse_id(f"conv2d-n2-c16x16-s6-k1-g16-bias-{dtype}-fint-seed2")
    ref = run_reference(case)
    loose = D.error_bound(case, ref, D.Tolerance(), exact=False)
    got = np.array(round_to(ref.out, case.dtype), copy=True)
    up = np.abs(ref.out) + 1 <= EXACT_INTEGER_LIMIT[case.dtype]  # want +- 1 is exact too
    index = np.unravel_index(np.argmax(np.where(up, loose, 0)), got.shape)
    assert loose[index] > 1.0  # the bound alone would pass this element
    got[index] += np.sign(got[index]) or 1.0
    result = D.compare(case, got, ref)
    assert result.verdict == D.VALUE_MISMATCH and result.metrics.over_tolerance == 1


def test_exact_comparison_needs_the_summation_model() -> None:
    case = parse_id("conv1d-n2-c8x8-s20-k3-f32-fint")
    ref = run_reference(case)
    assert D.exact_comparison(case, ref, D.Tolerance())
    # A factor above 1 declares an algorithm outside the model; float16 accumulation cannot hold
    # float32's integers: both get the bound.
    assert not D.exact_comparison(case, ref, D.Tolerance(factor=2.0))
    assert not D.exact_comparison(case, ref, D.Tolerance(accumulation="float16"))
    got = _one_ulp_up(round_to(ref.out, "float32"), (0, 3, 2), "float32")
    assert D.compare(case, got, ref, D.Tolerance(factor=2.0)).verdict == D.PASS
    # An output that is not integral (a gradient with a uniform cotangent) keeps the bound too.
    halves = replace(ref, out=ref.out + 0.5)
    assert not D.exact_comparison(case, halves, D.Tolerance())
    assert not D.exact_comparison(replace(case, fill="uniform"), ref, D.Tolerance())


def test_sparse_fill_has_exact_zeros_in_every_input() -> None:
    case = parse_id("conv2d-n2-c8x8-s12-k3-bias-f16-fsparse-seed9")
    inp = make_inputs(case)
    uniform = make_inputs(replace(case, fill="uniform"))
    for got, dense in ((inp.x, uniform.x), (inp.w, uniform.w), (inp.bias, uniform.bias)):
        zero = got == 0
        assert 0.3 < zero.mean() < 0.7, zero.mean()
        assert not np.signbit(got[zero]).any()  # +0 only
        np.testing.assert_array_equal(got[~zero], dense[~zero])
    assert not (uniform.x == 0).any() and not (uniform.w == 0).any()


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_special_fill_puts_ieee_specials_into_the_uniform_values(dtype: str) -> None:
    case = parse_id(f"conv2d-n2-c16x16-s12-k3-bias-{dtype}-fspecial-seed9")
    inp = make_inputs(case)
    uniform = make_inputs(replace(case, fill="uniform"))
    x, tiny = inp.x, 2.0 ** {"f32": -126, "f16": -14, "bf16": -126}[dtype]
    assert 1 <= (~np.isfinite(x)).sum() <= 3
    neg_zero = (x == 0) & np.signbit(x)
    subnormal = (x != 0) & (np.abs(x) < tiny)
    for share in (neg_zero.mean(), subnormal.mean()):
        assert 0.03 < share < 0.1, share
    changed = neg_zero | subnormal | ~np.isfinite(x)
    np.testing.assert_array_equal(x[~changed], uniform.x[~changed])
    # Every value is one of the dtype: rounding to it changes nothing (NaN aside).
    np.testing.assert_array_equal(round_to(x, case.dtype), x)
    assert make_inputs(case) is inp  # cached: the same arrays on every call


def test_special_fill_reference_is_ieee_per_element() -> None:
    case = parse_id("conv1d-n1-c1x1-s1-k1-f32-fspecial-seed119")  # x = inf, w = -5.3e-39
    inp = make_inputs(case)
    assert np.isinf(inp.x).all() and 0 < -inp.w.item() < 2.0**-126
    ref = run_reference(case)
    assert ref.out.item() == -np.inf
    # A kernel that flushes the subnormal weight gets inf * 0 = NaN: a nan-inf-mismatch.
    result = D.compare(case, np.full((1, 1, 1), np.nan, np.float32), ref)
    assert result.verdict == D.NAN_INF_MISMATCH
    assert "got nan, want -inf" in result.detail
    assert D.compare(case, np.full((1, 1, 1), -np.inf, np.float32), ref).verdict == D.PASS
    assert D.compare(case, np.full((1, 1, 1), np.inf, np.float32), ref).verdict == (
        D.NAN_INF_MISMATCH
    )


def test_nan_is_allowed_only_where_padding_meets_a_non_finite_weight() -> None:
    """conv1d, padding 1, x = [1, 2, 3], w = [inf, 1, 1]: out[0]'s inf tap is on padding (a
    kernel that multiplies padding gets NaN, one that skips it 3); out[1] and out[2] are inf."""
    case = parse_id("conv1d-n1-c1x1-s3-k3-p1-f32")
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 3, 1)
    w = np.array([np.inf, 1.0, 1.0], np.float32).reshape(1, 3, 1)
    ref = run_op("conv1d", 1, False, x, w, None, padding=1, with_bound=True)
    np.testing.assert_array_equal(ref.out[0, :, 0], [3.0, np.inf, np.inf])
    for got in ([3.0, np.inf, np.inf], [np.nan, np.inf, np.inf]):
        out = np.array(got, np.float32).reshape(1, 3, 1)
        assert D.compare(case, out, ref).verdict == D.PASS
    for got in ([0.0, np.inf, np.inf], [3.0, np.nan, np.inf], [3.0, -np.inf, np.inf]):
        out = np.array(got, np.float32).reshape(1, 3, 1)
        assert D.compare(case, out, ref).verdict != D.PASS, got


def test_subnormal_products_are_within_the_bound() -> None:
    """A float32 product below the normal range is rounded absolutely (to a multiple of 2^-149):
    3 * 2^-149 * 0.5 rounds to 2 * 2^-149, so the sum of two is a whole step off, within the
    bound (which has half a step per product for it)."""
    case = parse_id("conv1d-n1-c2x1-s1-k1-f32")
    x = np.array([3 * 2.0**-149, 3 * 2.0**-149], np.float32).reshape(1, 1, 2)
    w = np.array([0.5, 0.5], np.float32).reshape(1, 1, 2)
    ref = run_op("conv1d", 1, False, x, w, None, with_bound=True)
    got = (x.reshape(2) * w.reshape(2)).astype(np.float32)  # each product rounded in float32
    out = np.float32(got[0] + got[1]).reshape(1, 1, 1)
    assert out.item() != ref.out.item()  # rounding changed it
    assert D.compare(case, out, ref).verdict == D.PASS


def test_wide_fill_spans_binades_within_range() -> None:
    for dtype in ("f32", "bf16", "f16"):
        case = parse_id(f"conv2d-n2-c16x8-s10-k3-bias-{dtype}-fwide-seed1")
        inp = make_inputs(case)
        for a in (inp.x, inp.w, inp.bias):
            mag = np.abs(a)
            assert np.all(np.isfinite(a)) and mag.min() > 0
            assert mag.min() >= (2.0**-14 if dtype == "f16" else 2.0**-126)  # normal numbers
            assert np.any(a < 0) and np.any(a > 0)
        spread = math.log2(np.abs(inp.x).max() / np.abs(inp.x).min())
        assert spread > (12 if dtype == "f16" else 28), (dtype, spread)
        if dtype != "f16":
            assert np.isfinite(round_to(run_reference(case).out, case.dtype)).all()


WIDE_F16 = "conv2d-n2-c8x8-s10-k3-f16-fwide"


def test_wide_fill_overflows_float16_and_inf_is_judged_by_sign() -> None:
    case = parse_id(WIDE_F16)
    ref = run_reference(case)
    rounded = round_to(ref.out, case.dtype)
    overflow = np.abs(ref.out) > F16_MAX
    assert overflow.any() and not overflow.all()
    assert np.isinf(rounded[overflow]).all()
    # The correctly rounded output passes, inf included, and so does a float32 kernel.
    assert D.compare(case, rounded, ref).verdict == D.PASS
    for formulation in ("per-tap", "im2col"):
        assert D.compare(case, float32_kernel(case, formulation), ref).verdict == D.PASS
    index = tuple(np.argwhere(overflow)[0])
    for bad in (np.nan, -rounded[index], np.float32(F16_MAX) * np.sign(rounded[index])):
        got = np.array(rounded, copy=True)
        got[index] = bad
        result = D.compare(case, got, ref)
        assert result.verdict == D.NAN_INF_MISMATCH, (bad, result.detail)
    # A kernel that overflows where the reference does not (float16 partial sums, say).
    finite = tuple(np.argwhere(np.abs(ref.out) < 100)[0])
    got = np.array(rounded, copy=True)
    got[finite] = np.inf
    assert D.compare(case, got, ref).verdict == D.NAN_INF_MISMATCH
    # The statistical tier is not applied to wide fills.
    assert D.compare(case, rounded, ref).metrics.statistical_ratio is None


def _one_element(want: float, abs_sum: float, terms: int) -> tuple[Case, ConvResult]:
    case = parse_id("conv1d-n1-c1x1-s1-k1-f16-fwide")
    shape = (1, 1, 1)
    return case, ConvResult(
        np.full(shape, want), np.full(shape, abs_sum), np.full(shape, terms, np.int64)
    )


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_near_the_overflow_threshold_either_rounding_passes(sign: float) -> None:
    """Within the bound of 65520 (where float16 rounding turns to inf) a conforming kernel's
    float32 sum may land on either side: inf and 65504 both pass; far from it they do not."""
    # Bound about 2^-24 * 1000 * 2^20 + 2^-11 * 65520: 94.5.
    case, ref = _one_element(sign * 65515.0, 2.0**20, 1000)  # rounds to 65504
    assert D.compare(case, np.full((1, 1, 1), sign * np.inf, np.float32), ref).verdict == D.PASS
    assert D.compare(case, np.full((1, 1, 1), sign * F16_MAX, np.float32), ref).verdict == D.PASS
    bad = D.compare(case, np.full((1, 1, 1), -sign * np.inf, np.float32), ref)
    assert bad.verdict == D.NAN_INF_MISMATCH
    case, ref = _one_element(sign * 65530.0, 2.0**20, 1000)  # rounds to inf
    assert D.compare(case, np.full((1, 1, 1), sign * F16_MAX, np.float32), ref).verdict == D.PASS
    assert D.compare(case, np.full((1, 1, 1), sign * np.inf, np.float32), ref).verdict == D.PASS
    # A tight bound: 65400 is no overflow candidate, 70000 is no finite one.
    case, ref = _one_element(sign * 65400.0, 65400.0, 1)
    assert D.compare(case, np.full((1, 1, 1), sign * np.inf, np.float32), ref).verdict == (
        D.NAN_INF_MISMATCH
    )
    case, ref = _one_element(sign * 70000.0, 70000.0, 1)
    assert D.compare(case, np.full((1, 1, 1), sign * F16_MAX, np.float32), ref).verdict == (
        D.NAN_INF_MISMATCH
    )


@pytest.mark.parametrize(
    "case_id",
    [
        "conv1d-n2-c64x8-s40-k3-f32-fsparse",
        "conv2d-n2-c16x8-s10-k3-bias-bf16-fsparse-seed2",
        "conv_transpose2d-n1-c8x8-s6-k3-st2-bias-f16-fsparse",
        "conv1d-n2-c64x8-s40-k3-f32-fwide",
        "conv2d-n2-c16x8-s10-k3-bias-bf16-fwide-seed2",
        "conv3d-n1-c32x8-s5-k3-bias-f16-fwide",
        "conv_transpose2d-n1-c8x8-s6-k3-st2-bias-f16-fwide",
        "conv1d-n2-c64x8-s40-k3-p1-f32-fspecial",
        "conv2d-n2-c16x8-s10-k3-p2-bias-bf16-fspecial-seed2",
        "conv3d-n1-c8x8-s5-k3-p1-bias-f16-fspecial-seed3",
        "conv_transpose1d-n1-c8x8-s9-k3-st2-p1-op1-bias-f32-fspecial-seed4",
        "conv_transpose2d-n1-c8x8-s6-k3-st2-bias-f16-fspecial",
        "conv_transpose3d-n1-c4x4-s3-k2-st2-d2-bf16-fspecial-seed5",
    ],
)
def test_a_correct_float32_kernel_passes_every_fill(case_id: str) -> None:
    """Per-tap skips padding, im2col multiplies it (0 * inf is NaN there): both conform."""
    case = parse_id(case_id)
    ref = run_reference(case)
    for formulation in ("per-tap", "im2col"):
        result = D.compare(case, float32_kernel(case, formulation), ref)
        assert result.verdict == D.PASS, (formulation, result.detail)
        judged = case.fill in D.STATISTICAL_FILLS
        assert (result.metrics.statistical_ratio is not None) == judged


# --- a planted bug only the sparse fill shows -----------------------------------------------------

PLANTED_CASES = [
    "conv1d-n2-c4x6-s11-k3-st2-p1-f32",
    "conv1d-n1-c6x6-s9-k3-d2-g3-bias-bf16-seed1",
    "conv2d-n2-c3x4-s7-k3-p1-f16-seed2",
    "conv2d-n1-c8x8-s6x5-k2x3-st2x1-g8-bias-f32-seed3",
    "conv3d-n1-c2x3-s4-k2-p1-bf16-seed4",
    "conv_transpose1d-n2-c4x4-s6-k3-st3-op1-bias-f32-seed5",
    "conv_transpose2d-n1-c4x6-s4-k3-st2-p1-op1-g2-f16-seed6",
    "conv_transpose3d-n1-c2x2-s3-k2-st2-bias-bf16-seed7",
]


@pytest.mark.parametrize("case_id", PLANTED_CASES)
def test_nan_on_zero_input_passes_uniform_and_fails_sparse(case_id: str) -> None:
    runner = Runner([NanOnZeroInput()])
    (uniform,) = runner.run_case(parse_id(case_id))
    assert uniform.verdict == D.PASS, uniform.summary()
    (sparse,) = runner.run_case(with_fill(case_id, "sparse"))
    assert sparse.verdict == D.NAN_INF_MISMATCH, sparse.summary()
    # The int fill shows it where it drew a zero (float32's integers are large: rarely); the
    # wide fill has no zeros.
    case = with_fill(case_id, "int")
    (exact,) = runner.run_case(case)
    has_zero = bool((make_inputs(case).x == 0).any())
    assert exact.verdict == (D.NAN_INF_MISMATCH if has_zero else D.PASS), exact.summary()
    (wide,) = runner.run_case(with_fill(case_id, "wide"))
    assert wide.verdict == D.PASS, wide.summary()


def test_nan_on_zero_input_hits_only_receptive_fields_with_a_zero() -> None:
    case = parse_id("conv1d-n1-c1x1-s40-k2-st2-f32-fsparse-seed1")
    inp = make_inputs(case)
    out = NanOnZeroInput().run(case, inp)
    zero = inp.x[0, :, 0] == 0
    want = np.array([zero[2 * i : 2 * i + 2].any() for i in range(20)])
    assert 0 < want.sum() < 20
    np.testing.assert_array_equal(np.isnan(out[0, :, 0]), want)


# --- planted bugs only the special and int fills show ---------------------------------------------


@pytest.mark.parametrize("case_id", PLANTED_CASES)
def test_special_value_bugs_pass_uniform_and_fail_special(case_id: str) -> None:
    """NaN scrubbed to 0 and subnormals flushed pass every uniform case; the special fill
    catches them wherever its reference has a NaN (scrubbing) or flushing changes the result."""
    case = with_fill(case_id, "special")
    ref = run_reference(case)
    for planted in (SquashesNaN(), FlushesSubnormals()):
        runner = Runner([planted])
        (uniform,) = runner.run_case(parse_id(case_id))
        assert uniform.verdict == D.PASS, uniform.summary()
        (special,) = runner.run_case(case)
        if isinstance(planted, SquashesNaN):
            expect_failure = bool(np.isnan(ref.out).any())
        else:
            expect_failure = fails_with_flushed_subnormals(case)
        assert is_failure(special.verdict) == expect_failure, (planted.name, special.summary())


def test_special_fill_catches_the_planted_bugs_on_most_cases() -> None:
    """Over 40 special cases, most catch NaN scrubbing; flushing is caught on most float32 and
    bfloat16 cases and on no float16 one (float16 subnormals are normal float32 numbers, which
    flushing leaves alone)."""
    cases = [with_fill(c, "special") for c in PLANTED_CASES]
    cases = [replace(c, seed=c.seed * 100 + i) for c in cases for i in range(5)]
    squash = Runner([SquashesNaN()])
    assert sum(is_failure(squash.run_case(c)[0].verdict) for c in cases) >= 0.6 * len(cases)
    flush = Runner([FlushesSubnormals()])
    by_dtype = {"float16": [], "other": []}
    for c in cases:
        by_dtype["float16" if c.dtype == "float16" else "other"].append(
            is_failure(flush.run_case(c)[0].verdict)
        )
    assert not any(by_dtype["float16"])
    assert sum(by_dtype["other"]) >= 0.5 * len(by_dtype["other"]), by_dtype


def test_negative_zero_from_cancellation_fails_only_the_exact_comparison() -> None:
    """-conv(x, -w) has the same values, but exact cancellation gives -0: the int fill's exact
    comparison calls it a value-mismatch; with uniform inputs no output is an exact zero."""
    case = parse_id("conv1d-n2-c3x4-s20-k2-bias-bf16-fint-seed3")
    ref = run_reference(case)
    cancelled = (ref.out == 0) & (ref.abs_sum >= 1)
    assert cancelled.any()
    runner = Runner([NegatedSum()])
    (exact,) = runner.run_case(case)
    assert exact.verdict == D.VALUE_MISMATCH
    assert f"{int(cancelled.sum())} element(s) are -0 where the exact result is +0" in exact.detail
    (uniform,) = runner.run_case(replace(case, fill="uniform"))
    assert uniform.verdict == D.PASS
    # The reference itself (float64 BLAS sums) and a float32 kernel give +0 there.
    assert not np.signbit(ref.out[cancelled]).any()
    assert D.compare(case, float32_kernel(case), ref).verdict == D.PASS
