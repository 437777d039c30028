"""The HTML report in a real browser: headless Chromium driven by Selenium.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and ``selenium`` from PyPI; skipped
(with the reason) when any of them is missing. Set ``CONVCHECK_CHROMIUM`` and
``CONVCHECK_CHROMEDRIVER`` to use binaries elsewhere than ``/usr/bin``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conformance.backends import resolve
from conformance.backends.numpy_ref import NumpyReference
from conformance.case import Case
from conformance.known_failures import KnownFailure, KnownFailures
from conformance.report import write_report
from conformance.results import RunResults, backend_entry, counts
from conformance.runner import Runner

CHROMIUM = os.environ.get("CONVCHECK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CONVCHECK_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
    "--disable-background-networking --disable-component-update --disable-sync --no-first-run "
    "--window-size=1400,1000"
).split()

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
for _binary, _package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not os.access(_binary, os.X_OK):
        pytest.skip(f"{_binary} not found (apt-get install {_package})", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class FlippedWeight(NumpyReference):
    """The reference with the kernel flipped along every spatial axis: wrong unless k == 1."""

    name = "planted-flip"
    description = "reference with a spatially flipped kernel (planted bug)"

    def run(self, case, inputs):
        axes = tuple(range(1, inputs.w.ndim - 1))
        flipped = dataclasses.replace(inputs, w=np.ascontiguousarray(np.flip(inputs.w, axes)))
        return super().run(case, flipped)


CASES = [
    Case("conv1d", 1, 2, 3, (8,), (3,)),
    Case("conv1d", 2, 4, 4, (9,), (3,), stride=(2,), padding=(1,), groups=2, dtype="float16"),
    Case("conv1d", 1, 2, 2, (6,), (1,), seed=4),  # 1-wide kernel: the flip is harmless
    Case("conv2d", 1, 3, 2, (6, 7), (3, 2), padding=(1, 0), seed=7),
    Case("conv2d", 2, 2, 4, (12, 10), (3, 3), dilation=(2, 1), dtype="bfloat16", seed=11),
    Case("conv2d", 1, 1, 1, (4, 4), (1, 1), seed=2),
    Case("conv_transpose2d", 1, 2, 2, (4, 4), (3, 3), stride=(2, 2), seed=5),
    Case("conv1d", 1, 1, 1, (4,), (2,), stride=(0,)),  # invalid: rejected everywhere
]


@pytest.fixture(scope="module")
def results() -> RunResults:
    backends = [*resolve(["numpy-ref", "torch-cpu", "torch-cuda"]), FlippedWeight()]
    known = KnownFailures([KnownFailure("planted-flip", "planted on purpose", case=CASES[3].id)])
    runner = Runner(backends, known=known)
    records = [r for c in CASES for r in runner.run_case(c)]
    return RunResults(
        {"seed": 7, "profile": "browser-test"}, [backend_entry(b) for b in backends], records
    )


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="convcheck-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield drv
    finally:
        drv.quit()
        profile.cleanup()


def _synthetic_results() -> RunResults:
    """The 10,000-record run of test_report.py (loaded by path: works in any import mode)."""
    spec = importlib.util.spec_from_file_location(
        "convcheck_test_report", Path(__file__).with_name("test_report.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_results()


VISIBLE_ROWS = """
return Array.from(document.querySelectorAll('#case-list tr.case-row'))
  .filter(function (tr) { return tr.offsetParent !== null; })
  .map(function (tr) {
    return [tr.dataset.op, tr.dataset.backend, tr.dataset.verdict, tr.dataset.failing || '0'];
  });
"""


def _severe_logs(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def test_report_in_chromium(results: RunResults, driver, tmp_path: Path) -> None:
    path = write_report(results, tmp_path / "report.html")
    driver.get(path.resolve().as_uri())
    assert driver.title.startswith("convcheck conformance report")
    assert _severe_logs(driver) == []  # no script errors, nothing blocked by the CSP

    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    total = len(driver.find_elements(By.CSS_SELECTOR, "#case-list tr.case-row"))
    assert total == len(results.records)  # a small run lists every record
    shown = driver.find_element(By.ID, "shown-count")
    assert shown.text == f"shown {total} of {total}"

    # A matrix cell with new failures: only that op/backend is left in the lists.
    table = counts(results.records)
    cell = driver.find_element(By.CSS_SELECTOR, "#matrix td.cell.t-fail")
    op, backend = cell.get_attribute("data-op"), cell.get_attribute("data-backend")
    # Click the cell's corner, off its verdict badges (a badge narrows to its verdict too).
    size = cell.size
    ActionChains(driver).move_to_element_with_offset(
        cell, -size["width"] // 2 + 3, -size["height"] // 2 + 3
    ).click().perform()
    rows = driver.execute_script(VISIBLE_ROWS)
    assert rows and {(r[0], r[1]) for r in rows} == {(op, backend)}
    assert len(rows) == sum(table[(op, backend)].values())
    assert shown.text == f"shown {len(rows)} of {total}"
    assert "op = " + op in driver.find_element(By.ID, "filter-status").text
    for group in driver.find_elements(By.CSS_SELECTOR, "#failures .failure-group"):
        mine = (group.get_attribute("data-op"), group.get_attribute("data-backend")) == (
            op,
            backend,
        )
        assert group.is_displayed() == mine

    # Its failing verdict: the failure rows are the only rows shown.
    failing = [
        r
        for r in results.records
        if r.failed and r.backend == backend and r.case_id.startswith(op + "-")
    ]
    verdict = failing[0].verdict
    cell.find_element(By.CSS_SELECTOR, f".b[data-verdict='{verdict}']").click()
    rows = driver.execute_script(VISIBLE_ROWS)
    assert len(rows) == table[(op, backend)][verdict] == len(failing)
    assert all(r[2] == verdict and r[3] == "1" for r in rows)
    row = driver.find_element(
        By.CSS_SELECTOR, "#case-list tr.case-row[data-failing]:not(.filtered-out)"
    )
    assert row.is_displayed()
    assert driver.save_screenshot(str(tmp_path / "filtered.png"))

    # Clearing the filter shows everything again.
    driver.find_element(By.ID, "clear-filter").click()
    assert len(driver.execute_script(VISIBLE_ROWS)) == total
    assert shown.text == f"shown {total} of {total}"
    assert driver.find_element(By.ID, "filter-status").text == "no filter"

    # A verdict chip filters by verdict alone.
    driver.find_element(By.CSS_SELECTOR, ".verdict-filter[data-verdict='failing']").click()
    rows = driver.execute_script(VISIBLE_ROWS)
    assert len(rows) == sum(r.failed for r in results.records)
    driver.find_element(By.ID, "clear-filter").click()

    # The copy button answers (the clipboard may be unavailable headless: either outcome).
    button = driver.find_element(By.CSS_SELECTOR, "#failures .case-card button.copy")
    button.click()
    # The clipboard answers asynchronously: wait for the button to say how it went.
    WebDriverWait(driver, 30).until(lambda _: button.text != "copy")
    assert button.text in ("copied", "copy failed")
    assert _severe_logs(driver) == []


def test_large_report_opens_and_filters(driver, tmp_path: Path) -> None:
    """A 10,000-record report loads and filters in the browser. Its load time is printed (run
    with -s), not asserted: timings belong to benchmarks, not to pass/fail."""
    path = write_report(_synthetic_results(), tmp_path / "large.html")
    start = time.perf_counter()
    driver.get(path.resolve().as_uri())
    wall = time.perf_counter() - start
    loaded = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].loadEventEnd"
    )
    assert driver.find_element(By.ID, "shown-count").text.startswith("shown ")
    assert _severe_logs(driver) == []
    print(
        f"10,000-record report: {path.stat().st_size / 1e6:.2f} MB, load {loaded:.0f} ms, "
        f"get() {wall:.2f} s"
    )
    cell = driver.find_element(By.CSS_SELECTOR, "#matrix td.cell.t-fail")
    cell.click()
    assert driver.find_element(By.ID, "filter-status").text.startswith("filter: ")


#: Scrolls through the page once (a content-visibility section takes its real height only once
#: rendered) and returns the document height in px.
PAGE_HEIGHT = """
var last = -1;
while (window.scrollY !== last) { last = window.scrollY; window.scrollBy(0, 800); }
window.scrollTo(0, 0);
return document.documentElement.scrollHeight;
"""

#: The most the 10,000-record report may be tall at 1400 px. Measured: 224,516 px before the
#: lists were collapsed, 8,243 px after (3 failure groups open, 97 as one line each).
LARGE_PAGE_HEIGHT_BOUND = 16_000


def test_verdict_first_and_a_compact_page(driver, tmp_path: Path) -> None:
    """At 1400 px, the verdict banner (decision, backends, rules) is in the first screen, and a
    10,000-record report stays short: known failures, rejections, error paths and the case list
    are collapsed summaries until opened or filtered."""
    path = write_report(_synthetic_results(), tmp_path / "large.html")
    driver.get(path.resolve().as_uri())
    bottom = driver.execute_script(
        "return document.getElementById('verdict').getBoundingClientRect().bottom"
    )
    assert 0 < bottom <= driver.execute_script("return window.innerHeight")
    assert driver.find_element(By.CSS_SELECTOR, "#verdict .decision").text.endswith("do not ship")
    assert driver.save_screenshot(str(tmp_path / "first-screen.png"))
    height = driver.execute_script(PAGE_HEIGHT)
    print(f"10,000-record report: {height} px tall at 1400 px")
    assert height <= LARGE_PAGE_HEIGHT_BOUND
    # A filter opens the collapsed case list: its rows show.
    driver.find_element(By.CSS_SELECTOR, "#matrix td.cell.t-fail").click()
    assert driver.find_element(By.ID, "case-list-details").get_attribute("open") is not None
    rows = driver.execute_script(VISIBLE_ROWS)
    assert rows and all(r[3] == "1" or r[2] for r in rows)
