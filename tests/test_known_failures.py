"""Known-failures files: schema errors name file and field; matching is precise; fixes show."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import diff as D
from conformance.case import parse_id
from conformance.known_failures import DEFAULT_DIR, KnownFailures, parse_file
from conformance.runner import Record, Runner
from tests.planted import UnflippedWeight


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_files_parse_and_every_entry_has_a_reason():
    known = KnownFailures.load(DEFAULT_DIR)
    assert {e.backend for e in known.entries} >= {"mlx-cpu", "torch-cpu", "torch-cpu-cl"}
    assert all(len(e.reason) > 40 for e in known.entries)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[failure]]\nreason = 'x'\n", "exactly one of 'case'"),
        ("[[failure]]\nmatch = '*'\n", "'reason' is required"),
        ("[[failure]]\nmatch = '*'\nreason = 'x'\nverdict = 'pass'\n", "failing verdict"),
        ("[[failure]]\nmatch = '*'\nreason = 'x'\nwhen = '__import__'\n", "'when' must name"),
        ("[[failure]]\ncase = 'conv9d-n1'\nreason = 'x'\n", "'case': case id"),
        ("[[failure]]\nmatch = '*'\nreason = 'x'\ncolour = 'red'\n", "unknown field(s) colour"),
        ("[[failure]]\nmatch = 3\nreason = 'x'\n", "'match' must be a string"),
        ("failure = 1\n", "array of tables"),
        ("[[failure]\n", "not valid TOML"),
    ],
)
def test_malformed_entries_name_file_entry_and_field(tmp_path, text, message):
    path = write(tmp_path, "mlx-cpu", text)
    with pytest.raises(ValueError, match="mlx-cpu.toml") as err:
        parse_file(path)
    assert message in str(err.value)


def _record(case_id: str, verdict: str, **kw) -> Record:
    return Record(case_id=case_id, backend="planted-unflipped", verdict=verdict, **kw)


def test_entries_match_on_verdict_predicate_and_messages(tmp_path):
    write(
        tmp_path,
        "planted-unflipped",
        """
[[failure]]
match = "conv_transpose*"
verdict = "raised"
error = "*negative padding*"
when = "padding_exceeds_dilated_kernel"
reason = "raises on padding beyond the kernel extent"
""",
    )
    known = KnownFailures.load(tmp_path)
    hit = _record(
        "conv_transpose1d-n1-c1x1-s5-k2-st2-p2-f32",
        D.RAISED,
        error_message="got negative padding -1",
    )
    assert known.lookup(hit) is not None
    # Each narrowing field on its own rules the entry out.
    from dataclasses import replace

    assert known.lookup(replace(hit, verdict=D.VALUE_MISMATCH)) is None
    assert known.lookup(replace(hit, error_message="out of memory")) is None
    assert known.lookup(replace(hit, case_id="conv_transpose1d-n1-c1x1-s5-k2-st2-p1-f32")) is None
    assert known.lookup(replace(hit, case_id="conv1d-n1-c1x1-s5-k2-p2-f32")) is None
    assert known.lookup(replace(hit, backend="mlx-cpu")) is None


def test_known_failure_is_kept_visible_and_a_fix_is_reported(tmp_path):
    failing = "conv_transpose1d-n1-c1x2-s3-k3-st2-f32"
    passing = "conv_transpose1d-n1-c1x2-s3-k1-st2-f32"  # one tap: nothing to flip
    write(
        tmp_path,
        "planted-unflipped",
        f"""
[[failure]]
case = "{failing}"
reason = "forgets to flip the kernel"

[[failure]]
case = "{passing}"
reason = "was listed, but a 1-tap kernel cannot show the bug"
""",
    )
    runner = Runner([UnflippedWeight()], known=KnownFailures.load(tmp_path))
    (bad,) = runner.run_case(parse_id(failing))
    (good,) = runner.run_case(parse_id(passing))
    assert bad.verdict == D.VALUE_MISMATCH and bad.known_failure == "forgets to flip the kernel"
    assert not bad.failed and bad.metrics is not None  # still measured and reported
    assert good.verdict == D.PASS and good.fixed
    assert "FIXED" in good.summary()
