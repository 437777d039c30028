"""The coverage table: regions of hand-picked cases, counts over real runs, flags and n/a, the
CLI block and the report section."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from conformance import coverage as C
from conformance import diff as D
from conformance.backends import resolve
from conformance.backends.numpy_ref import NumpyReference
from conformance.case import parse_id
from conformance.cli import main
from conformance.report import render_report
from conformance.results import RunResults, backend_entry
from conformance.runner import Record, Runner
from tests.test_report import parse

BY_NAME = {g.name: g for g in C.REGIONS}
STRIDE, PAD, OUT_PAD, DILATION = (
    "stride > 1",
    "padding > dilation*(kernel-1)",
    "output_padding > 0",
    "dilation > 1",
)
GROUPS, DEPTHWISE, BATCH = "groups > 1", "depthwise (groups = in_channels > 1)", "batch >= 3"
LARGE = "a large reduction ((in_channels/groups)*kernel >= 1024)"
ODD, EVEN = "an odd output size (first axis)", "an even output size (first axis)"


def regions_of(case_id: str) -> set[str]:
    case = parse_id(case_id)
    return {g.name for g in C.REGIONS if g.applies(case.op) and g.holds(case)}


# --- regions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case_id, want",
    [
        (
            # output (5-1)*2 - 2*1 + (3-1) + 1 + 1 = 10: even
            "conv_transpose2d-n3-c4x4-s5-k3-st2-p1-op1-g4-bias-bf16",
            {STRIDE, OUT_PAD, GROUPS, DEPTHWISE, BATCH, "bias", "bfloat16", EVEN},
        ),
        # p 3 > 1*(3-1); output 5 + 6 - 2 - 1 + 1 = 9
        ("conv1d-n1-c2x2-s5-k3-p3-f32", {PAD, "float32", ODD}),
        # p 3 <= 2*(3-1): dilation but not padding beyond the kernel; output 9 + 6 - 4 = 11
        ("conv1d-n2-c1x1-s9-k3-p3-d2-f16", {DILATION, "float16", ODD}),
        # transposed: p 2 > 1*(2-1), the crop passes the ramp; output 3 - 4 + 1 + 1 = 1
        ("conv_transpose1d-n1-c1x1-s4-k2-p2-f32", {PAD, "float32", ODD}),
        # transposed, p 1 = 1*(2-1): crops the ramp only; output 3 - 2 + 1 + 1 = 3
        ("conv_transpose1d-n1-c1x1-s4-k2-p1-f32", {"float32", ODD}),
        # stride and padding on the second axis only count; parity is of the first axis (5)
        ("conv2d-n1-c1x1-s5x6-k1x3-st1x2-p0x3-f32", {STRIDE, PAD, "float32", ODD}),
        # 64 * 4 * 4 = 1024 products per output element; one channel less is 1008
        ("conv2d-n1-c64x8-s4-k4-f32", {LARGE, "float32", ODD}),
        ("conv2d-n1-c63x8-s4-k4-f32", {"float32", ODD}),
        # groups split the reduction: 128/2 * 16 = 1024, 128/4 * 16 = 512
        ("conv2d-n1-c128x8-s4-k4-g2-f32", {LARGE, GROUPS, "float32", ODD}),
        ("conv2d-n1-c128x8-s4-k4-g4-f32", {GROUPS, "float32", ODD}),
        # groups > 1 but fewer than the channels: not depthwise; one channel: not depthwise
        ("conv3d-n1-c4x4-s2-k1-g2-f16", {GROUPS, "float16", EVEN}),
        ("conv3d-n1-c1x1-s2-k1-f16", {"float16", EVEN}),
    ],
)
def test_regions_of_hand_picked_cases(case_id: str, want: set[str]) -> None:
    assert regions_of(case_id) == want


def test_output_padding_applies_to_transposed_ops_only() -> None:
    assert BY_NAME[OUT_PAD].ops == ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    assert all(BY_NAME[name].applies("conv1d") for name in (STRIDE, PAD, BATCH, "bfloat16"))
    assert not BY_NAME[OUT_PAD].applies("conv2d")


def test_an_invalid_case_has_no_output_size() -> None:
    case = parse_id("conv1d-n1-c1x1-s2-k5-f32")  # kernel longer than the input
    assert case.output_spatial() is None
    assert regions_of(case.id) == {"float32"}


# --- counting over real runs ----------------------------------------------------------------------


class NoBias(NumpyReference):
    """The reference, which documents that it cannot add a bias."""

    name = "planted-nobias"
    description = "reference without bias support (test)"

    def unsupported_reason(self, case):
        return "no bias here (test)" if case.bias else None


class AcceptsStrideZero(NumpyReference):
    """The reference, but a stride-0 case returns zeros instead of an error."""

    name = "planted-accepts"
    description = "accepts stride 0 (planted bug)"

    def run(self, case, inputs):
        if 0 in case.stride:
            return np.zeros((case.batch, 1, case.out_channels), dtype=np.float32)
        return super().run(case, inputs)


COUNTED = [
    "conv1d-n1-c2x2-s5-k3-st2-bias-f32",  # bias: passes on numpy-ref, unsupported on nobias
    "conv1d-n3-c2x2-s6-k3-f16",  # batch >= 3, runs on both backends: counted once
    "conv1d-n1-c4x4-s5-k1-g4-bf16",  # depthwise
    "conv_transpose1d-n1-c2x2-s4-k3-st2-op1-f32",  # output padding
]
INVALID = [
    "conv1d-n3-c2x2-s4-k1-st0-bias-f32",  # stride 0: rejected (both-rejected on both)
    "conv_transpose1d-n3-c2x2-s4-k3-st2-op2-f32",  # output_padding >= stride: rejected
]
UNSUPPORTED_ONLY = "conv1d-n1-c2x2-s10-k5-d2-bias-f32"  # only on nobias: dilation never runs
TOO_LARGE = "conv1d-n1-c512x512-s4096-k3-p4-f32"  # padding beyond the kernel: never runs


@pytest.fixture(scope="module")
def run_records() -> list[Record]:
    both = [*resolve(["numpy-ref"]), NoBias()]
    records = [r for cid in COUNTED + INVALID for r in Runner(both).run_case(parse_id(cid))]
    # An invalid case a backend accepted does not count either (the reference rejected it).
    records += Runner([AcceptsStrideZero()]).run_case(parse_id(INVALID[0]))
    records += Runner([NoBias()]).run_case(parse_id(UNSUPPORTED_ONLY))
    records += Runner(both, max_case_memory_mb=1).run_case(parse_id(TOO_LARGE))
    # A valid case that crashed a backend was run: it counts (the failure shows elsewhere).
    crash = "conv1d-n1-c2x2-s7-k2-d3-f32"
    records.append(Record(crash, "planted-crash", D.CRASHED, case=parse_id(crash).to_dict()))
    records.append(Record("not-an-id", "numpy-ref", D.PASS))  # no case: ignored
    return records


def test_the_run_gives_the_verdicts_the_counts_rely_on(run_records: list[Record]) -> None:
    verdicts = {(r.case_id, r.backend): r.verdict for r in run_records}
    assert verdicts[(COUNTED[0], "planted-nobias")] == D.UNSUPPORTED
    assert verdicts[(COUNTED[0], "numpy-ref")] == D.PASS
    assert verdicts[(COUNTED[1], "planted-nobias")] == D.PASS
    assert {verdicts[(cid, "numpy-ref")] for cid in INVALID} == {D.BOTH_REJECTED}
    assert verdicts[(INVALID[0], "planted-accepts")] == D.ACCEPTED_INVALID
    assert verdicts[(UNSUPPORTED_ONLY, "planted-nobias")] == D.UNSUPPORTED
    assert verdicts[(TOO_LARGE, "numpy-ref")] == D.TOO_LARGE


def test_counts_distinct_valid_cases_some_backend_ran(run_records: list[Record]) -> None:
    cov = C.coverage(run_records)
    assert cov.ops == ("conv1d", "conv_transpose1d")
    # conv1d: the three counted cases and the crashed one; conv_transpose1d: one.
    assert cov.cases == {"conv1d": 4, "conv_transpose1d": 1}
    count = {name: cov.count("conv1d", g) for name, g in BY_NAME.items()}
    assert count["bias"] == 1  # the invalid and the unsupported-only bias cases do not count
    assert count[BATCH] == 1  # on two backends, counted once; the invalid n3 case not at all
    assert count[STRIDE] == 1  # the stride-0 case is invalid
    assert count[DILATION] == 1  # the crashed case; the unsupported-only one does not count
    assert count[PAD] == 0  # only the too-large case has it
    assert count[DEPTHWISE] == count[GROUPS] == 1
    assert count["float32"] == 2 and count["float16"] == 1 and count["bfloat16"] == 1
    assert count[OUT_PAD] is None  # n/a for a forward op
    assert cov.count("conv_transpose1d", BY_NAME[OUT_PAD]) == 1  # the op2 case is invalid
    assert cov.count("conv_transpose1d", BY_NAME[BATCH]) == 0
    # Per backend: nobias ran the batch-3 case, not the bias one.
    assert cov.by_backend[("numpy-ref", "conv1d", "bias")] == 1
    assert ("planted-nobias", "conv1d", "bias") not in cov.by_backend
    assert cov.by_backend[("planted-nobias", "conv1d", BATCH)] == 1


def test_flags_zeros_where_a_region_applies_and_shows_na_elsewhere(
    run_records: list[Record],
) -> None:
    cov = C.coverage(run_records)
    flagged = {g.name: ops for g, ops in cov.flagged()}
    assert flagged[PAD] == ["conv1d", "conv_transpose1d"]
    assert flagged[BATCH] == ["conv_transpose1d"]
    assert flagged[LARGE] == ["conv1d", "conv_transpose1d"]
    assert OUT_PAD not in flagged  # conv_transpose1d has one; n/a for conv1d
    assert "bias" in flagged and flagged["bias"] == ["conv_transpose1d"]
    assert cov.cell("conv1d", BY_NAME[OUT_PAD]) == "n/a"
    assert cov.cell("conv1d", BY_NAME[PAD]) == "0!"
    assert cov.cell("conv1d", BY_NAME["float32"]) == "2"
    lines = C.gap_lines(cov)
    assert "no case with batch >= 3 for conv_transpose1d" in lines
    assert f"no case with {PAD} for conv1d, conv_transpose1d" in lines
    assert not any(OUT_PAD in line for line in lines)
    # nobias ran none of the run's conv1d bias cases (numpy-ref did): a gap of that backend.
    assert ("planted-nobias", BY_NAME["bias"], ["conv1d"]) in cov.backend_gaps()
    assert not any(b == "numpy-ref" and g.name == "bias" for b, g, _ in cov.backend_gaps())


def test_a_region_without_a_case_for_every_op_reads_any_op() -> None:
    ids = [f"{op}-n1-c1x1-s4-k1-f32" for op in C.OPS]
    cov = C.coverage([Record(cid, "numpy-ref", D.PASS) for cid in ids])
    lines = C.gap_lines(cov)
    assert "no case with batch >= 3 for any op" in lines
    assert (
        "no case with output_padding > 0 for conv_transpose1d, conv_transpose2d, conv_transpose3d"
        in lines
    )
    assert not any("float32" in line for line in lines)


def test_no_records_no_table() -> None:
    assert C.summary_lines([]) == []
    assert C.coverage([]).flagged() == []


# --- the CLI and the report -------------------------------------------------------------------


def cli_table(stdout: str) -> dict[str, dict[str, str]]:
    """The coverage table the CLI printed: op -> column label -> cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("coverage:"))
    header = lines[start + 1].split()
    assert header[0] == "op"
    table = {}
    for line in lines[start + 2 :]:
        cells = line.split()
        if not line.startswith("  ") or cells[0] not in C.OPS:
            break
        table[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def first_output_size(c: dict) -> int:
    """The output size along the first spatial axis, by the textbook formulas."""
    s, k, st, p, d = (c[key][0] for key in ("spatial", "kernel", "stride", "padding", "dilation"))
    if c.get("padding_mode") == "same":  # ceil(S / s): padded to it
        return -(-s // st)
    if c["op"].startswith("conv_transpose"):
        return (s - 1) * st - 2 * p + d * (k - 1) + c["output_padding"][0] + 1
    return (s + 2 * p - d * (k - 1) - 1) // st + 1


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[str, dict, str]:
    """A small real run: stdout, the results JSON and the report."""
    tmp = tmp_path_factory.mktemp("cov")
    out, report = tmp / "r.json", tmp / "r.html"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "run",
                "--ops",
                "conv1d,conv_transpose2d",
                "--dtypes",
                "float32",
                "--backends",
                "numpy-ref",
                "--max-examples",
                "5",
                "--no-corpus",
                "--shrink-groups",
                "0",
                "--no-isolation",
                "-q",
                "--json",
                str(out),
                "--report",
                str(report),
                "--stream",
                str(tmp / "r.jsonl"),
            ]
        )
    assert code == 0, buf.getvalue()
    return buf.getvalue(), json.loads(out.read_text()), report.read_text()


def test_cli_prints_the_table_after_the_verdicts(cli_run) -> None:
    stdout, data, _ = cli_run
    assert stdout.index("verdicts per op and backend") < stdout.index("\ncoverage:")
    table = cli_table(stdout)
    assert set(table) == {"conv1d", "conv_transpose2d"}
    # The expected counts, worked out here from the results JSON.
    passed = [r["case"] for r in data["records"] if r["verdict"] == "pass"]
    assert {r["verdict"] for r in data["records"]} == {"pass", "both-rejected"}
    for op, row in table.items():
        cases = [c for c in passed if c["op"] == op]
        assert len(cases) >= 5
        assert row["cases"] == str(len(cases))
        n_bias = sum(c["bias"] for c in cases)
        assert row["bias"] == (str(n_bias) if n_bias else "0!")
        n_stride = sum(any(s > 1 for s in c["stride"]) for c in cases)
        assert row["st>1"] == (str(n_stride) if n_stride else "0!")
        # The run draws float32 cases only: float16 is flagged.
        assert row["f16"] == "0!" and row["f32"] == str(len(cases))
        n_odd = sum(first_output_size(c) % 2 for c in cases)
        assert row["odd"] == (str(n_odd) if n_odd else "0!")
        assert int(row["odd"].rstrip("!")) + int(row["even"].rstrip("!")) == len(cases)
        n_late = sum(c["batch"] >= 3 for c in cases)
        assert row["n>=3"] == (str(n_late) if n_late else "0!")
    assert table["conv1d"]["op>0"] == "n/a"
    assert table["conv_transpose2d"]["op>0"] != "n/a"
    not_covered = stdout[stdout.index("not covered:") :].split("\n\n")[0]
    assert "no case with float16 for conv1d, conv_transpose2d" in " ".join(not_covered.split())


def test_report_has_the_coverage_section_and_the_flags_in_the_banner(cli_run) -> None:
    stdout, _, html = cli_run
    doc = parse(html)
    section = doc.find("section", id="coverage")
    assert section.find("details", id="coverage-details")  # collapsed
    rows = section.find("table", id="coverage-table").find("tbody").find_all("tr")
    table = cli_table(stdout)
    labels = ["cases", *(g.label for g in C.REGIONS)]
    for tr in rows:
        op = tr.find("th").text()
        assert [td.text() for td in tr.find_all("td")] == [table[op][k] for k in labels]
    flagged_cells = section.find_all("td", class_="cov-gap")
    assert len(flagged_cells) == sum(v == "0!" for row in table.values() for v in row.values())
    banner = [li.text() for li in doc.find(id="coverage-gaps").find_all("li")]
    assert "no case with float16 for conv1d, conv_transpose2d" in banner
    assert [li.text() for li in section.find(id="coverage-flagged").find_all("li")] == [
        line for line in banner if line.startswith("no case with")
    ]


def test_report_lists_backend_gaps(run_records: list[Record]) -> None:
    backends = [backend_entry(b) for b in (*resolve(["numpy-ref"]), NoBias())]
    doc = parse(render_report(RunResults({}, backends, run_records)))
    items = [li.text() for li in doc.find(id="coverage-backend-gaps").find_all("li")]
    assert "planted-nobias: no case with bias for conv1d" in items
    assert "planted-crash: no case with bias for conv1d" in items
