"""The report's pictures (conformance/plots.py): drawn by matplotlib as inline SVG, with every
backend named, the same bytes every time, and a plain reason where matplotlib is missing."""

from __future__ import annotations

import pytest

from conformance import plots
from conformance.backends import resolve
from conformance.case import Case
from conformance.generate import generated_cases
from conformance.report import render_report
from conformance.results import RunResults, backend_entry
from conformance.runner import Runner

pytest.importorskip("matplotlib")

CASES = [
    Case("conv1d", 1, 2, 3, (8,), (3,)),
    Case("conv2d", 1, 3, 2, (6, 7), (3, 2), padding=(1, 0), dtype="float16"),
    Case("conv_transpose1d", 2, 2, 2, (5,), (3,), stride=(2,), dtype="bfloat16"),
]


@pytest.fixture(scope="module")
def run() -> RunResults:
    """Enough compared records for the report to draw pictures (PICTURE_MIN_RECORDS)."""
    backends = resolve(["numpy-ref", "kernels-host"])
    cases = CASES + generated_cases(valid_per_op=10, invalid_per_op=0, seed=5)
    records = [r for c in cases for r in Runner(backends).run_case(c)]
    return RunResults({}, [backend_entry(b) for b in backends], records)


def test_histogram_and_times_are_svg_naming_every_backend_and_dtype(run):
    names = [b["name"] for b in run.backends]
    hist = plots.error_histogram(run.records, names)
    times = plots.time_per_backend(run.records, names)
    for svg in (hist, times):
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert all(name in svg for name in names)  # text stays text (svg.fonttype none)
    assert all(dtype in hist for dtype in ("float32", "float16", "bfloat16"))
    assert plots.error_histogram(run.records, names) == hist  # deterministic bytes


def test_report_embeds_the_pictures_or_says_why_not(run, monkeypatch):
    page = render_report(run)
    assert '<figure id="error-histogram">' in page and '<figure id="time-plot">' in page
    assert "No pictures" not in page
    monkeypatch.setattr(plots, "missing", lambda: "matplotlib is not installed (test)")
    page = render_report(run)
    assert "<figure" not in page
    assert "No pictures: matplotlib is not installed (test)" in page


def test_a_small_run_gets_no_pictures_and_says_why():
    backends = resolve(["numpy-ref"])
    records = [r for c in CASES for r in Runner(backends).run_case(c)]
    page = render_report(RunResults({}, [backend_entry(b) for b in backends], records))
    assert "<figure" not in page
    assert "No pictures: only 3 compared records (pictures from 100 on" in page


def test_no_compared_records_no_histogram():
    rejected = Runner(resolve(["numpy-ref"])).run_case(
        Case("conv1d", 1, 1, 1, (4,), (2,), stride=(0,))
    )
    assert plots.error_histogram(rejected, ["numpy-ref"]) is None
