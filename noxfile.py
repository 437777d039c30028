"""nox sessions: conformance (the release run), tests, lint, bench, calibrate.

nox -s conformance                 # all ops, every available backend, JSON + HTML report
nox -s conformance -- -n auto      # the same in one worker process per CPU
nox -s conformance -- --max-examples 1000 --ops conv_transpose3d
nox -s tests                       # the harness's own tests and the conformance tests (ci profile)
nox -s lint
nox -s dev                         # .venv with everything, for `pytest -k ...` while you work
nox -s lock                        # refresh constraints.txt (the pinned environment)
nox -s calibrate                   # the statistical precision tier's margins (about 10,000 cases)

Every session installs from ``constraints.txt``: the exact versions CI tested, so a release of
NumPy, Hypothesis or MLX changes nothing until someone refreshes the file with ``nox -s lock``
and commits it. ``nox -s conformance`` fails (exit 1) when a backend fails a case outside the
known failures, after writing the results JSON and the report.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Backends installed by default: PyTorch (pinned CPU build on Linux x86_64), MLX, JAX and ONNX
# Runtime (their CPU builds).
BACKEND_EXTRAS = "torch,mlx,jax,onnxruntime"
#: Everything a session may install: the lock resolves these together.
ALL_EXTRAS = f"{BACKEND_EXTRAS},plots,test,report-browser,lint"
CONSTRAINTS = Path(__file__).parent / "constraints.txt"


def install(session: nox.Session, extras: str) -> None:
    session.install("-c", str(CONSTRAINTS), "-e", f".[{extras}]")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Release run: generated + frozen cases on every available backend; writes reports/."""
    install(session, f"{BACKEND_EXTRAS},plots")
    # Defaults first: options given after `--` add to them or, given twice, win (e.g.
    # `-- -n auto` keeps 400 examples; `-- --max-examples 50` replaces them). The release run
    # draws float64 cases too (checked where a backend computes them) and runs the float64
    # corpus.
    args = [
        "--max-examples",
        "400",
        "--dtypes",
        "float32,float16,bfloat16,float64",
        *session.posargs,
    ]
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
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/) and the conformance tests (conformance/), ci profile."""
    install(session, f"{BACKEND_EXTRAS},plots,test,report-browser")
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
def calibrate(session: nox.Session) -> None:
    """The statistical precision tier against correct implementations in other summation orders
    and planted precision bugs: one run over the corpus and 1700 generated cases per op, then
    the largest ratio each test reached and what each tier caught (benchmarks/calibration.py)."""
    install(session, f"{BACKEND_EXTRAS},test")
    session.run("python", "-m", "benchmarks.calibration", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("-c", str(CONSTRAINTS), "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=False)
def dev(session: nox.Session) -> None:
    """A virtual environment in .venv with convcheck (editable), the backends and the test
    tools, pinned like CI: `source .venv/bin/activate`, then `pytest -k conv_transpose3d`."""
    session.run(sys.executable, "-m", "venv", ".venv")
    pip = [".venv/bin/python", "-m", "pip", "install", "-q"]
    session.run(*pip, "--upgrade", "pip")
    session.run(*pip, "-c", str(CONSTRAINTS), "-e", f".[{ALL_EXTRAS}]")
    session.log("ready: source .venv/bin/activate")


@nox.session(python=PYTHON, reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Refresh constraints.txt: resolve every extra afresh, without the old pins, and freeze.

    Review the diff (a new NumPy, Hypothesis or MLX changes what the tests and the release run
    see), run `nox -s tests`, and commit the file with what changed and why.
    """
    session.install(f".[{ALL_EXTRAS}]", "nox")
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    lines = []
    for line in str(frozen).splitlines():
        name = line.split("==")[0].strip().lower()
        if "==" not in line or name == "convcheck":
            continue
        # A local version label (torch 2.13.0+cpu on Linux) pins one index's build; the pin
        # itself is the version, which every platform's build satisfies.
        lines.append(re.sub(r"\+[A-Za-z0-9.]+$", "", line.strip()))
    header = [
        "# Pinned environment of every nox session and of CI; refresh with `nox -s lock`.",
        f"# Resolved on {sys.platform} / Python {PYTHON} for the extras {ALL_EXTRAS}, and nox.",
    ]
    CONSTRAINTS.write_text("\n".join(header + sorted(lines, key=str.lower)) + "\n")
    session.log(f"wrote {CONSTRAINTS} ({len(lines)} pins)")
