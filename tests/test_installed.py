"""Installed use: a wheel of convcheck, installed (not editable) in a fresh venv, run from a
directory that is not the checkout, finds the frozen corpus and the known failures it ships and
writes saved regressions under that directory, never into site-packages.

One wheel and one venv for the module (built from a copy of the checkout's package sources, so
the build writes nothing into the checkout). Building needs setuptools and installing needs
numpy, hypothesis and jinja2 from the package index (or pip's cache); without them the tests
skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conformance import paths
from conformance.corpus import parse_corpus

ROOT = Path(__file__).resolve().parent.parent

#: What pip prints when it cannot reach or find a package (no network, no cache).
_OFFLINE = re.compile(
    r"No matching distribution|Could not find a version|NewConnectionError|"
    r"Failed to establish a new connection|Temporary failure in name resolution|"
    r"Network is unreachable|ConnectionError|ReadTimeoutError",
)

ZEROS_PLUGIN = '''
import numpy as np

from conformance.backends import Availability, Backend


class Zeros(Backend):
    """A planted failure: every output is one zero (verdict shape-mismatch)."""

    name = "zeros"
    padding_modes = ("explicit", "same", "valid")

    def probe(self):
        return Availability(True, "test only")

    def run(self, case, inputs):
        return np.zeros((1,), np.float32)
'''


def _pip(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout
    )


def _need(res: subprocess.CompletedProcess, what: str) -> None:
    if res.returncode == 0:
        return
    out = res.stdout + res.stderr
    if _OFFLINE.search(out):
        pytest.skip(f"{what} needs the package index, which cannot be reached: {out[-400:]}")
    pytest.fail(f"{what} failed:\n{out[-3000:]}")


class Installed:
    def __init__(self, src: Path, venv: Path, wheel: Path) -> None:
        self.src, self.venv, self.wheel = src, venv, wheel
        self.bin = venv / "bin"
        self.python = self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
            and not k.startswith("CONVCHECK_")
        }
        env.update(PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1")
        env.update(extra)
        return env

    def run(self, args: list[str], cwd: Path, timeout: int = 120, **env: str):
        return subprocess.run(
            args, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def conformance(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return self.run([str(self.python), "-m", "conformance", *args], cwd, **env)

    def site_packages(self) -> Path:
        (site,) = self.venv.glob("lib/python*/site-packages")
        return site


def _package_roots() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    return sorted({p.split(".")[0] for p in packages})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    src = base / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "regressions")
    for name in [*_package_roots(), "cases"]:
        shutil.copytree(ROOT / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    built = _pip("wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(src))
    _need(built, "building the wheel")
    (wheel,) = (base / "dist").glob("convcheck-*.whl")
    venv = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    # The outer pip installs into the new venv: no ensurepip, pip's cache shared.
    done = _pip("--python", str(venv / "bin" / "python"), "install", "-q", str(wheel))
    _need(done, "installing the wheel and its dependencies")
    return Installed(src, venv, wheel)


def test_wheel_ships_every_module_the_corpus_and_the_known_failures(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    src = installed.src  # the copy of the checkout the wheel was built from
    for root in _package_roots():
        for path in (src / root).rglob("*.py"):
            assert path.relative_to(src).as_posix() in names, f"{path} is not in the wheel"
    for path in (src / "cases").glob("*.toml"):
        assert f"conformance/_data/{path.name}" in names
    shipped = [n for n in names if n.startswith("conformance/_data/known_failures/")]
    assert len(shipped) == len(list((src / "cases" / "known_failures").glob("*.toml"))) > 0
    assert not any(n.startswith("conformance/_data/regressions") for n in names)
    assert "conformance/templates/report.html.j2" in names and "kernels/src/conv.body" in names


def test_installed_run_finds_the_frozen_corpus_from_any_directory(installed, tmp_path):
    res = installed.conformance(
        "run",
        "--backends",
        "numpy-ref",
        "--max-examples",
        "2",
        "--corpus",
        "unet3d",
        "--json",
        "out.json",
        "-q",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ids = {r["case_id"] for r in json.loads((tmp_path / "out.json").read_text())["records"]}
    corpus = {f.case.id for f in parse_corpus(ROOT / "cases" / "unet3d.toml")}
    assert corpus and corpus <= ids
    assert not (tmp_path / "cases").exists()  # nothing saved, nothing created


def test_installed_package_is_not_the_checkout_and_loads_the_known_failures(installed, tmp_path):
    code = (
        "import conformance, json\n"
        "from conformance import paths\n"
        "from conformance.known_failures import KnownFailures\n"
        "print(json.dumps({'file': conformance.__file__, 'checkout': str(paths.checkout_root()),"
        " 'shipped': str(paths.shipped_dir()), 'regressions': str(paths.regressions_dir()),"
        " 'known': len(KnownFailures.load().entries)}))\n"
    )
    res = installed.run([str(installed.python), "-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    site = installed.site_packages().resolve()
    assert Path(info["file"]).resolve().is_relative_to(site)
    assert info["checkout"] == "None"
    assert Path(info["shipped"]).resolve() == site / "conformance" / "_data"
    assert Path(info["regressions"]) == tmp_path.resolve() / "cases" / "regressions"
    assert info["known"] > 0
    backends = installed.run([str(installed.bin / "convcheck"), "backends"], tmp_path)
    assert backends.returncode == 0, backends.stderr
    assert re.search(r"^numpy-ref\s+available", backends.stdout, re.M), backends.stdout


def test_installed_save_failures_writes_under_the_working_directory(installed, tmp_path):
    (tmp_path / "zeros_plugin.py").write_text(ZEROS_PLUGIN)
    common = ["--plugin", "zeros_plugin:Zeros", "--backends", "zeros", "--ops", "conv1d"]
    common += ["--dtypes", "float32", "--invalid-examples", "0", "-q"]
    first = installed.conformance(
        "run", *common, "--max-examples", "1", "--no-corpus", "--save-failures", cwd=tmp_path
    )
    assert first.returncode == 1, first.stdout + first.stderr
    saved = tmp_path / "cases" / "regressions" / "zeros.toml"
    assert saved.is_file(), first.stdout + first.stderr
    assert "saved regression: " in first.stdout
    site = installed.site_packages()
    assert not (site / "cases").exists(), "wrote into site-packages"
    assert not list((site / "conformance").rglob("regressions")), "wrote into the package"
    (saved_id,) = re.findall(r'^id = "(.+)"$', saved.read_text(), re.M)
    # A later run from the same directory replays it first.
    again = installed.conformance(
        "run",
        *common,
        "--max-examples",
        "0",
        "--corpus",
        "unet3d",
        "--json",
        "again.json",
        cwd=tmp_path,
    )
    assert again.returncode == 1, again.stdout + again.stderr
    records = json.loads((tmp_path / "again.json").read_text())["records"]
    assert records[0]["case_id"] == saved_id and records[0]["backend"] == "zeros"


# -- conformance.paths from the checkout (in this process) -----------------------------------


def test_paths_from_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("CONVCHECK_HOME", raising=False)
    monkeypatch.delenv("CONVCHECK_REGRESSIONS_DIR", raising=False)
    assert paths.checkout_root() == ROOT
    assert paths.shipped_dir() == ROOT / "cases"
    assert paths.known_failures_dirs() == [ROOT / "cases" / "known_failures"]
    assert paths.regressions_dir() == ROOT / "cases" / "regressions"
    monkeypatch.setenv("CONVCHECK_HOME", str(tmp_path))
    assert paths.regressions_dir() == tmp_path.resolve() / "cases" / "regressions"
    assert paths.shipped_dir() == ROOT / "cases"  # the shipped data does not move
    monkeypatch.setenv("CONVCHECK_REGRESSIONS_DIR", str(tmp_path / "regs"))
    assert paths.regressions_dir() == tmp_path / "regs"
