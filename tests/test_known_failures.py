"""Known-failures files: schema errors name file and field; matching is precise; fixes show."""

from __future__ import annotations

import sys
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
        (
            "[[failure]]\ncase = 'conv2d-n1-c1x1-s3x3-k2-f32'\nreason = 'x'\n",
            "write 'conv2d-n1-c1x1-s3-k2-f32'",
        ),
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


# --- hygiene: no entry hides a whole region; usage is counted; stale entries are reported -------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("match = '*'", "without 'verdict'"),
        ("match = 'conv_transpose2d-*'", "without 'verdict'"),
        ("match = '*'\nverdict = 'value-mismatch'", "matches every case of the backend"),
        ("match = 'conv*'\nverdict = 'crashed'", "matches every case of the backend"),
        ("match = '*-*'\nverdict = 'raised'", "matches every case of the backend"),
        ("case = 'conv1d-n1-c1x1-s3-k1-f32'\ncpu_has = 'AVX 512'", "'cpu_has' must be one CPU"),
    ],
)
def test_an_entry_that_hides_a_whole_region_is_refused(tmp_path, rule, message):
    path = write(tmp_path, "torch-cpu", f"[[failure]]\n{rule}\nreason = 'too broad'\n")
    with pytest.raises(ValueError, match=r"torch-cpu.toml: failure #1") as err:
        KnownFailures.load(tmp_path)
    assert message in str(err.value)
    assert path.name in str(err.value)


@pytest.mark.parametrize(
    "rule",
    [
        "match = '*'\nverdict = 'crashed'\nwhen = 'groups_below_one'",
        "match = '*'\nverdict = 'raised'\nerror = '*negative*'",
        "match = 'conv_transpose*-bf16*'\nverdict = 'value-mismatch'",
        "case = 'conv1d-n1-c1x1-s3-k1-f32'",
    ],
)
def test_narrowed_entries_load(tmp_path, rule):
    write(tmp_path, "torch-cpu", f"[[failure]]\n{rule}\nreason = 'narrow enough'\n")
    assert len(KnownFailures.load(tmp_path).entries) == 1


def test_cpu_has_loads_an_entry_only_where_the_cpu_has_the_flag(tmp_path):
    write(
        tmp_path,
        "torch-cpu",
        "[[failure]]\nmatch = 'conv1d-*-f16*'\nverdict = 'crashed'\ncpu_has = 'avx512bw'\n"
        "reason = 'oneDNN path'\n",
    )
    assert KnownFailures.load(tmp_path, cpu_flags=frozenset({"avx2"})).entries == []
    (entry,) = KnownFailures.load(tmp_path, cpu_flags=frozenset({"avx2", "avx512bw"})).entries
    assert entry.cpu_has == "avx512bw" and "cpu_has 'avx512bw'" in entry.rule


def _usage_file(tmp_path: Path) -> KnownFailures:
    write(
        tmp_path,
        "planted-unflipped",
        """
[[failure]]
match = "conv_transpose1d-*"
verdict = "value-mismatch"
when = "batch_above_one"
reason = "fails on batch 2 and more"

[[failure]]
match = "conv_transpose2d-*"
verdict = "raised"
error = "*boom*"
reason = "raised once, fixed since"

[[failure]]
match = "conv3d-*"
verdict = "crashed"
when = "zero_channels"
reason = "region this run never reaches"

[[failure]]
match = "conv_transpose3d-*-bf16*"
verdict = "value-mismatch"
hint = "bfloat16 accumulation"
reason = "value-dependent: needs many covered records to be called stale"
""",
    )
    return KnownFailures.load(tmp_path)


def test_usage_counts_matches_and_reports_stale_entries(tmp_path):
    known = _usage_file(tmp_path)
    records = [
        _record("conv_transpose1d-n2-c1x1-s3-k2-f32", D.VALUE_MISMATCH, known_failure="x"),
        _record("conv_transpose1d-n3-c1x1-s3-k2-f32", D.VALUE_MISMATCH, known_failure="x"),
        _record("conv_transpose1d-n1-c1x1-s3-k2-f32", D.PASS),  # outside the `when` region
        # An invalid case cannot show a value mismatch: outside the region.
        _record(
            "conv_transpose1d-n2-c1x1-s3-k2-st0-f32",
            D.BOTH_REJECTED,
            reference_error="conv_transpose1d: stride must be >= 1, got 0",
        ),
        _record("conv_transpose2d-n1-c1x1-s3-k2-f32", D.PASS),  # covered, no longer raises
        _record("conv_transpose2d-n1-c1x2-s3-k2-f32", D.UNSUPPORTED),  # not run: not covered
        _record("conv3d-n1-c1x1-s3-k2-f32", D.PASS),  # outside `zero_channels`
        _record("conv_transpose3d-n1-c1x1-s3-k2-bf16", D.PASS),
    ]
    usage = known.usage(records)
    assert [(u.covered, u.matched, u.stale) for u in usage] == [
        (2, 2, False),
        (1, 0, True),
        (0, 0, False),
        (1, 0, False),  # a hint entry needs MIN_COVERED_BY_VALUE covered records
    ]
    d = usage[1].to_dict()
    assert d["entry"] == "planted-unflipped.toml #2" and d["stale"] is True
    assert "match 'conv_transpose2d-*'" in d["rule"] and "error '*boom*'" in d["rule"]


def test_value_dependent_entry_is_stale_after_enough_covered_records(tmp_path):
    from conformance.known_failures import MIN_COVERED_BY_VALUE

    known = _usage_file(tmp_path)
    records = [
        _record(f"conv_transpose3d-n1-c1x1-s3-k2-bf16-seed{i + 1}", D.PASS)
        for i in range(MIN_COVERED_BY_VALUE)
    ]
    assert known.usage(records)[3].stale


def test_cli_summary_names_stale_entries(tmp_path, capsys):
    from conformance.cli import print_known_usage

    known = _usage_file(tmp_path)
    print_known_usage(
        known.usage([_record("conv_transpose2d-n1-c1x1-s3-k2-f32", D.PASS)]), out=sys.stdout
    )
    out = capsys.readouterr().out
    assert "known failures: 0 of 4 entries matched 0 record(s); 1 stale" in out
    assert "STALE known failure planted-unflipped.toml #2" in out


def test_a_twin_file_lends_its_entries_to_the_other_backend(tmp_path):
    (tmp_path / "lib-cpu.toml").write_text(
        '[[failure]]\nmatch = "conv1d-*"\nverdict = "value-mismatch"\nhint = "float16 '
        'accumulation"\nreason = "the op\'s bug"\n'
    )
    (tmp_path / "lib-cpu-nn.toml").write_text(
        'twin = "lib-cpu"\n\n[[failure]]\ncase = "conv1d-n1-c1x1-s5-k3-f32"\n'
        'verdict = "raised"\nreason = "the module\'s own"\n'
    )
    known = KnownFailures.load(tmp_path, cpu_flags=frozenset())
    nn = [e for e in known.entries if e.backend == "lib-cpu-nn"]
    assert [e.label for e in nn] == ["lib-cpu.toml #1 for lib-cpu-nn", "lib-cpu-nn.toml #1"]
    assert nn[0].rule == next(e for e in known.entries if e.backend == "lib-cpu").rule
    (tmp_path / "lib-gpu-nn.toml").write_text('twin = "lib-gpu"\n')
    with pytest.raises(ValueError, match="'twin' must name another backend .* got 'lib-gpu'"):
        KnownFailures.load(tmp_path, cpu_flags=frozenset())
    (tmp_path / "lib-gpu-nn.toml").write_text('twin = "lib-cpu-nn"\n')
    with pytest.raises(ValueError, match="'twin' 'lib-cpu-nn' has a twin of its own"):
        KnownFailures.load(tmp_path, cpu_flags=frozenset())


def test_the_torch_module_files_take_their_functional_twins_entries():
    known = KnownFailures.load()
    for nn, twin in (("torch-cpu-nn", "torch-cpu"), ("torch-cuda-nn", "torch-cuda")):
        theirs = [e.rule for e in known.entries if e.backend == twin]
        mine = [e.rule for e in known.entries if e.backend == nn]
        assert mine[: len(theirs)] == theirs and len(mine) == len(theirs) + 2
