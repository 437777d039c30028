"""Where convcheck's data lives, from a source checkout and from an installed wheel.

Two kinds of data:

* **Shipped, read-only**: the frozen corpus (``cases/*.toml``) and the known failures
  (``cases/known_failures/*.toml``). Read from the checkout's ``cases/`` when convcheck runs
  from a source checkout (an editable install included), else from the copy the wheel installs
  as package data (``conformance/_data/``, see ``pyproject.toml``).
* **The project's, writable**: saved regressions (``--save-failures``), and known failures a
  project adds for its own backends. They live under the *project directory*:
  ``$CONVCHECK_HOME`` if set, else the source checkout when running from one, else the current
  working directory; regressions in ``PROJECT/cases/regressions/``, extra known failures in
  ``PROJECT/cases/known_failures/``. Never inside site-packages.
  ``$CONVCHECK_REGRESSIONS_DIR`` names the regressions directory itself (tests use it).

Everything is looked up when called (not at import), so an environment variable set before a
run, or the directory a run starts in, decides.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: The directory above the ``conformance`` package: the checkout's root, or site-packages.
_ABOVE_PACKAGE = Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The source checkout convcheck runs from, or None when it runs from an installed wheel."""
    root = _ABOVE_PACKAGE
    if (root / "pyproject.toml").is_file() and (root / "cases").is_dir():
        return root
    return None


def shipped_dir() -> Path:
    """The frozen corpus: the checkout's ``cases/``, else the installed package data."""
    root = checkout_root()
    if root is not None:
        return root / "cases"
    return Path(str(resources.files("conformance").joinpath("_data")))


def known_failures_dir() -> Path:
    """The known failures that ship with convcheck (``cases/known_failures``)."""
    return shipped_dir() / "known_failures"


def project_dir() -> Path:
    """Where a run keeps its project's data: ``$CONVCHECK_HOME``, else the checkout, else the
    current working directory."""
    home = os.environ.get("CONVCHECK_HOME")
    if home:
        return Path(home).expanduser().resolve()
    root = checkout_root()
    return root if root is not None else Path.cwd()


def regressions_dir() -> Path:
    """The regression corpus: ``$CONVCHECK_REGRESSIONS_DIR``, else
    ``PROJECT/cases/regressions`` (see :func:`project_dir`)."""
    explicit = os.environ.get("CONVCHECK_REGRESSIONS_DIR")
    if explicit:
        return Path(explicit)
    return project_dir() / "cases" / "regressions"


def known_failures_dirs() -> list[Path]:
    """The shipped known failures, then the project's own ``cases/known_failures`` (when it is
    another directory): a kernel author lists their backend's failures there."""
    dirs = [known_failures_dir()]
    extra = project_dir() / "cases" / "known_failures"
    if extra.is_dir() and extra.resolve() != dirs[0].resolve():
        dirs.append(extra)
    return dirs
