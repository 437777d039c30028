"""The HTML report: rendered from real runs (real backends plus planted-bug ones) and parsed back.

Nothing is mocked: results come from the runner, the HTML is parsed with :mod:`html.parser` and
its content compared with the records.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conformance import report_model as M
from conformance.backends import resolve
from conformance.backends.numpy_ref import NumpyReference
from conformance.case import Case
from conformance.diff import DiffMetrics, WorstElement
from conformance.known_failures import KnownFailure, KnownFailures
from conformance.report import render_report, write_report
from conformance.results import RunResults, backend_entry, counts
from conformance.runner import Record, Runner

SCRIPT_TEXT = "<script>alert('pwned')</script>"


# --- planted-bug backends -----------------------------------------------------------------------


class FlippedWeight(NumpyReference):
    """The reference with the kernel flipped along every spatial axis: wrong unless k == 1."""

    name = "planted-flip"
    description = "reference with a spatially flipped kernel (planted bug)"

    def run(self, case, inputs):
        axes = tuple(range(1, inputs.w.ndim - 1))
        flipped = dataclasses.replace(inputs, w=np.ascontiguousarray(np.flip(inputs.w, axes)))
        return super().run(case, flipped)


class RaisesOn2d(NumpyReference):
    """Raises on every 2-D op, with a message that holds HTML."""

    name = "planted-raise"
    description = "raises on 2-D ops (planted bug)"

    def run(self, case, inputs):
        if case.ndim == 2:
            raise RuntimeError(f"kernel {SCRIPT_TEXT} exploded for {case.op}")
        return super().run(case, inputs)


CASES = [
    Case("conv1d", 1, 2, 3, (8,), (3,)),
    Case(
        "conv1d",
        2,
        4,
        4,
        (9,),
        (3,),
        stride=(2,),
        padding=(1,),
        groups=2,
        dtype="float16",
        bias=True,
        seed=3,
    ),
    Case("conv2d", 1, 1, 1, (5, 5), (1, 1)),  # 1x1 kernel: the flip is harmless
    Case("conv2d", 1, 3, 2, (6, 7), (3, 2), padding=(1, 0), seed=7),
    Case("conv2d", 2, 2, 4, (12, 10), (3, 3), dilation=(2, 1), dtype="bfloat16", seed=11),
    Case("conv_transpose1d", 1, 2, 2, (5,), (3,), stride=(3,), output_padding=(1,), seed=9),
    Case("conv_transpose2d", 1, 2, 2, (4, 4), (3, 3), stride=(2, 2), seed=5),
    Case("conv1d", 1, 1, 1, (4,), (2,), stride=(0,)),  # invalid: every backend rejects it
    Case("conv3d", 1, 2, 2, (3, 3, 3), (2, 2, 2), groups=2),  # unsupported on MLX
]
KNOWN_CASE = CASES[3]  # planted-flip fails it: listed as a known failure
FIXED_CASE = CASES[0]  # numpy-ref passes it but is listed: reported as fixed
SCRIPT_ID = "conv1d-n1-c1x1-s4-k2-" + SCRIPT_TEXT  # not a valid id: parsing must not be needed


def build_results() -> RunResults:
    builtin = resolve(["numpy-ref", "mlx-cpu", "mlx-gpu", "torch-cpu", "torch-cuda"])
    backends = [*builtin, FlippedWeight(), RaisesOn2d()]
    known = KnownFailures(
        [
            KnownFailure("planted-flip", "flipped on purpose (test)", case=KNOWN_CASE.id),
            KnownFailure("numpy-ref", "was broken once (test)", case=FIXED_CASE.id),
        ]
    )
    runner = Runner(backends, known=known)
    records = [r for c in CASES for r in runner.run_case(c)]
    records.append(
        Record(
            case_id=SCRIPT_ID,
            backend="planted-raise",
            verdict="raised",
            detail=f"RuntimeError: {SCRIPT_TEXT}",
            seconds=0.001,
            error_type="RuntimeError",
            error_message=SCRIPT_TEXT,
        )
    )
    settings = {"seed": 1234, "profile": "ci <fast>", "max_examples": 10}
    return RunResults(settings, [backend_entry(b) for b in backends], records)


@pytest.fixture(scope="module")
def results() -> RunResults:
    return build_results()


@pytest.fixture(scope="module")
def html(results: RunResults) -> str:
    return render_report(results)


@pytest.fixture(scope="module")
def doc(html: str) -> Node:
    return parse(html)


# --- a small DOM over html.parser ---------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        """Descendants by tag and attributes (True: present; "class_": one of the classes)."""
        out = []
        for n in self.iter():
            if n is self or (tag and n.tag != tag):
                continue
            ok = True
            for key, want in attrs.items():
                if key == "class_":
                    ok = want in (n.attrs.get("class") or "").split()
                else:
                    have = n.attrs.get(key.replace("_", "-"))
                    ok = (key.replace("_", "-") in n.attrs) if want is True else have == want
                if not ok:
                    break
            if ok:
                out.append(n)
        return out

    def find(self, tag: str | None = None, **attrs: str | bool) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        assert n is not None and n.parent is not None, f"stray </{tag}>"
        self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.cur is builder.root, "unclosed elements"
    builder.root.tags = builder.tags  # type: ignore[attr-defined]
    return builder.root


def matrix_counts(doc: Node, table_id: str = "matrix") -> dict[tuple[str, str], dict[str, int]]:
    table = doc.find("table", id=table_id)
    out: dict[tuple[str, str], dict[str, int]] = {}
    for td in table.find_all("td", data_op=True, data_backend=True):
        cell = {}
        for badge in td.find_all("span", data_verdict=True):
            cell[badge.attrs["data-verdict"]] = int(badge.find("b").text())
        if cell:
            out[(td.attrs["data-op"], td.attrs["data-backend"])] = cell
    return out


# --- tests --------------------------------------------------------------------------------------


def test_results_hold_the_planted_material(results: RunResults) -> None:
    verdicts = {(r.backend, r.verdict) for r in results.records}
    assert ("planted-flip", "value-mismatch") in verdicts
    assert ("planted-raise", "raised") in verdicts
    assert any(r.verdict == "both-rejected" for r in results.records)
    assert any(r.known_failure for r in results.records)
    assert any(r.fixed for r in results.records)


def test_matrix_counts_match_counts(results: RunResults, doc: Node) -> None:
    assert matrix_counts(doc) == counts(results.records)


def test_dtype_breakdown_adds_up_to_the_matrix(results: RunResults, doc: Node) -> None:
    table = doc.find("table", id="matrix-dtype")
    summed: dict[tuple[str, str], dict[str, int]] = {}
    for td in table.find_all("td", data_op=True, data_backend=True, data_dtype=True):
        cell = summed.setdefault((td.attrs["data-op"], td.attrs["data-backend"]), {})
        for badge in td.find_all("span", data_verdict=True):
            v = badge.attrs["data-verdict"]
            cell[v] = cell.get(v, 0) + int(badge.find("b").text())
    assert {k: v for k, v in summed.items() if v} == counts(results.records)


def test_header_names_environment_backends_and_settings(results: RunResults, doc: Node) -> None:
    env = doc.find(id="environment").text()
    for key in ("numpy", "python", "git commit", results.created):
        assert key in env
    backends = doc.find("table", id="backends")
    rows = {tr.attrs["data-backend"]: tr for tr in backends.find_all("tr", data_backend=True)}
    for b in results.backends:
        row = rows[b["name"]]
        assert ("yes" if b["available"] else "no") in row.text()
        assert b["detail"] in row.text()  # the reason a backend is not available
    settings = doc.find(id="settings").text()
    assert "1234" in settings and "ci <fast>" in settings


def test_every_new_failure_has_its_id_and_replay_command(results: RunResults, doc: Node) -> None:
    failures = doc.find("section", id="failures")
    code = {c.text() for c in failures.find_all("code")}
    failed = [r for r in results.records if r.failed]
    assert len(failed) >= 5
    for r in failed:
        assert r.case_id in code
        assert r.replay in code
    assert f"New failures: {len(failed)}" in failures.find("h2").text()


def test_failure_groups_show_the_smallest_case_first(results: RunResults, doc: Node) -> None:
    groups = doc.find_all("div", class_="failure-group")
    assert groups
    for g in groups:
        ids = [c.text() for c in g.find_all("code", class_="cid")]
        ids += [
            tr.find("code").text()
            for table in g.find_all("table", class_="compact")
            for tr in table.find_all("tr")[1:]
        ]
        members = [
            r
            for r in results.records
            if r.failed and r.case_id in ids and r.backend == g.attrs["data-backend"]
        ]
        assert ids[0] == min(members, key=M.case_size).case_id
        assert f"{len(ids)} case" in g.find("span", class_="count").text()


def test_failure_cards_have_parameters_metrics_heatmap_and_copy_button(doc: Node) -> None:
    cards = [
        c
        for g in doc.find_all("div", class_="failure-group", data_verdict="value-mismatch")
        for c in g.find_all("article", class_="case-card")
    ]
    assert cards
    card = cards[0]
    params = card.find("table", class_="params").text()
    assert "kernel" in params and "stride" in params
    assert "max |err| / bound" in card.find("table", class_="metrics").text()
    worst = card.find("table", class_="worst").text()
    assert "got" in worst and "want" in worst and "bound" in worst
    hm = card.find("table", class_="hm")
    cells = hm.find_all("td")
    assert cells and all(re.fullmatch(r"h\d( worst)?", td.attrs["class"]) for td in cells)
    assert sum("worst" in td.attrs["class"] for td in cells) == 1
    assert hm.find_all("th", class_="axis")
    assert card.find("div", class_="legend")
    replay = card.find("div", class_="replay")
    assert replay.find("button", class_="copy")
    assert replay.find("code").text().startswith("python -m conformance replay ")


def test_html_from_the_results_is_escaped(results: RunResults, html: str, doc: Node) -> None:
    assert SCRIPT_TEXT not in html
    assert "&lt;script&gt;" in html
    assert doc.tags.count("script") == 1  # type: ignore[attr-defined]  # the report's own
    texts = [n.text() for n in doc.find("section", id="failures").find_all("code")]
    assert SCRIPT_ID in texts  # the id renders as text
    messages = [n.text() for n in doc.find_all("pre", class_="message")]
    assert any(SCRIPT_TEXT in m for m in messages)


def test_known_failures_and_fixed_have_their_own_section(results: RunResults, doc: Node) -> None:
    known = doc.find("section", id="known-failures")
    failures = doc.find("section", id="failures").text()
    known_records = [r for r in results.records if r.known_failure]
    assert known_records
    for r in known_records:
        assert r.case_id in known.text()
        assert r.known_failure in known.text()
        assert not any(
            g.attrs["data-backend"] == r.backend and r.case_id in g.text()
            for g in doc.find_all("div", class_="failure-group")
        )
    fixed = [r for r in results.records if r.fixed]
    assert fixed and all(r.case_id in known.text() for r in fixed)
    assert "Fixed: 1" in known.text()
    assert "remove" in known.text()
    assert failures  # the failures section exists beside it


def test_unsupported_and_rejected_are_grouped_by_reason_and_collapsed(
    results: RunResults, doc: Node
) -> None:
    skipped = doc.find("section", id="skipped")
    for verdict in ("unsupported", "both-rejected"):
        records = [r for r in results.records if r.verdict == verdict]
        block = skipped.find("details", id=f"skipped-{verdict}")
        assert "open" not in block.attrs
        if not records:
            continue
        assert f"{len(records)} records" in block.find("summary").text()
        groups = M.group_by_reason(results.records, verdict)
        listed = [d.find("summary").text() for d in block.find_all("details", class_="reason")]
        for g, text in zip(groups, listed, strict=True):
            assert str(g.count) in text and str(g.key) in text


def test_case_list_rows_carry_filter_attributes(results: RunResults, doc: Node) -> None:
    rows = doc.find("table", id="case-list").find_all("tr", class_="case-row")
    assert len(rows) == sum(1 for r in results.records)  # small run: everything is listed
    for tr in rows:
        for key in ("data-op", "data-backend", "data-dtype", "data-verdict"):
            assert tr.attrs.get(key)
    assert sum(tr.attrs.get("data-failing") == "1" for tr in rows) == sum(
        r.failed for r in results.records
    )
    shown = doc.find(id="shown-count").text()
    assert shown == f"shown {len(rows)} of {len(rows)}"


def test_timing_per_backend_and_slowest(results: RunResults, doc: Node) -> None:
    table = doc.find("table", id="timing-backends")
    timed = {r.backend for r in results.records if r.seconds is not None}
    assert {tr.find("td").text() for tr in table.find_all("tr")[1:]} == timed
    slowest = doc.find("table", id="slowest").find_all("tr")[1:]
    assert len(slowest) == 10
    top = max((r for r in results.records if r.seconds is not None), key=lambda r: r.seconds)
    assert slowest[0].find("code").text() == top.case_id


def test_report_is_self_contained(html: str, doc: Node) -> None:
    for node in doc.iter():
        for attr in ("src", "href", "action", "data", "poster"):
            value = node.attrs.get(attr)
            assert value is None or value.startswith("#"), (node.tag, attr, value)
    assert not doc.find_all("link") and not doc.find_all("img") and not doc.find_all("iframe")
    # url(#id) is the inline SVG pictures' clip paths: a fragment of this page.
    assert "@import" not in html and not re.search(r"url\((?!#)", html)
    assert (
        "default-src 'none'"
        in doc.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    )


def test_comparison_marks_new_fixed_and_error_changes(results: RunResults) -> None:
    flip = [r for r in results.records if r.failed and r.backend == "planted-flip"]
    newly, grew = flip[0], flip[1]
    fixed = next(r for r in results.records if r.verdict == "pass" and r.metrics is not None)
    base = []
    for r in results.records:
        if r is newly:
            r = dataclasses.replace(r, verdict="pass", metrics=None, detail="")
        elif r is fixed:
            r = dataclasses.replace(r, verdict="value-mismatch", detail="planted")
        elif r is grew:
            smaller = r.metrics.max_error_over_bound / 10
            r = dataclasses.replace(
                r, metrics=dataclasses.replace(r.metrics, max_error_over_bound=smaller)
            )
        base.append(r)
    baseline = RunResults(
        results.settings, results.backends, base, results.environment, "2020-01-01T00:00:00+00:00"
    )
    doc = parse(render_report(results, baseline))
    section = doc.find("section", id="comparison")
    assert "2020-01-01T00:00:00+00:00" in section.text()

    def ids(kind: str) -> set[tuple[str, str]]:
        table = section.find("table", data_kind=kind)
        return {
            (tr.find("code").text(), tr.attrs["data-backend"])
            for tr in table.find_all("tr", data_op=True)
        }

    assert ids("new-failure") == {(newly.case_id, newly.backend)}
    assert ids("fixed") == {(fixed.case_id, fixed.backend)}
    assert ids("error-grew") == {(grew.case_id, grew.backend)}
    rows = {
        (tr.find("code").text(), tr.attrs["data-backend"]): tr
        for tr in doc.find("table", id="case-list").find_all("tr", class_="case-row")
    }
    assert rows[(newly.case_id, newly.backend)].attrs["data-change"] == "new-failure"
    assert rows[(fixed.case_id, fixed.backend)].attrs["data-change"] == "fixed"
    chips = {
        b.attrs["data-change"]: b.text() for b in doc.find_all("button", class_="change-filter")
    }
    assert chips["new-failure"].endswith(" 1") and chips["fixed"].endswith(" 1")


def test_write_report(results: RunResults, tmp_path: Path) -> None:
    path = write_report(results, tmp_path / "sub" / "report.html")
    assert path == tmp_path / "sub" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_report_round_trips_through_the_results_file(results: RunResults, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    results.write(path)
    again = RunResults.read(path)
    assert matrix_counts(parse(render_report(again))) == counts(results.records)


def test_odd_and_empty_results_render() -> None:
    assert "No new failures." in render_report(RunResults({}, [], [], {}, "2026-01-01"))
    metrics = DiffMetrics(
        4, float("nan"), None, 0, float("inf"), 4, 1.0, None, None, None, [[1e300, 0.5]], None
    )
    odd = RunResults(
        {"seed": None},
        [{"name": "gone", "available": False}],
        [
            Record("not-an-id", "x", "nan-inf-mismatch", metrics=metrics, seconds=float("nan")),
            Record("conv1d-n1-c1x1-s4-k2-f32", "x", "crashed", detail="SIGFPE"),
            Record("conv1d-n1-c1x1-s4-k2-f32", "y", "timeout"),
        ],
        {"versions": None},
        "2026-01-01",
    )
    doc = parse(render_report(odd, odd))
    assert matrix_counts(doc) == counts(odd.records)
    assert "non-finite" in doc.find("table", class_="hm").find("tr", data_v=True).attrs["data-v"]


# --- large runs ---------------------------------------------------------------------------------


def synthetic_results(n: int = 10_000, seed: int = 0, all_failing: bool = False) -> RunResults:
    """``n`` records built directly over four backends: ~25% new failures (value mismatches
    with error maps up to 48x48, raised), rejected, unsupported and passing ones; or, with
    ``all_failing``, nothing but value mismatches."""
    rng = random.Random(seed)
    backends = ["numpy-ref", "mlx-cpu", "torch-cpu", "planted-flip"]
    ops = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
    hints = [None, "error profile is consistent with float16 accumulation"]
    maps = [  # a pool of error maps, 1x1 to 48x48 (drawing one per record would be slow)
        [[round(rng.lognormvariate(0, 3), 3) for _ in range(w)] for _ in range(h)]
        for h, w in ((rng.randint(1, 48), rng.randint(1, 48)) for _ in range(40))
    ]
    records: list[Record] = []
    while len(records) < n:
        op = rng.choice(ops)
        nd = int(op[-2])
        case = Case(
            op,
            rng.randint(1, 2),
            rng.randint(1, 4),
            rng.randint(1, 4),
            tuple(rng.randint(3, 12) for _ in range(nd)),
            tuple(rng.randint(1, 3) for _ in range(nd)),
            dtype=rng.choice(["float32", "float16", "bfloat16"]),
            seed=rng.randint(0, 9999),
        )
        for b in backends:
            u = rng.random()
            worst = WorstElement(0, (0,) * nd, 0, 1.0, 0.5, 0.5, 0.001, 4000)
            if all_failing or (b == "planted-flip" and u < 0.7) or u < 0.08:
                emap = rng.choice(maps)
                h, w = len(emap), len(emap[0])
                metrics = DiffMetrics(
                    h * w * 2,
                    0.5,
                    1.2,
                    4000,
                    1000.0,
                    h * w,
                    0.5,
                    worst,
                    "50.0% of elements over tolerance",
                    rng.choice(hints),
                    emap,
                    ("row (H)", "column (W)"),
                )
                kw = {"verdict": "value-mismatch", "detail": f"{h * w} over", "metrics": metrics}
            elif u < 0.11:
                kw = {
                    "verdict": "raised",
                    "detail": "ValueError: boom",
                    "error_type": "ValueError",
                    "error_message": rng.choice(["boom", "bad shape (1, 2)", "out of memory"]),
                }
            elif u < 0.2:
                kw = {
                    "verdict": "both-rejected",
                    "detail": "RuntimeError: bad stride",
                    "reference_error": f"{op}: stride must be >= 1, got 0",
                }
            elif u < 0.25:
                kw = {"verdict": "unsupported", "detail": "not supported here"}
            else:
                metrics = DiffMetrics(100, 1e-7, 1e-7, 1, 0.01, 0, 0.0, worst)
                kw = {"verdict": "pass", "metrics": metrics}
            records.append(
                Record(
                    case_id=case.id,
                    backend=b,
                    seconds=rng.random() / 100,
                    case=case.to_dict(),
                    **kw,
                )
            )
    return RunResults(
        {"seed": seed}, [{"name": b, "available": True} for b in backends], records[:n]
    )


@pytest.mark.parametrize("all_failing", [False, True], ids=["mixed", "all-failing"])
def test_ten_thousand_records_give_a_small_report(all_failing: bool) -> None:
    results = synthetic_results(all_failing=all_failing)
    start = time.perf_counter()
    html = render_report(results, max_passing_details=200)
    seconds = time.perf_counter() - start
    size = len(html.encode("utf-8"))
    assert size < 5_000_000, f"{size / 1e6:.2f} MB"
    assert seconds < 30
    doc = parse(html)
    assert matrix_counts(doc) == counts(results.records)
    rows = doc.find("table", id="case-list").find_all("tr", class_="case-row")
    not_passing = sum(r.verdict != "pass" for r in results.records)
    passing = len(results.records) - not_passing
    assert len(rows) == min(not_passing + min(passing, 200), 5000)
    failing = sum(r.failed for r in results.records)
    assert failing > 2000
    assert sum(tr.attrs.get("data-failing") == "1" for tr in rows) == min(failing, 5000)
    cards = doc.find("section", id="failures").find_all("article", class_="case-card")
    assert 0 < len(cards) <= 200
    if failing > 5000:
        assert f"{len(results.records) - 5000} more records" in doc.find(id="cases").text()


def test_thirty_thousand_records_stay_under_5_mb() -> None:
    html = render_report(synthetic_results(30_000, seed=1))
    assert len(html.encode("utf-8")) < 5_000_000


# --- the model, directly ------------------------------------------------------------------------


def test_normalize_message_groups_messages_about_different_sizes() -> None:
    a = M.normalize_message("conv2d: stride[0] must be >= 1, got 0")
    b = M.normalize_message("conv2d: stride[1] must be >= 1, got -3")
    assert a == b == "conv2d: stride[N] must be >= N, got N"
    assert M.normalize_message("strides (0,1,1).") == "strides (N,\u2026)."


def test_shape_mismatch_signature_names_the_axes() -> None:
    r = Record(
        "conv1d-n1-c1x1-s4-k2-f32",
        "x",
        "shape-mismatch",
        detail="shape (1, 3, 2) but the reference has (1, 5, 2)",
    )
    assert M.failure_cause(r) == "output smaller along spatial axis 0"


def test_compare_runs_classifies_changes() -> None:
    m = DiffMetrics(4, 0.1, 0.1, 1, 0.5, 0, 0.0, None)
    cur = [
        Record("a", "b", "value-mismatch"),
        Record("c", "b", "pass"),
        Record("d", "b", "pass", metrics=dataclasses.replace(m, max_error_over_bound=0.5)),
        Record("e", "b", "pass", metrics=m),
        Record("f", "b", "pass"),
    ]
    base = [
        Record("a", "b", "pass"),
        Record("c", "b", "raised"),
        Record("d", "b", "pass", metrics=dataclasses.replace(m, max_error_over_bound=0.1)),
        Record("e", "b", "pass", metrics=dataclasses.replace(m, max_error_over_bound=0.4)),
        Record("g", "b", "pass"),
    ]
    cmp = M.compare_runs(cur, base)
    assert {k: c.kind for k, c in cmp.changes.items()} == {
        ("a", "b"): "new-failure",
        ("c", "b"): "fixed",
        ("d", "b"): "error-grew",
    }
    assert (cmp.common, cmp.only_current, cmp.only_baseline) == (4, 1, 1)


def test_heat_class_buckets_by_decade() -> None:
    assert [M.heat_class(v) for v in (0, 0.005, 0.05, 0.5, 5, 50, 500, 5e3, 5e4, 1e300)] == [
        f"h{i}" for i in range(10)
    ]


def test_sample_passing_spreads_over_cells() -> None:
    recs = [Record(f"conv1d-n1-c1x1-s{i}-k1-f32", b, "pass") for b in "xyz" for i in range(1, 50)]
    sample = M.sample_passing(recs, 9)
    assert len(sample) == 9 and {r.backend for r in sample} == set("xyz")


def test_stale_known_failure_entries_are_listed_and_counted_in_the_header(results: RunResults):
    stale_entry = KnownFailure(
        "numpy-ref",
        "raised once on conv2d; fixed since (test)",
        match="conv2d-*",
        verdict="raised",
        error="*boom*",
        source="cases/known_failures/numpy-ref.toml",
        index=1,
    )
    usage = KnownFailures([stale_entry]).usage(results.records)
    assert usage[0].stale and usage[0].covered > 0
    with_usage = dataclasses.replace(results, known_failure_usage=[u.to_dict() for u in usage])
    page = render_report(with_usage)
    assert re.search(r'href="#stale" class="bad">1 stale known-failure entry</a>', page)
    assert "<code>numpy-ref.toml #1</code>" in page
    assert "match &#39;conv2d-*&#39;, verdict raised, error &#39;*boom*&#39;" in page
    # Without stale entries, the header says nothing about them.
    assert 'href="#stale"' not in render_report(results)
