"""The rule learner (conformance/rules.py) and where its rules show: the report's failure groups
and verdict banner, and the CLI summary, on a planted wrong-groups kernel."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from conformance import report_model as M
from conformance.backends import resolve
from conformance.case import Case, parse_id
from conformance.cli import main
from conformance.generate import generated_cases
from conformance.report import render_report
from conformance.results import RunResults, backend_entry
from conformance.rules import MIN_FAILURES, Rule, infer_rule
from conformance.runner import Runner
from tests.planted import WrongGroups


def _case(**kw) -> Case:
    base = dict(op="conv2d", batch=1, in_channels=4, out_channels=4, spatial=(6, 6), kernel=(3, 3))
    return Case(**{**base, **kw})


def test_one_literal_that_separates_exactly_is_the_rule():
    fails = [_case(groups=2, seed=i) for i in range(4)] + [_case(groups=4, stride=2)]
    passes = [_case(seed=i) for i in range(6)] + [_case(stride=2), _case(dtype="float16")]
    rule = infer_rule(fails, passes)
    assert rule == Rule(("groups > 1",), 5, 5, 0, 8)
    assert str(rule) == "groups > 1: 5/5 failures, 0/8 passes"


def test_a_conjunction_when_no_single_feature_separates():
    # Failing: strided *and* padded; passing: either alone, or neither.
    fails = [_case(stride=2, padding=1, seed=i) for i in range(4)]
    passes = [_case(stride=2, seed=1), _case(padding=1, seed=2), _case(seed=3)]
    assert infer_rule(fails, passes).text == "stride > 1 and padding > 0"


def test_a_shorter_rule_wins_unless_a_longer_one_is_clearly_better():
    # groups > 1 matches all 60 failures and one pass (F1 0.992); adding "no bias" would make
    # it exact (F1 1.0), a gain within PARSIMONY: the shorter rule is kept.
    fails = [_case(groups=2, seed=i) for i in range(60)]
    passes = [_case(groups=2, bias=True, seed=99)] + [_case(seed=i) for i in range(20)]
    rule = infer_rule(fails, passes)
    assert rule.literals == ("groups > 1",)
    assert (rule.failures_matched, rule.passes_matched) == (60, 1)


def test_too_few_failures_give_no_rule_and_no_passes_give_every_case():
    assert infer_rule([_case(groups=2)] * (MIN_FAILURES - 1), [_case()]) is None
    every = infer_rule([_case(groups=2, seed=i) for i in range(MIN_FAILURES)], [])
    assert every.text == "every case" and every.exact


@pytest.fixture(scope="module")
def planted_run() -> RunResults:
    """conv_transpose2d on the reference and on a kernel that reads every group's input from
    the first group: wrong exactly when groups > 1."""
    backends = [*resolve(["numpy-ref"]), WrongGroups()]
    runner = Runner(backends)
    cases = generated_cases(
        ["conv_transpose2d"], ["float32"], valid_per_op=120, invalid_per_op=0, seed=3
    )
    # One bug, one verdict: with NaN and infinite inputs the wrong channels also move NaN
    # (a second group, nan-inf-mismatch), which the CLI test below allows for.
    cases = [c for c in cases if c.fill != "special"]
    records = [r for c in cases for r in runner.run_case(c)]
    return RunResults({"seed": 3}, [backend_entry(b) for b in backends], records)


def test_wrong_groups_kernel_gets_the_groups_rule(planted_run):
    groups = M.group_failures(planted_run.records)
    assert len(groups) == 1
    rule = M.group_rule(groups[0], planted_run.records)
    assert rule.literals == ("groups > 1",)
    assert rule.failures_matched == rule.failures == groups[0].count
    # Passing cases with groups > 1 exist only where the wrong channels cannot show (an output
    # no tap reaches): few.
    assert rule.passes_matched <= rule.passes // 10


class _Text(HTMLParser):
    """Text of the elements with a given id or class."""

    def __init__(self, want_id: str | None = None, want_class: str | None = None) -> None:
        super().__init__()
        self.want_id, self.want_class = want_id, want_class
        self.depth = 0
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth:
            self.depth += 1
        elif (self.want_id and a.get("id") == self.want_id) or (
            self.want_class and self.want_class in (a.get("class") or "").split()
        ):
            self.depth = 1
            self.found.append("")

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.found[-1] += data


def _texts(page: str, **want) -> list[str]:
    parser = _Text(**want)
    parser.feed(page)
    return [" ".join(t.split()) for t in parser.found]


def test_report_leads_with_the_verdict_and_shows_the_rule(planted_run):
    page = render_report(planted_run)
    n = sum(1 for r in planted_run.records if r.failed)
    (banner,) = _texts(page, want_id="verdict")
    assert banner.startswith(f"{n} new failures in 1 group: do not ship")
    assert "planted-wrong-groups" in banner and f"{n} new" in banner
    assert re.search(r"groups > 1: \d+/\d+ failures, \d+/\d+ passes", banner)
    assert page.index('id="verdict"') < page.index('id="summary"') < page.index('id="overview"')
    (rule,) = _texts(page, want_class="rule")
    assert rule.startswith(f"inferred rule: groups > 1 — {n}/{n} failures")
    # The group leads with its smallest case.
    group = M.group_failures(planted_run.records)[0]
    first_card = page.index('class="case-card', page.index('id="group-1"'))
    assert page.index(group.records[0].case_id, first_card) < page.index(
        group.records[1].case_id, first_card
    )


def test_report_of_a_clean_run_says_so_first():
    backends = resolve(["numpy-ref"])
    records = Runner(backends).run_case(Case("conv1d", 1, 2, 2, (5,), (3,)))
    page = render_report(RunResults({}, [backend_entry(b) for b in backends], records))
    (banner,) = _texts(page, want_id="verdict")
    assert banner.startswith("No new failures")


@pytest.mark.parametrize("groups", [10, 0])
def test_run_shrinks_each_failure_group_and_the_shrunk_case_leads(tmp_path, capsys, groups):
    out = tmp_path / "r.json"
    args = ["run", "--plugin", "tests.planted:WrongGroups", "--backends", "planted-wrong-groups"]
    args += ["--dirs", "fwd"]
    args += ["--ops", "conv_transpose2d", "--dtypes", "float32", "--max-examples", "40"]
    args += ["--invalid-examples", "0", "--no-corpus", "--no-isolation", "-q"]
    args += ["--shrink-groups", str(groups), "--json", str(out)]
    assert main(args) == 1
    records = RunResults.read(out).records
    shrunk = [r for r in records if r.shrunk_from]
    if not groups:
        assert not shrunk
        return
    # One group per verdict the bug gives: value-mismatch, and nan-inf-mismatch where special
    # input values move with the wrong channels. Each shrunk case leads its group.
    found = M.group_failures(records)
    assert len(shrunk) == len(found) >= 1
    stdout = capsys.readouterr().out
    for small in shrunk:
        source = next(r for r in records if r.case_id == small.shrunk_from)
        assert M.case_size(small) < M.case_size(source)
        assert parse_id(small.case_id).groups > 1 and small.verdict == source.verdict
        assert any(g.records[0] is small for g in found)
        assert f"shrunk during the run from {small.shrunk_from}" in stdout
    page = render_report(RunResults.read(out))
    assert page.count('<p class="shrunk">') == len(shrunk)


def test_group_causes_keep_signal_numbers_and_drop_sizes():
    text = "planted-crash worker killed by SIGSEGV (signal 11); output 64 x 32 lost"
    assert M.normalize_message(text) == (
        "planted-crash worker killed by SIGSEGV (signal 11); output N x N lost"
    )
