"""The report's error-path view: who rejects which invalid case, and where backends disagree."""

from __future__ import annotations

from html.parser import HTMLParser

from conformance.backends import resolve
from conformance.case import parse_id
from conformance.report import render_report
from conformance.report_model import error_paths
from conformance.results import RunResults, backend_entry
from conformance.runner import Runner
from tests.planted import UnflippedWeight

INVALID = [
    "conv_transpose1d-n1-c1x1-s3-k3-st2-op2-f32",  # output_padding == stride
    "conv_transpose1d-n1-c1x1-s3-k2-st0-f32",  # stride 0
]


def _records():
    # The planted backend skips validation: it accepts the output_padding case and fails on
    # stride 0 inside NumPy, so it disagrees with the reference on one case, not the other.
    backends = resolve(["numpy-ref"]) + [UnflippedWeight()]
    runner = Runner(backends)
    return backends, [r for cid in INVALID for r in runner.run_case(parse_id(cid))]


def test_rules_count_outcomes_per_backend_and_disagreements_are_listed():
    _, records = _records()
    rules, disagreements = error_paths(records, ["numpy-ref", "planted-unflipped"])
    by_rule = {e.rule: e.outcomes for e in rules}
    op_rule = "output_padding must be smaller than max(stride, dilation) = N, got N"
    assert by_rule[op_rule] == {"numpy-ref": {"rejected": 1}, "planted-unflipped": {"accepted": 1}}
    assert [d.case_id for d in disagreements] == [INVALID[0]]
    assert list(disagreements[0].by_backend) == ["numpy-ref", "planted-unflipped"]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.in_section = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "section" and ("id", "error-paths") in attrs:
            self.in_section = 1
        elif tag == "section" and self.in_section:
            self.in_section = 0

    def handle_data(self, data):
        if self.in_section:
            self.text.append(data)


def test_report_has_the_error_path_section():
    backends, records = _records()
    html = render_report(RunResults({}, [backend_entry(b) for b in backends], records))
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.text)
    assert "Disagreements: 1 case" in text
    assert INVALID[0] in text
    assert "accepted 1" in text and "rejected 1" in text
