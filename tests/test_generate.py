"""The CLI's case list: the same cases for the same seed, whatever is loaded, pinned by a golden
list; and the seeded generator it is drawn with."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conformance.case import DIRECTIONS, OPS
from conformance.draw import SeededDraw, stream_seed
from conformance.generate import draw_cases, generated_cases
from conformance.inputs import make_inputs, run_reference
from conformance.layouts import LAYOUTS
from conformance.strategies import draw_invalid_case, draw_valid_case
from reference.params import check_params
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "cases-default-seed.txt"


def _golden() -> tuple[list[str], list[str]]:
    lines = GOLDEN.read_text().splitlines()
    command = lines[0].removeprefix("# ").split("   ")[0].split()
    return command, [ln for ln in lines if ln and not ln.startswith("#")]


def test_splitmix64_matches_the_published_sequence():
    # Seed 0: the first outputs of the reference implementation (Vigna, splitmix64.c).
    d = SeededDraw(0)
    assert [d.next_u64() for _ in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


def test_seeded_integers_cover_the_range_evenly():
    d = SeededDraw(stream_seed(1, "uniformity"))
    counts = Counter(d.integer(-2, 3) for _ in range(6000))
    assert sorted(counts) == [-2, -1, 0, 1, 2, 3]
    assert all(850 < n < 1150 for n in counts.values()), counts
    assert {d.integer(5, 5) for _ in range(10)} == {5}
    with pytest.raises(ValueError, match="empty range"):
        d.integer(3, 2)


def test_stream_seeds_differ_by_label():
    assert stream_seed(1, "conv1d", "valid") != stream_seed(1, "conv1d", "invalid")
    assert stream_seed(1, "conv1d", "valid") != stream_seed(2, "conv1d", "valid")
    assert stream_seed(1, "conv1d", "valid") == stream_seed(1, "conv1d", "valid")


def test_golden_list_of_the_default_seed():
    """A change of the generated list is a visible failure: regenerate the golden file with the
    command on its first line, on purpose."""
    command, want = _golden()
    res = cli(*command[3:])
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == want


def test_case_list_is_the_same_with_a_literal_heavy_plugin_loaded():
    """Loading a module full of integer literals (in the same process, and as --plugin) leaves
    the case list as it was."""
    _, want = _golden()
    import tests.literals_plugin  # noqa: F401  (loaded on purpose)

    cases = generated_cases(
        valid_per_op=10, invalid_per_op=3, seed=20261123, directions=DIRECTIONS, layouts=LAYOUTS
    )
    assert [c.id for c in cases] == want


def _run_ids(tmp_path: Path, name: str, *extra: str) -> list[str]:
    out = tmp_path / f"{name}.json"
    res = cli(
        "run",
        "--no-corpus",
        "--max-examples",
        "4",
        "--invalid-examples",
        "1",
        "--ops",
        "conv1d,conv_transpose2d",
        "--no-isolation",
        "-q",
        "--json",
        str(out),
        *extra,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    records = json.loads(out.read_text())["records"]
    return list(dict.fromkeys(r["case_id"] for r in records))


def test_run_draws_the_same_cases_with_and_without_a_plugin(tmp_path):
    plain = _run_ids(tmp_path, "plain", "--backends", "numpy-ref")
    with_plugin = _run_ids(
        tmp_path,
        "plugin",
        "--plugin",
        "tests.literals_plugin:BACKENDS",
        "--backends",
        "numpy-ref,literal-heavy",
    )
    assert plain == with_plugin
    assert len(plain) == 2 * (4 + 1)


def test_one_op_draws_the_cases_of_a_full_run():
    full = generated_cases(valid_per_op=6, invalid_per_op=2, seed=7)
    one = generated_cases(["conv3d"], valid_per_op=6, invalid_per_op=2, seed=7)
    assert one == [c for c in full if c.op == "conv3d"]


@pytest.mark.parametrize("op", list(OPS))
def test_drawn_cases_are_distinct_valid_and_invalid(op):
    valid = draw_cases(lambda pick: draw_valid_case(pick, op), 50, seed=3)
    invalid = draw_cases(lambda pick: draw_invalid_case(pick, op), 20, seed=4)
    assert len({c.id for c in valid}) == 50 and len({c.id for c in invalid}) == 20
    for c in valid:
        check_params(c.op, c.ndim, transposed=c.transposed, **c.params())
    for c in invalid:
        with pytest.raises(ValueError):
            run_reference(c, make_inputs(c))


def test_a_small_space_gives_what_it_has():
    # conv1d float32 without bias and a fixed seed: still many distinct cases; asking for more
    # than the attempts allow returns fewer, never loops forever.
    cases = draw_cases(lambda pick: draw_valid_case(pick, "conv1d", ("float32",), False), 5, 1)
    assert len(cases) == 5
    assert draw_cases(lambda pick: draw_valid_case(pick, "conv1d"), 0, 1) == []
    with pytest.raises(ValueError, match="count must be >= 0"):
        draw_cases(lambda pick: draw_valid_case(pick, "conv1d"), -1, 1)


def test_run_with_no_case_is_an_error(tmp_path):
    res = cli(
        "run",
        "--no-corpus",
        "--max-examples",
        "0",
        "--invalid-examples",
        "0",
        "--backends",
        "numpy-ref",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert res.returncode == 2
    assert "select no case" in res.stderr
    res = cli("run", "--max-examples", "-1", "--backends", "numpy-ref")
    assert res.returncode == 2
    assert "--max-examples must be >= 0, got -1" in res.stderr
