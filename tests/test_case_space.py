"""The case space reaches the sizes where kernels break, within its work budget: ranges, shares
of large cases, validity and budget over seeded draws; and a bug that shows only at batch index
>= 2 (tests.planted:WrongForLateBatch) is caught by the default generated list and by a run."""

from __future__ import annotations

import json
import statistics
from functools import cache

import pytest
from hypothesis import HealthCheck, Phase, find, settings

from conformance import diff as D
from conformance.case import OPS, Case, parse_id
from conformance.cli import main
from conformance.coverage import LARGE_REDUCTION
from conformance.draw import SeededDraw, stream_seed
from conformance.generate import generated_cases
from conformance.inputs import check_case, reduction_terms
from conformance.runner import Runner
from conformance.strategies import (
    BUDGET,
    INVALID_BUDGET,
    LONG_REDUCTION,
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_DEPTHWISE,
    MAX_DILATION,
    MAX_GROUPS,
    MAX_KERNEL,
    MAX_PADDING,
    MAX_STRIDE,
    draw_invalid_case,
    draw_valid_case,
    sized,
    valid_cases,
    work,
)
from tests.planted import WrongForLateBatch

ALL_OPS = tuple(OPS)
DRAWS = 2000
DEFAULT_SEED = 20261123


@cache
def drawn(op: str) -> tuple[Case, ...]:
    """DRAWS valid cases of ``op`` from one seeded stream (duplicates kept: the space's
    distribution, not the run's list)."""
    pick = SeededDraw(stream_seed("case-space", op))
    return tuple(draw_valid_case(pick, op) for _ in range(DRAWS))


def share(cases, holds) -> float:
    return sum(1 for c in cases if holds(c)) / len(cases)


# --- the space -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS)
def test_every_drawn_case_is_valid_and_within_the_budget(op):
    for case in drawn(op):
        shape = check_case(case)  # ValueError for a case the reference rejects
        products, nbytes = work(case)
        assert 0 < products <= BUDGET.products, case.id
        assert 0 < nbytes <= BUDGET.bytes, case.id
        # work() counts the output the reference computes.
        out_elements = 1
        for s in shape:
            out_elements *= s
        assert products == out_elements * reduction_terms(case), case.id


@pytest.mark.parametrize("op", ALL_OPS)
def test_the_space_reaches_its_limits(op):
    cases = drawn(op)
    nd = OPS[op][0]
    assert max(c.batch for c in cases) == MAX_BATCH
    assert {c.batch for c in cases} == set(range(1, MAX_BATCH + 1))
    assert max(c.in_channels for c in cases) == MAX_CHANNELS
    assert max(c.out_channels for c in cases) >= MAX_CHANNELS - 8
    assert any(c.in_channels >= 64 and c.out_channels >= 64 for c in cases)
    assert any(c.groups == MAX_GROUPS and c.in_channels > MAX_GROUPS for c in cases)
    depthwise = [c for c in cases if c.groups == c.in_channels > 1]
    assert depthwise and max(c.groups for c in depthwise) >= MAX_DEPTHWISE - 16
    assert all(c.groups <= MAX_DEPTHWISE for c in depthwise)
    assert any(c.out_channels > c.in_channels for c in depthwise)  # a channel multiplier
    for axis in range(nd):
        assert max(c.kernel[axis] for c in cases) == MAX_KERNEL
        assert {c.kernel[axis] % 2 for c in cases} == {0, 1}
        assert {c.spatial[axis] % 2 for c in cases} == {0, 1}
        assert max(c.stride[axis] for c in cases) == MAX_STRIDE[nd]
        assert max(c.dilation[axis] for c in cases) == MAX_DILATION[nd]
        assert max(c.padding[axis] for c in cases if not c.moded) == MAX_PADDING
    assert any(sum(k == MAX_KERNEL for k in c.kernel) >= min(nd, 2) for c in cases)
    assert any(all(k == 1 for k in c.kernel) for c in cases)  # pointwise
    if OPS[op][1]:
        assert any(o >= s for c in cases for o, s in zip(c.output_padding, c.stride))


@pytest.mark.parametrize("op", ALL_OPS)
def test_large_reductions_and_late_batches_have_a_share_and_most_cases_stay_small(op):
    cases = drawn(op)
    assert LONG_REDUCTION == LARGE_REDUCTION  # the coverage table's threshold
    assert share(cases, lambda c: reduction_terms(c) >= LARGE_REDUCTION) >= 0.05
    assert share(cases, lambda c: c.batch >= 3) >= 0.10
    products = [work(c)[0] for c in cases]
    # Sizes spread over orders of magnitude: a share of cases far below the budget (fewer in
    # 3-D, whose kernels alone have up to 343 taps), a share that fills at least half of it.
    assert share(products, lambda p: p <= BUDGET.products // 4) >= 0.25
    assert share(products, lambda p: p <= BUDGET.products // 64) >= 0.02
    assert share(products, lambda p: p >= BUDGET.products // 2) >= 0.05


def test_most_cases_are_small():
    products = sorted(work(c)[0] for op in ALL_OPS for c in drawn(op))
    assert statistics.median(products) <= BUDGET.products // 4


@pytest.mark.parametrize("op", ALL_OPS)
def test_invalid_cases_stay_small(op):
    """An invalid case starts from a case within INVALID_BUDGET; the rule it breaks grows its
    input (padding) or a kernel axis (output_size) by a bounded amount at most."""
    pick = SeededDraw(stream_seed("case-space-invalid", op))
    for _ in range(300):
        case = draw_invalid_case(pick, op)
        with pytest.raises(ValueError):
            check_case(case)
        elements = 0
        for shape in (case.x_shape, case.w_shape):
            n = 1
            for s in shape:
                n *= max(s, 0)
            elements += n
        assert 4 * elements <= 64 * INVALID_BUDGET.bytes, case.id


def test_sized_draws_every_value_and_favours_the_low_end():
    pick = SeededDraw(stream_seed("sized"))
    values = [sized(pick, 3, 40) for _ in range(4000)]
    assert set(values) == set(range(3, 41))
    assert statistics.median(values) <= 10
    assert sized(pick, 5, 5) == 5


def test_generated_list_is_deterministic_and_budgeted():
    a = generated_cases(["conv3d"], valid_per_op=30, invalid_per_op=5, seed=11)
    b = generated_cases(["conv3d"], valid_per_op=30, invalid_per_op=5, seed=11)
    assert a == b
    for case in a[:30]:
        assert work(case)[0] <= BUDGET.products


# --- shrinking: Hypothesis reaches the simple end of each range ---------------------------------

SHRINK = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    derandomize=True,
    phases=(Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize(
    ("op", "condition", "smallest"),
    [
        ("conv2d", lambda c: c.batch >= 3, "conv2d-n3-c1x1-s1-k1-f32"),
        ("conv1d", lambda c: c.groups >= 8, "conv1d-n1-c8x8-s1-k1-g8-f32"),
        ("conv_transpose3d", lambda c: c.kernel[2] >= 7, "conv_transpose3d-n1-c1x1-s1-k1x1x7-f32"),
        ("conv3d", lambda c: c.out_channels >= 64, "conv3d-n1-c1x64-s1-k1-f32"),
        ("conv3d", lambda c: c.groups == c.in_channels >= 16, "conv3d-n1-c16x16-s1-k1-g16-f32"),
        # A long reduction: the long kind's smallest case (kernel 4 x 256 channels in 1-D).
        ("conv1d", lambda c: reduction_terms(c) >= LARGE_REDUCTION, "conv1d-n1-c256x1-s4-k4-f32"),
        ("conv_transpose2d", lambda c: c.bias and c.dtype == "bfloat16", None),
    ],
)
def test_hypothesis_shrinks_to_the_simplest_case(op, condition, smallest):
    found = find(valid_cases(op), condition, settings=SHRINK)
    want = smallest or f"{op}-n1-c1x1-s1-k1-bias-bf16"
    assert found.id == want


# --- a planted bug at batch index >= 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "verdict"),
    [
        ("conv1d-n2-c3x2-s5-k2-f32", D.PASS),
        ("conv1d-n3-c3x2-s5-k2-f32", D.VALUE_MISMATCH),
        ("conv_transpose2d-n4-c2x2-s3-k2-st2-f32", D.VALUE_MISMATCH),
        ("conv3d-n1-c2x2-s3-k2-bias-bf16", D.PASS),
    ],
)
def test_the_planted_bug_shows_exactly_at_batch_three(case_id, verdict):
    (record,) = Runner([WrongForLateBatch()]).run_case(parse_id(case_id))
    assert record.verdict == verdict


def test_the_default_list_has_cases_where_the_batch_bug_shows():
    cases = generated_cases(valid_per_op=400, invalid_per_op=0, seed=DEFAULT_SEED)
    runner = Runner([WrongForLateBatch()])
    for op in ALL_OPS:
        late = [c for c in cases if c.op == op and c.batch >= 3]
        assert len(late) >= 40, op  # >= 10% of the op's 400
        # The first few of them fail on the planted backend; a batch-2 case passes.
        for case in late[:3]:
            (record,) = runner.run_case(case)
            # A wide-fill float16 output can overflow to inf under the planted error.
            assert record.verdict in (D.VALUE_MISMATCH, D.NAN_INF_MISMATCH), case.id
        early = next(c for c in cases if c.op == op and c.batch == 2)
        (record,) = runner.run_case(early)
        assert record.verdict == D.PASS, early.id


def test_a_run_catches_the_batch_bug_on_exactly_the_late_batch_cases(tmp_path):
    out = tmp_path / "r.json"
    code = main(
        [
            "run",
            "--plugin",
            "tests.planted:WrongForLateBatch",
            "--backends",
            "planted-batch3",
            "--dirs",
            "fwd",
            "--layouts",
            "contiguous",
            "--max-examples",
            "50",
            "--no-corpus",
            "--shrink-groups",
            "0",
            "-q",
            "--json",
            str(out),
        ]
    )
    assert code == 1
    records = json.loads(out.read_text())["records"]
    # The planted backend runs the six ops (the general convolutions are unsupported).
    valid = [r for r in records if not r["reference_error"] and r["verdict"] != D.UNSUPPORTED]
    failed = {r["case_id"] for r in valid if D.is_failure(r["verdict"])}
    late = {r["case_id"] for r in valid if r["case"]["batch"] >= 3}
    assert failed == late
    assert len(late) >= 6 * 5  # >= 10% of 50 per op
    assert all(r["verdict"] == D.PASS for r in valid if r["case_id"] not in late)
    # Invalid cases are rejected, as the reference rejects them: no failure.
    assert all(not D.is_failure(r["verdict"]) for r in records if r["reference_error"])
