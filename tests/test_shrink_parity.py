"""Shrinking keeps the structure a failure needs: a bug that shows only for an odd output length
(tests.planted:WrongLastOddElement) shrinks to its smallest case, output length 1, where halving
and decrementing alone stalled at the first odd size whose smaller neighbours are all even."""

from __future__ import annotations

import pytest

from conformance import diff as D
from conformance.case import parse_id
from conformance.cli import main, save_failures, shrink_groups
from conformance.regressions import load_regressions
from conformance.results import RunResults
from conformance.runner import Runner
from conformance.shrink import candidates, shrink
from tests.planted import (
    OutputPaddingOnWrongSide,
    UnflippedWeight,
    WrongGroups,
    WrongLastOddElement,
)

#: The smallest case of the odd-length bug: output length 1 along the first axis (and 1 is odd).
SMALLEST = {
    "conv1d": "conv1d-n1-c1x1-s1-k1-f32",
    "conv2d": "conv2d-n1-c1x1-s1-k1-f32",
    "conv_transpose1d": "conv_transpose1d-n1-c1x1-s1-k1-f32",
    "conv_transpose2d": "conv_transpose2d-n1-c1x1-s1-k1-f32",
    "conv_transpose3d": "conv_transpose3d-n1-c1x1-s1-k1-f32",
}


def _verdict(backend, case_id: str) -> str:
    (rec,) = Runner([backend]).run_case(parse_id(case_id))
    return rec.verdict


def _shrunk_as_a_run_does(backend, case_id: str) -> str:
    """The case ``run --shrink-groups`` records for a failure of ``case_id`` (same verdict and
    cause, the run's step budget)."""
    runner = Runner([backend])
    records = runner.run_case(parse_id(case_id))
    assert records[0].failed, records[0].summary()
    shrunk = shrink_groups(runner, records, max_groups=1)
    return shrunk[0].case_id if shrunk else case_id


@pytest.mark.parametrize(
    ("case_id", "verdict"),
    [
        ("conv1d-n1-c3x2-s10-k2-f32", D.VALUE_MISMATCH),  # output length 9
        ("conv1d-n1-c1x1-s1-k1-f32", D.VALUE_MISMATCH),  # 1
        ("conv_transpose1d-n1-c1x1-s2-k1-d2-op1-f32", D.VALUE_MISMATCH),  # 3
        # Every neighbour of conv1d-n1-c1x1-s10-k2 that halving or decrementing one size gives
        # has an even output length (or none), which is where the old shrinker stopped.
        ("conv1d-n1-c1x1-s5-k2-f32", D.PASS),  # 4
        ("conv1d-n1-c1x1-s9-k2-f32", D.PASS),  # 8
        ("conv1d-n1-c1x1-s10-k1-f32", D.PASS),  # 10
        ("conv2d-n1-c1x1-s10x5-k1-f32", D.PASS),  # only the first axis counts
    ],
)
def test_the_planted_bug_shows_exactly_on_odd_output_lengths(case_id, verdict):
    assert _verdict(WrongLastOddElement(), case_id) == verdict


@pytest.mark.parametrize(
    ("case_id", "old_result"),
    [
        ("conv1d-n1-c3x2-s10-k2-f32", "conv1d-n1-c1x1-s10-k2-f32"),
        ("conv1d-n1-c3x2-s11-k3-f32", "conv1d-n1-c1x1-s1-k1-f32"),
        ("conv1d-n2-c4x4-s14-k4-st2-p1-g2-bias-f16", "conv1d-n1-c1x1-s1-k2-st2-p1-f32"),
        ("conv2d-n1-c2x2-s10x6-k2x3-f32", "conv2d-n1-c1x1-s2x1-k2x1-f32"),
        ("conv_transpose1d-n1-c3x2-s6-k1-d2-op1-f32", "conv_transpose1d-n1-c1x1-s6-k1-d2-op1-f32"),
        (
            "conv_transpose1d-n1-c2x2-s5-k4-st2-op1-f32",
            "conv_transpose1d-n1-c1x1-s1-k2-st2-op1-f32",
        ),
        ("conv_transpose2d-n2-c2x4-s6x3-k2-st1x2-p1-f32", "conv_transpose2d-n1-c1x1-s2x1-k2x1-f32"),
        ("conv_transpose3d-n1-c2x2-s6x2x3-k2-f32", "conv_transpose3d-n1-c1x1-s2x1x1-k2x1x1-f32"),
    ],
)
def test_an_odd_length_bug_shrinks_to_its_smallest_case(case_id, old_result):
    # old_result: where halving and decrementing alone stopped (kept for the record).
    small = _shrunk_as_a_run_does(WrongLastOddElement(), case_id)
    assert small == SMALLEST[parse_id(case_id).op], (
        f"{case_id} shrank to {small} (was {old_result})"
    )


def test_one_bug_is_saved_as_one_regression_at_its_smallest_case(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVCHECK_REGRESSIONS_DIR", str(tmp_path))
    backend = WrongLastOddElement()
    runner = Runner([backend])
    starts = [
        "conv1d-n1-c3x2-s10-k2-f32",
        "conv1d-n1-c2x2-s6-k2-bias-f32",
        "conv1d-n1-c1x3-s13-k3-f16",
    ]
    records = [rec for case_id in starts for rec in runner.run_case(parse_id(case_id))]
    assert all(rec.verdict == D.VALUE_MISMATCH for rec in records)
    save_failures(runner, records)
    saved = load_regressions(tmp_path)
    assert [(r.case.id, r.backend) for r in saved] == [(SMALLEST["conv1d"], backend.name)]
    assert capsys.readouterr().out.count("saved regression:") == 1


def test_a_run_loads_the_planted_backend_and_records_the_smallest_case(tmp_path, capsys):
    cases = tmp_path / "odd.toml"
    cases.write_text(
        'description = "an odd output length"\n\n[[case]]\nid = "conv1d-n1-c3x2-s10-k2-f32"\n'
    )
    out = tmp_path / "r.json"
    args = ["run", "--plugin", "tests.planted:WrongLastOddElement", "--backends"]
    args += ["planted-odd-tail", "--cases", str(cases), "--no-corpus", "--max-examples", "0"]
    args += ["--no-isolation", "-q", "--shrink-groups", "1", "--json", str(out)]
    assert main(args) == 1
    records = RunResults.read(out).records
    assert [(r.case_id, r.shrunk_from) for r in records] == [
        ("conv1d-n1-c3x2-s10-k2-f32", None),
        (SMALLEST["conv1d"], "conv1d-n1-c3x2-s10-k2-f32"),
    ]
    assert "shrunk during the run from conv1d-n1-c3x2-s10-k2-f32" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("planted", "case_id", "result"),
    [
        # Results of the shrinker before it kept parities (same budget); these bugs do not
        # depend on a parity, so they must not move.
        (
            UnflippedWeight,
            "conv_transpose1d-n1-c3x2-s7-k5-st2-p1-f32",
            "conv_transpose1d-n1-c1x1-s1-k2-f32",
        ),
        (
            UnflippedWeight,
            "conv_transpose3d-n2-c4x4-s5x6x3-k3-st2x1x2-p1-f16",
            "conv_transpose3d-n1-c1x1-s1-k1x1x2-f32",
        ),
        (
            OutputPaddingOnWrongSide,
            "conv_transpose1d-n2-c4x4-s6-k3-st3-p1-op2-g2-f16-seed3",
            "conv_transpose1d-n1-c1x1-s1-k1-st2-op1-f32",
        ),
        (
            OutputPaddingOnWrongSide,
            "conv_transpose2d-n1-c2x2-s7x5-k3-st3x2-p1-op2x1-f32",
            "conv_transpose2d-n1-c1x1-s1-k1-st1x2-op0x1-f32",
        ),
        (
            WrongGroups,
            "conv_transpose2d-n2-c6x9-s5x4-k3x4-st2x3-p1-op1x2-g3-f32",
            "conv_transpose2d-n1-c3x3-s1-k1-g3-f32",
        ),
    ],
)
def test_failures_that_do_not_depend_on_a_parity_shrink_as_before(planted, case_id, result):
    assert _shrunk_as_a_run_does(planted(), case_id) == result


# --- the candidates themselves, with predicates instead of backends -----------------------------


def _sizes(case_id: str, name: str) -> list[int]:
    """The values of parameter ``name`` (first axis) among the candidates that change only it."""
    case = parse_id(case_id)
    out = []
    for c in candidates(case):
        changed = [f for f in case.__dataclass_fields__ if getattr(c, f) != getattr(case, f)]
        if changed == [name]:
            out.append(getattr(c, name)[0])
    return out


def test_a_size_tries_its_parity_and_its_residue_modulo_the_stride_smallest_first():
    # floor, half, smallest of its parity (1 again), two less, one less
    assert _sizes("conv1d-n1-c1x1-s9-k1-f32", "spatial") == [1, 4, 7, 8]
    assert _sizes("conv1d-n1-c1x1-s9-k9-f32", "kernel") == [1, 4, 7, 8]
    # stride 3: also 3 (the smallest with 15's residue modulo 3, and modulo 6), 15 - 6, 15 - 3
    assert _sizes("conv1d-n1-c1x1-s15-k1-st3-f32", "spatial") == [1, 3, 7, 9, 12, 13, 14]
    case = parse_id("conv2d-n2-c4x4-s9x15-k3-st1x3-p2-bias-f16")
    assert [c.id for c in candidates(case)] == [c.id for c in candidates(case)]


def test_an_odd_only_bug_reaches_the_smallest_odd_size_that_fails():
    def fails(c):  # odd and at least 3: halving or decrementing 9 gives 4, 8 (or 1)
        return c.spatial[0] % 2 == 1 and c.spatial[0] >= 3

    assert shrink(parse_id("conv1d-n1-c1x1-s9-k1-f32"), fails).id == "conv1d-n1-c1x1-s3-k1-f32"


def test_a_stride_remainder_bug_keeps_its_remainder():
    def fails(c):  # stride 3 leaving two inputs unused at the end
        return c.stride[0] == 3 and (c.spatial[0] - c.kernel[0]) % 3 == 2

    small = shrink(parse_id("conv1d-n1-c1x1-s15-k1-st3-f32"), fails)
    assert small.id == "conv1d-n1-c1x1-s3-k1-st3-f32"


def test_an_axis_last_tries_its_output_length_from_the_plainest_parameters():
    # conv1d s2-k2 (output length 1) has no single smaller neighbour with an odd output length.
    *_, last = candidates(parse_id("conv1d-n1-c1x1-s2-k2-f32"))
    assert last.id == "conv1d-n1-c1x1-s1-k1-f32"
    *_, last = candidates(parse_id("conv_transpose1d-n1-c1x1-s2-k2-st2-p1-d2-op1-f32"))
    assert last.id == "conv_transpose1d-n1-c1x1-s4-k1-f32"  # (2-1)*2 - 2*1 + 2*(2-1) + 1 + 1


@pytest.mark.parametrize("max_steps", [1, 4, 9])
def test_each_candidate_tried_is_one_step(max_steps):
    calls = []

    def fails(c):
        calls.append(c.id)
        return False

    shrink(parse_id("conv2d-n2-c4x4-s9x15-k3-st1x3-p2-bias-f16"), fails, max_steps=max_steps)
    assert 0 < len(calls) <= max_steps
