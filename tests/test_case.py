"""The case model and its compact id: round trips, canonical spelling, parse errors."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conformance.case import OPS, Case, format_id, parse_id
from conformance.dtypes import DTYPES
from conformance.strategies import invalid_cases, valid_cases

ALL_OPS = tuple(OPS)
ID_RE = re.compile(r"^[a-z0-9_x-]+$")


def prop(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def base(op: str = "conv2d", **kw) -> Case:
    fields = dict(op=op, batch=1, in_channels=3, out_channels=4, spatial=5, kernel=3)
    fields.update(kw)
    return Case(**fields)


# --- round trips --------------------------------------------------------------------------------


def _check_round_trip(case: Case) -> None:
    text = case.id
    assert ID_RE.match(text), text
    assert str(case) == text
    parsed = parse_id(text)
    assert parsed == case
    assert format_id(parsed) == text
    assert Case.from_dict(case.to_dict()) == case
    assert Case.from_dict(json.loads(json.dumps(case.to_dict()))) == case


@pytest.mark.parametrize("op", ALL_OPS)
@prop(60)
@given(data=st.data())
def test_valid_case_ids_round_trip(op, data):
    _check_round_trip(data.draw(valid_cases(op)))


@pytest.mark.parametrize("op", ALL_OPS)
@prop(60)
@given(data=st.data())
def test_invalid_case_ids_round_trip(op, data):
    _check_round_trip(data.draw(invalid_cases(op)))


small = st.integers(-3, 12)


@st.composite
def any_cases(draw) -> Case:
    """Any representable case, including negative and zero sizes (written ``m1``), lists with
    unequal entries and every optional token; output padding only on transposed ops (see
    :func:`test_forward_case_with_output_padding_round_trips`)."""
    op = draw(st.sampled_from(ALL_OPS))
    nd, transposed = OPS[op]
    dims = st.one_of(small, st.tuples(*[small] * nd))
    return Case(
        op=op,
        batch=draw(small),
        in_channels=draw(small),
        out_channels=draw(small),
        spatial=draw(dims),
        kernel=draw(dims),
        stride=draw(dims),
        padding=draw(dims),
        dilation=draw(dims),
        output_padding=draw(dims) if transposed else 0,
        groups=draw(small),
        dtype=draw(st.sampled_from(DTYPES)),
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
    )


@prop(300)
@given(case=any_cases())
def test_any_case_id_round_trips(case):
    _check_round_trip(case)


def test_forward_case_with_output_padding_round_trips():
    """A forward case may hold output padding (Case does not range-check; it is an invalid case
    the reference rejects). Either Case refuses it, or its printed id parses back to it."""
    try:
        case = base("conv1d", output_padding=1)
    except ValueError:
        return
    _check_round_trip(case)


# --- canonical spelling -------------------------------------------------------------------------


def test_defaults_omitted():
    case = base()
    assert case.stride == (1, 1) and case.padding == (0, 0) and case.dilation == (1, 1)
    assert case.output_padding == (0, 0) and case.groups == 1 and case.seed == 0
    assert case.id == "conv2d-n1-c3x4-s5-k3-f32"
    explicit = base(stride=1, padding=0, dilation=(1, 1), output_padding=0, groups=1)
    assert explicit == case and explicit.id == case.id


def test_every_token():
    case = Case(
        op="conv_transpose2d",
        batch=2,
        in_channels=6,
        out_channels=4,
        spatial=(5, 7),
        kernel=(3, 1),
        stride=2,
        padding=(0, 1),
        dilation=(2, 2),
        output_padding=(1, 0),
        groups=2,
        dtype="bfloat16",
        bias=True,
        seed=17,
    )
    assert case.id == "conv_transpose2d-n2-c6x4-s5x7-k3x1-st2-p0x1-d2-op1x0-g2-bias-bf16-seed17"
    assert parse_id(case.id) == case


def test_negative_numbers():
    case = base("conv1d", stride=-1, padding=-2, groups=0)
    assert case.id == "conv1d-n1-c3x4-s5-k3-stm1-pm2-g0-f32"
    assert parse_id(case.id) == case
    case = base(batch=-1, in_channels=0, out_channels=-5, spatial=(0, -1))
    assert case.id == "conv2d-nm1-c0xm5-s0xm1-k3-f32"
    assert parse_id(case.id) == case


def test_channels_never_collapsed():
    assert base(in_channels=4, out_channels=4).id == "conv2d-n1-c4x4-s5-k3-f32"


@pytest.mark.parametrize(
    "op, kernel, token",
    [
        ("conv3d", (3, 3, 3), "k3"),
        ("conv3d", (3, 3, 1), "k3x3x1"),
        ("conv2d", (2, 2), "k2"),
        ("conv_transpose1d", (4,), "k4"),
        ("conv_transpose3d", (1, 2, 1), "k1x2x1"),
    ],
)
def test_collapsed_lists(op, kernel, token):
    case = base(op, kernel=kernel)
    assert case.id.split("-")[4] == token
    assert parse_id(case.id).kernel == kernel


def test_collapsed_token_expands_to_every_dimension():
    case = parse_id("conv3d-n1-c1x1-s4-k3-st2-p1-d2-f16")
    assert case.spatial == (4, 4, 4) and case.kernel == (3, 3, 3)
    assert case.stride == (2, 2, 2) and case.padding == (1, 1, 1) and case.dilation == (2, 2, 2)


@pytest.mark.parametrize(
    "spelling, canonical",
    [
        ("conv3d-n1-c2x2-s4x4x4-k3x3x3-f32", "conv3d-n1-c2x2-s4-k3-f32"),
        ("conv3d-n1-c2x2-s4-k3-st1-p0-d1-g1-f32", "conv3d-n1-c2x2-s4-k3-f32"),
        ("conv3d-n1-c2x2-s4-k3-st1x1x1-p0x0x0-d1x1x1-f32-seed0", "conv3d-n1-c2x2-s4-k3-f32"),
        (
            "conv_transpose2d-n1-c2x2-s4-k3-st2x2-op0x0-f32",
            "conv_transpose2d-n1-c2x2-s4-k3-st2-f32",
        ),
        (
            "conv_transpose1d-n1-c2x2-s4-k3-op0-g1-bias-f16",
            "conv_transpose1d-n1-c2x2-s4-k3-bias-f16",
        ),
        ("conv2d-n01-c02x3-s5-k3-f32", "conv2d-n1-c2x3-s5-k3-f32"),
        ("  conv2d-n1-c2x3-s5-k3-f32\n", "conv2d-n1-c2x3-s5-k3-f32"),
    ],
)
def test_non_canonical_spellings_parse_to_the_same_case(spelling, canonical):
    assert parse_id(spelling) == parse_id(canonical)
    assert format_id(parse_id(spelling)) == canonical


def test_docstring_example():
    text = "conv_transpose3d-n2-c8x16-s5-k3-st2x1x2-p1-op1-f32"
    case = parse_id(text)
    assert case == Case(
        op="conv_transpose3d",
        batch=2,
        in_channels=8,
        out_channels=16,
        spatial=(5, 5, 5),
        kernel=(3, 3, 3),
        stride=(2, 1, 2),
        padding=(1, 1, 1),
        dilation=(1, 1, 1),
        output_padding=(1, 1, 1),
        groups=1,
        dtype="float32",
        bias=False,
        seed=0,
    )
    assert case.ndim == 3 and case.transposed
    assert case.x_shape == (2, 5, 5, 5, 8)
    assert case.w_shape == (16, 3, 3, 3, 8)
    assert case.bias_shape is None
    assert case.params() == dict(
        stride=(2, 1, 2), padding=(1, 1, 1), dilation=(1, 1, 1), groups=1, output_padding=(1, 1, 1)
    )
    assert format_id(case) == text


def test_dtype_tokens():
    for dtype, token in [("float32", "f32"), ("float16", "f16"), ("bfloat16", "bf16")]:
        case = base(dtype=dtype)
        assert case.id.endswith("-" + token)
        assert parse_id(case.id).dtype == dtype


def test_forward_params_have_no_output_padding():
    assert "output_padding" not in base().params()
    assert base(groups=3, bias=True).w_shape == (4, 3, 3, 1)
    assert base(bias=True).bias_shape == (4,)


# --- parse errors -------------------------------------------------------------------------------

OK = "conv2d-n1-c2x2-s5-k3"


@pytest.mark.parametrize(
    "text, match",
    [
        # unknown op
        ("conv4d-n1-c2x2-s5-k3-f32", r"unknown op 'conv4d'"),
        ("Conv2d-n1-c2x2-s5-k3-f32", r"unknown op 'Conv2d'"),
        ("conv_transpose-n1-c2x2-s5-k3-f32", r"unknown op 'conv_transpose'"),
        ("", r"unknown op ''"),
        # unknown or malformed token
        (OK + "-zz9-f32", r"cannot parse token 'zz9'"),
        (OK + "-f8", r"cannot parse token 'f8'"),
        (OK + "-k-f32", r"cannot parse token 'k'"),
        (OK + "-st2y2-f32", r"cannot parse token 'st2y2'"),
        (OK + "-p-1-f32", r"cannot parse token 'p'"),
        (OK + "-Bias-f32", r"cannot parse token 'Bias'"),
        (OK + "--f32", r"cannot parse token ''"),
        (OK + "-f32-", r"cannot parse token ''"),
        # duplicated field
        ("conv2d-n1-n1-c2x2-s5-k3-f32", r"field 'n' given twice"),
        (OK + "-k3-f32", r"field 'k' given twice"),
        (OK + "-st2-st2-f32", r"field 'st' given twice"),
        (OK + "-f32-f16", r"dtype given twice"),
        # out of order
        ("conv2d-c2x2-n1-s5-k3-f32", r"field 'n' out of order"),
        ("conv2d-n1-c2x2-k3-s5-f32", r"field 's' out of order"),
        (OK + "-g2-st2-f32", r"field 'st' out of order"),
        (OK + "-f32-st2", r"token 'st2' must come before bias and dtype"),
        (OK + "-bias-p1-f32", r"token 'p1' must come before bias and dtype"),
        # missing fields
        (OK, r"missing dtype"),
        (OK + "-bias", r"missing dtype"),
        ("conv2d-c2x2-s5-k3-f32", r"missing field\(s\) n$"),
        ("conv2d-n1-s5-k3-f32", r"missing field\(s\) c$"),
        ("conv2d-n1-c2x2-k3-f32", r"missing field\(s\) s$"),
        ("conv2d-n1-c2x2-s5-f32", r"missing field\(s\) k$"),
        ("conv2d-f32", r"missing field\(s\) n, c, s, k$"),
        # output padding on a forward op
        (OK + "-op1-f32", r"output padding \(op\) only applies to transposed ops"),
        ("conv3d-n1-c2x2-s5-k3-op0-f32", r"output padding \(op\)"),
        # wrong number of values
        (OK.replace("k3", "k3x3x3") + "-f32", r"k needs 1 or 2 values, got 3"),
        ("conv1d-n1-c2x2-s5x5-k3-f32", r"s needs 1 or 1 values, got 2"),
        ("conv3d-n1-c2x2-s5-k3-st1x2-f32", r"st needs 1 or 3 values, got 2"),
        (OK + "-p1x1x1-f32", r"p needs 1 or 2 values, got 3"),
        (OK + "-d1x2x1x2-f32", r"d needs 1 or 2 values, got 4"),
        ("conv_transpose2d-n1-c2x2-s5-k3-op1x0x0-f32", r"op needs 1 or 2 values, got 3"),
        ("conv2d-n1-c2-s5-k3-f32", r"channels must be written cINxOUT"),
        ("conv2d-n1-c2x2x2-s5-k3-f32", r"channels must be written cINxOUT"),
        ("conv2d-n1x1-c2x2-s5-k3-f32", r"n takes one value"),
        (OK + "-g1x1-f32", r"g takes one value"),
    ],
)
def test_parse_errors_name_the_token(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_id(text)
    assert repr(text.strip()) in str(info.value)


@pytest.mark.parametrize(
    "text, match",
    [
        (OK + "-bias-bias-f32", r"bias"),
        (OK + "-f32-seed1-seed2", r"seed"),
        (OK + "-f32-bias", r"bias"),
        (OK + "-seed3-f32", r"seed3"),
        (OK + "-seed3-bias-f32", r"seed3"),
        (OK + "-f32-seed1x2", r"seed"),
    ],
)
def test_parse_errors_bias_and_seed(text, match):
    """``bias`` and ``seed`` obey the same grammar as the other fields: fixed order
    (``...-bias-DTYPE-seedR``), at most once each, ``seed`` a single number."""
    with pytest.raises(ValueError, match=match):
        parse_id(text)


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        parse_id(OK + "-f32-seedm1")


# --- op names and pytest -k ---------------------------------------------------------------------


def test_no_op_name_is_a_substring_of_another():
    for a in ALL_OPS:
        for b in ALL_OPS:
            if a != b:
                assert a not in b, (a, b)


@pytest.mark.parametrize("op", ALL_OPS)
@prop(40)
@given(data=st.data())
def test_id_mentions_only_its_own_op(op, data):
    """``pytest -k OP`` selects the cases of one op: no other op name occurs in an id."""
    case = data.draw(st.one_of(valid_cases(op), invalid_cases(op)))
    assert case.id.startswith(op + "-")
    for other in ALL_OPS:
        if other != op:
            assert other not in case.id


# --- Case validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(op="conv4d"), r"Case.op must be one of .*got 'conv4d'"),
        (dict(op="Conv2d"), r"Case.op must be one of"),
        (
            dict(dtype="float128"),
            r"dtype must be one of float32, float16, bfloat16, float64, got 'float128'",
        ),
        (dict(dtype="f32"), r"dtype must be one of"),
        (dict(spatial=(5, 5, 5)), r"Case.spatial must be an int or 2 ints, got \(5, 5, 5\)"),
        (dict(kernel=(3,)), r"Case.kernel must be an int or 2 ints"),
        (dict(stride=(1, 1, 1)), r"Case.stride must be an int or 2 ints"),
        (dict(padding=[0]), r"Case.padding must be an int or 2 ints"),
        (dict(dilation=(1, 1.5)), r"Case.dilation must be an int or 2 ints"),
        (dict(output_padding=(0, True)), r"Case.output_padding must be an int or 2 ints"),
        (dict(batch=1.0), r"Case.batch must be an int, got 1.0"),
        (dict(in_channels=True), r"Case.in_channels must be an int"),
        (dict(out_channels="4"), r"Case.out_channels must be an int"),
        (dict(groups=None), r"Case.groups must be an int"),
        (dict(seed=-1), r"Case.seed must be >= 0"),
        (dict(seed=1.5), r"Case.seed must be an int"),
        (dict(bias=1), r"Case.bias must be a bool"),
        (dict(bias="yes"), r"Case.bias must be a bool"),
    ],
)
def test_case_rejects_bad_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        base(**kw)


@pytest.mark.parametrize("value", [1.5, None, True, object()])
def test_case_rejects_non_int_scalar_dims(value):
    """A non-int, non-sequence spatial/kernel/... is a ValueError like every other bad field."""
    with pytest.raises(ValueError, match=r"Case.spatial must be an int or 2 ints"):
        base(spatial=value)


def test_case_is_frozen_and_hashable():
    case = base()
    with pytest.raises(AttributeError):
        case.batch = 2  # type: ignore[misc]
    assert len({case, base(), replace(case, seed=1)}) == 2


def test_from_dict_errors():
    d = base().to_dict()
    with pytest.raises(ValueError, match=r"unknown field\(s\) colour"):
        Case.from_dict({**d, "colour": "red"})
    missing = {k: v for k, v in d.items() if k != "kernel"}
    with pytest.raises(ValueError, match=r"^Case: .*kernel"):
        Case.from_dict(missing)
    with pytest.raises(ValueError, match=r"Case.spatial"):
        Case.from_dict({**d, "spatial": [1, 2, 3]})


def test_to_dict_is_plain_json():
    d = base("conv_transpose1d", bias=True, seed=3).to_dict()
    assert d == {
        "op": "conv_transpose1d",
        "batch": 1,
        "in_channels": 3,
        "out_channels": 4,
        "spatial": [5],
        "kernel": [3],
        "stride": [1],
        "padding": [0],
        "dilation": [1],
        "output_padding": [0],
        "groups": 1,
        "dtype": "float32",
        "bias": True,
        "seed": 3,
    }


@prop(100)
@given(case=any_cases())
def test_replace_revalidates(case):
    """``dataclasses.replace`` goes through __post_init__: ints broadcast, bad lengths fail."""
    assume(case.ndim > 1)
    assert replace(case, stride=2).stride == (2,) * case.ndim
    with pytest.raises(ValueError):
        replace(case, kernel=(1,) * (case.ndim + 1))
