"""nox sessions: conformance (the release run), tests, lint, bench.

nox -s conformance                 # all ops, every available backend, JSON + HTML report
nox -s conformance -- -n auto      # the same in one worker process per CPU
nox -s conformance -- --max-examples 1000 --ops conv_transpose3d
nox -s tests                       # the harness's own tests and the conformance tests (ci profile)
nox -s lint
"""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Backends installed by default: PyTorch (pinned CPU build on Linux x86_64) and MLX.
BACKEND_EXTRAS = "torch,mlx"


def install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Release run: generated + frozen cases on every available backend; writes reports/."""
    install(session, BACKEND_EXTRAS)
    # Defaults first: options given after `--` add to them or, given twice, win (e.g.
    # `-- -n auto` keeps 400 examples; `-- --max-examples 50` replaces them).
    args = ["--max-examples", "400", *session.posargs]
    session.run(
        "python",
        "-m",
        "conformance",
        "run",
        "--json",
        "reports/results.json",
        "--report",
        "reports/report.html",
        *args,
        success_codes=[0, 1],
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/) and the conformance tests (conformance/), ci profile."""
    install(session, f"{BACKEND_EXTRAS},test,report-browser")
    session.run("pytest", "--hypothesis-profile", "ci", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Layer timings (pytest-benchmark): kernels vs MLX vs PyTorch, and the oracle vs torch f64."""
    install(session, f"{BACKEND_EXTRAS},test")
    session.run(
        "pytest",
        "benchmarks",
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        "--benchmark-columns=median,iqr,rounds",
        "--benchmark-sort=name",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
