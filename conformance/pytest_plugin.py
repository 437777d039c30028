"""pytest integration: options, backend parametrization, the per-case check, a run summary.

Loaded by the repository's ``conftest.py``. Options:

* ``--conformance-backends=a,b``: backends to test (default: every known one; unavailable ones
  are skipped with the reason);
* ``--conformance-dtypes=float32,...``: dtypes the strategies draw from (default float32,
  float16, bfloat16) and the frozen cases run (default every dtype: the float64 corpus too);
* ``--isolate``: run backends in worker processes (a crash becomes a failure, not the end);
  backends marked ``crash_prone`` (channels-last PyTorch, JAX) always run in one;
* ``--conformance-timeout=[BACKEND=]SECONDS``: an isolated backend's time budget per case
  (repeatable; over it: verdict ``timeout``);
* ``--conformance-plugin=MODULE:ATTR``: extra backends (repeatable);
* ``--conformance-worker-memory-mb=MB``: an isolated backend's worker memory limit (default
  16384, 0: none); a limit too small to start the worker ends the session (usage error);
* ``--conformance-max-case-memory-mb=MB``: the per-case memory cap (verdict ``too-large``
  over it; default a quarter of the machine's memory, 0: none);
* ``--conformance-json=PATH``: write every record seen as a results JSON;
* ``--conformance-report=FILE.html``: write the HTML report;
* ``--save-failures``: save each failing test's last (Hypothesis-shrunk) failing case to
  ``cases/regressions/<backend>.toml``, which ``test_regression`` replays first in later runs.

Tests take the ``backend_name`` argument (parametrized here) and the session fixture
``conformance``, whose :meth:`ConformanceSession.check` runs one case and fails with the diff
summary and a replay command.

With pytest-xdist (``pytest -n auto``, ``-n 2``) every worker runs its share of the tests and
hands its records (and, with ``--save-failures``, its failing cases) to the controller at the
end of its session (``config.workeroutput``); the controller merges them, saves the regressions
(one writer, so ``cases/regressions/*.toml`` never sees concurrent appends) and writes the one
results JSON, the one report and the "convcheck conformance" summary. Records are written
sorted by (case id, backend, verdict, ...), with or without ``-n``, so a serial and a parallel
run of the same derandomized tests (the ``ci`` profile) give the same records in the same order.
The records of a worker that crashed are lost; the summary names such workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import event

from conformance import diff as D
from conformance.backends import Backend, resolve
from conformance.case import Case
from conformance.corpus import load_corpus
from conformance.dtypes import ALL_DTYPES, DTYPES
from conformance.isolation import (
    DEFAULT_MEMORY_MB,
    IsolatedBackend,
    RemoteError,
    TimeBudget,
    WorkerCrashed,
    WorkerStartError,
    WorkerTimeout,
)
from conformance.known_failures import KnownFailures, usage_lines
from conformance.profiles import load_default
from conformance.regressions import load_regressions, save_regression
from conformance.results import RunResults, backend_entry, json_safe, record_from_dict
from conformance.runner import Record, Runner
from conformance.sizing import parse_mb

#: The key of this plugin's data in an xdist worker's ``workeroutput``.
WORKER_OUTPUT_KEY = "convcheck"


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def record_order(rec: Record) -> tuple[str, str, str, str, str]:
    """The order records are written and summarized in: independent of which process ran them."""
    return (rec.case_id, rec.backend, rec.verdict, rec.known_failure or "", rec.detail)


class ConformanceSession:
    def __init__(self, config: pytest.Config) -> None:
        names = config.getoption("conformance_backends")
        plugins = config.getoption("conformance_plugin") or []
        self.isolate = bool(config.getoption("isolate"))
        try:
            self.budget = TimeBudget.parse(
                config.getoption("conformance_timeout") or [], "--conformance-timeout"
            )
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            memory = config.getoption("conformance_worker_memory_mb")
            self.memory_mb = (
                DEFAULT_MEMORY_MB
                if memory is None
                else parse_mb(memory, "--conformance-worker-memory-mb")
            )
            cap = config.getoption("conformance_max_case_memory_mb")
            self.max_case_memory_mb = (
                None if cap is None else parse_mb(cap, "--conformance-max-case-memory-mb")
            )
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            self.backends: list[Backend] = resolve(
                [n.strip() for n in names.split(",") if n.strip()] if names else None,
                plugins=plugins,
            )
        except ValueError as exc:  # a bad plugin or backend name: one usage line, no traceback
            raise pytest.UsageError(f"convcheck: {exc}") from None
        dtypes = config.getoption("conformance_dtypes")
        self.dtypes = tuple(d.strip() for d in dtypes.split(",")) if dtypes else DTYPES
        #: The frozen cases' dtypes: the ones asked for, else every one (cases/float64.toml).
        self.frozen_dtypes = self.dtypes if dtypes else ALL_DTYPES
        bad = [d for d in self.dtypes if d not in ALL_DTYPES]
        if bad:
            raise pytest.UsageError(f"--conformance-dtypes: unknown {', '.join(bad)}")
        self.plugins = tuple(plugins)
        try:
            self.known = KnownFailures.load()
        except ValueError as exc:  # a malformed cases/known_failures file
            raise pytest.UsageError(f"convcheck: known failures: {exc}") from None
        self.records: list[Record] = []
        #: The latest failing record of the running test: after Hypothesis shrinks, its final
        #: replay of the minimal example is the last failure seen.
        self.last_failure: Record | None = None
        self.saved: list[Record] = []
        #: In an xdist worker: failing records for the controller to save (--save-failures).
        self.unsaved: list[Record] = []
        #: In the xdist controller: the workers that went down without handing in their records.
        self.lost_workers: list[str] = []
        self._runners: dict[str, Runner] = {}

    @property
    def backend_names(self) -> list[str]:
        return [b.name for b in self.backends]

    def runner(self, name: str) -> Runner:
        if name not in self._runners:
            (backend,) = [b for b in self.backends if b.name == name]
            if not backend.availability.available:
                pytest.skip(f"{name} not available: {backend.availability.detail}")
            if self.isolate or backend.crash_prone:
                backend = IsolatedBackend(
                    backend,
                    plugins=self.plugins,
                    timeout=self.budget.for_backend(name),
                    memory_mb=self.memory_mb,
                    memory_option="--conformance-worker-memory-mb",
                )
                try:  # a worker that cannot even load its backend is a usage error
                    backend.check_start()
                except WorkerStartError as exc:
                    backend.close()
                    pytest.exit(f"convcheck: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
                except (WorkerTimeout, WorkerCrashed, RemoteError):
                    pass  # the first case starts a new worker and reports what happens
            self._runners[name] = Runner(
                [backend], known=self.known, max_case_memory_mb=self.max_case_memory_mb
            )
        return self._runners[name]

    def run(self, case: Case, backend_name: str) -> Record:
        (rec,) = self.runner(backend_name).run_case(case)
        self.records.append(rec)
        return rec

    def check(self, case: Case, backend_name: str) -> Record:
        """Run ``case``; unsupported and known failures pass (and are counted as Hypothesis
        events); any other failure raises AssertionError with the summary and replay line."""
        rec = self.run(case, backend_name)
        if rec.verdict == D.UNSUPPORTED:
            event(f"unsupported on {backend_name}: {rec.detail}")
        elif rec.verdict == D.TOO_LARGE:
            event(f"too large to run on {backend_name}")
        elif rec.known_failure:
            event(f"known failure on {backend_name}: {rec.verdict}")
        elif rec.failed:
            self.last_failure = rec
            raise AssertionError("\n" + rec.summary())
        return rec

    def versions(self, backend_name: str) -> str:
        (backend,) = [b for b in self.backends if b.name == backend_name]
        return ", ".join(f"{k} {v}" for k, v in backend.availability.versions.items())

    def save(self, rec: Record) -> None:
        """Save ``rec`` as a regression (unless its case is already saved for its backend)."""
        if save_regression(rec, self.versions(rec.backend)):
            self.saved.append(rec)

    def worker_output(self) -> dict[str, object]:
        """What an xdist worker hands to the controller: its records and unsaved failures, as
        results-JSON dicts (plain data that execnet can send)."""
        return {
            "records": [json_safe(r.to_dict()) for r in self.records],
            "unsaved": [json_safe(r.to_dict()) for r in self.unsaved],
        }

    def merge(self, output: dict[str, object], source: str) -> None:
        """Add a worker's :meth:`worker_output` (rebuilt as the results-JSON reader does)."""
        for key, into in (("records", self.records), ("unsaved", self.unsaved)):
            items = output.get(key) or []
            assert isinstance(items, list), f"{source}: {key} is not a list"
            into.extend(record_from_dict(r, source, f"{key}[{i}]") for i, r in enumerate(items))

    def close(self) -> None:
        for runner in self._runners.values():
            for b in runner.backends:
                if isinstance(b, IsolatedBackend):
                    b.close()


_SESSION: ConformanceSession | None = None


def session() -> ConformanceSession:
    assert _SESSION is not None, "the convcheck pytest plugin is not configured"
    return _SESSION


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convcheck", "convcheck conformance")
    group.addoption("--conformance-backends", default=None, help="comma-separated backend names")
    group.addoption("--conformance-dtypes", default=None, help="comma-separated case dtypes")
    group.addoption(
        "--conformance-plugin",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="extra backends to load (repeatable)",
    )
    group.addoption("--isolate", action="store_true", help="run backends in worker processes")
    group.addoption(
        "--conformance-timeout",
        action="append",
        default=[],
        metavar="[BACKEND=]SECONDS",
        help="time budget of one case on an isolated backend (SECONDS for all, BACKEND=SECONDS "
        "for one; repeatable); over it the case fails with verdict timeout",
    )
    group.addoption(
        "--conformance-worker-memory-mb",
        default=None,
        metavar="MB",
        help="with --isolate: memory limit of each backend's worker process in MiB (default "
        f"{DEFAULT_MEMORY_MB}; 0: no limit); allocating past it fails the case as crashed, a "
        "limit too small to start a worker ends the session",
    )
    group.addoption(
        "--conformance-max-case-memory-mb",
        default=None,
        metavar="MB",
        help="a case estimated to need more memory than this is not run: verdict too-large "
        "(default: a quarter of this machine's memory; 0: no cap)",
    )
    group.addoption(
        "--conformance-json",
        default=None,
        metavar="PATH",
        help="write the records seen as a results JSON",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="FILE.html",
        help="write an HTML report of the records seen",
    )
    group.addoption(
        "--save-failures",
        action="store_true",
        help="save shrunk failing cases to cases/regressions/<backend>.toml",
    )


class XdistController:
    """The controller's side of a pytest-xdist run: collects each worker's records as the
    worker goes down. Registered only where the xdist plugin (and so its hook) exists."""

    def __init__(self) -> None:
        self.merged: set[str] = set()

    def pytest_testnodedown(self, node, error) -> None:
        s = _SESSION
        name = str(node.gateway.id)
        if s is None or name in self.merged:  # xdist may report a node down twice
            return
        output = getattr(node, "workeroutput", None) or {}
        data = output.get(WORKER_OUTPUT_KEY)
        if data is None:
            if error is not None:
                s.lost_workers.append(f"{name} ({error})")
            return
        self.merged.add(name)
        s.merge(data, f"xdist worker {name}")


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION
    if not config.getoption("hypothesis_profile", default=None):
        load_default()
    _SESSION = ConformanceSession(config)
    if config.pluginmanager.hasplugin("xdist") and not is_xdist_worker(config):
        config.pluginmanager.register(XdistController(), "convcheck-xdist-controller")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "regression" in metafunc.fixturenames:
        regs = [r for r in load_regressions() if r.backend in session().backend_names]
        metafunc.parametrize("regression", regs, ids=[f"{r.case.id}-{r.backend}" for r in regs])
    # Frozen cases first, so ids read CASE_ID-BACKEND.
    if "frozen" in metafunc.fixturenames:
        frozen = [f for f in load_corpus() if f.case.dtype in session().frozen_dtypes]
        metafunc.parametrize("frozen", frozen, ids=[f.case.id for f in frozen])
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", session().backend_names)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Probe every backend before the first test runs (an xdist controller collects nothing and
    skips this). Probes import modules (``kernels.host``, ``kernels.mlx_launch``), and Hypothesis
    mixes constants from the local modules imported so far into its draws: probed lazily, by
    the first test of each backend, they would change the examples drawn by the tests that run
    after it, so an xdist worker, which runs the tests in another order, would draw other
    examples than a serial run even under the derandomized ``ci`` profile. Only done when a
    collected test uses the ``conformance`` fixture."""
    uses = any("conformance" in getattr(item, "fixturenames", ()) for item in session.items)
    if _SESSION is not None and uses:
        for backend in _SESSION.backends:
            backend.availability  # noqa: B018 (cached; computed here for its imports)


@pytest.fixture(scope="session")
def conformance() -> ConformanceSession:
    return session()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _SESSION is not None:
        _SESSION.last_failure = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    s = _SESSION
    if (
        s is not None
        and report.when == "call"
        and report.failed
        and s.last_failure is not None
        and item.config.getoption("save_failures")
    ):
        if is_xdist_worker(item.config):
            s.unsaved.append(s.last_failure)  # the controller saves: one writer per file
        else:
            s.save(s.last_failure)
        s.last_failure = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    s = _SESSION
    if s is None:
        return
    config = session.config
    if is_xdist_worker(config):
        config.workeroutput[WORKER_OUTPUT_KEY] = s.worker_output()  # type: ignore[attr-defined]
        return
    # The xdist controller, after every worker is down: save what the workers found.
    for rec in sorted(s.unsaved, key=record_order):
        s.save(rec)
    s.unsaved.clear()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    s = _SESSION
    if s is None or is_xdist_worker(config):
        return
    if not s.records and not s.lost_workers:
        return
    records = sorted(s.records, key=record_order)
    tally: dict[tuple[str, str], int] = {}
    for r in records:
        key = (r.backend, "known-failure" if r.known_failure else r.verdict)
        tally[key] = tally.get(key, 0) + 1
    tr = terminalreporter
    tr.section("convcheck conformance")
    for lost in s.lost_workers:
        tr.write_line(f"xdist worker {lost} went down: its records are missing")
    for backend in s.backend_names:
        parts = [f"{v} {n}" for (b, v), n in sorted(tally.items()) if b == backend]
        if parts:
            tr.write_line(f"{backend}: " + ", ".join(parts))
    unavailable = [b for b in s.backends if not b.availability.available]
    for b in unavailable:
        tr.write_line(f"{b.name}: not available ({b.availability.detail})")
    for r in records:
        if r.fixed:
            tr.write_line(f"FIXED: {r.case_id} on {r.backend} passes; remove its known failure")
    for r in s.saved:
        tr.write_line(f"saved regression: {r.case_id} on {r.backend} ({r.verdict})")
    usage = s.known.usage(records)
    for line in usage_lines(usage):
        tr.write_line(line)
    results = RunResults(
        settings={"profile": "pytest", "dtypes": list(s.dtypes), "isolated": s.isolate},
        backends=[backend_entry(b) for b in s.backends],
        records=records,
        known_failure_usage=[u.to_dict() for u in usage],
    )
    json_path = config.getoption("conformance_json")
    if json_path:
        results.write(Path(json_path))
        tr.write_line(f"results: {json_path}")
    report_path = config.getoption("conformance_report")
    if report_path:
        from conformance.report import write_report

        write_report(results, Path(report_path))
        tr.write_line(f"report: {report_path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.close()
        _SESSION = None
