"""Plugins as a kernel author meets them: the example backend README.md points to runs and
passes, a plugin that breaks a rule is one clear line (CLI and pytest), and replay lines carry
what a rerun needs (the plugin and a non-default tolerance factor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance import diff as D
from conformance.backends import load_plugins, resolve
from conformance.case import OPS, Case
from conformance.diff import Tolerance
from conformance.known_failures import KnownFailures
from conformance.results import RunResults, json_safe, record_from_dict
from conformance.runner import Runner, replay_command
from conformance.stream import read_stream

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples.direct_conv_backend:DirectConv"
PLANTED = "tests.planted:BACKENDS"
#: A small run of the planted unflipped-weight bug (3 conv_transpose1d float32 cases, in process).
PLANTED_RUN = [
    "-m",
    "conformance",
    "run",
    "--plugin",
    PLANTED,
    "--backends",
    "planted-unflipped",
    "--ops",
    "conv_transpose1d",
    "--dtypes",
    "float32",
    "--max-examples",
    "3",
    "--invalid-examples",
    "0",
    "--no-corpus",
    "--no-isolation",
]


def _run(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CONVCHECK_REGRESSIONS_DIR": str(tmp_path / "regressions"),
    }
    env.pop("CONVCHECK_PLUGINS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_proven_bound_only_reaches_records_replay_and_resume(tmp_path):
    stream, out = tmp_path / "s.jsonl", tmp_path / "r.json"
    res = _run(
        [
            *PLANTED_RUN,
            "--proven-bound-only",
            "--stream",
            str(stream),
            "--json",
            str(out),
            "-q",
        ],
        tmp_path,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    results = RunResults.read(out)
    tolerance = {"factor": 1.0, "accumulation": "float32", "statistical": False}
    assert results.settings["tolerance"] == tolerance
    assert results.records and all(r.tolerance_statistical is False for r in results.records)
    replays = [
        line.split("replay: ", 1)[1] for line in res.stdout.splitlines() if "replay: " in line
    ]
    assert replays and all(
        r.endswith(f"--backends planted-unflipped --plugin {PLANTED} --proven-bound-only")
        for r in replays
    ), res.stdout
    again = _run([*replays[0].split()[1:], "--no-isolation"], tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"replay: {replays[0]}" in again.stdout

    # --resume without the option takes it from the stream's header.
    lines = stream.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["settings"]["tolerance"] == tolerance
    records = [line for line in lines if json.loads(line)["kind"] == "record"]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([lines[0], *records[:2]]) + "\n")
    resumed = _run(
        ["-m", "conformance", "run", "--resume", str(cut), "--no-isolation", "-q"], tmp_path
    )
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "2 record(s) already there" in resumed.stderr
    done = read_stream(cut)
    assert done.complete and len(done.records) > 2
    assert all(r.tolerance_statistical is False for r in done.records)
    assert all(r.replay.endswith(" --proven-bound-only") for r in done.records if r.failed)

    # Given on --resume, it must match the header: a stream judged with the statistical tier
    # (said so, or from before the field) is refused; so is a malformed field.
    for statistical, message in [
        (True, "--proven-bound-only: given here, not in the stream"),
        (None, "--proven-bound-only: given here, not in the stream"),
        ("no", "header settings.tolerance.statistical has the wrong type (str)"),
    ]:
        edited = json.loads(lines[0])
        if statistical is None:
            del edited["settings"]["tolerance"]["statistical"]
        else:
            edited["settings"]["tolerance"]["statistical"] = statistical
        other = tmp_path / "other.jsonl"
        other.write_text("\n".join([json.dumps(edited), *records[:2]]) + "\n")
        refused = _run(
            ["-m", "conformance", "run", "--resume", str(other), "--proven-bound-only", "-q"],
            tmp_path,
        )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert message in refused.stderr, refused.stderr
        assert len(read_stream(other).records) == 2  # nothing run


# -- the example backend ---------------------------------------------------------------------


def test_example_backend_passes_generated_and_edge_cases_through_the_cli(tmp_path):
    out = tmp_path / "r.json"
    res = _run(
        [
            "-m",
            "conformance",
            "run",
            "--plugin",
            EXAMPLE,
            "--backends",
            "direct-conv",
            "--max-examples",
            "3",
            "--invalid-examples",
            "2",
            "--corpus",
            "edge_cases",
            "--json",
            str(out),
            "-q",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    records = json.loads(out.read_text())["records"]
    assert {r["backend"] for r in records} == {"direct-conv"}
    assert {r["plugin"] for r in records} == {EXAMPLE}
    verdicts = Counter(r["verdict"] for r in records)
    assert set(verdicts) <= {D.PASS, D.BOTH_REJECTED, D.UNSUPPORTED}, verdicts
    assert verdicts[D.BOTH_REJECTED] >= 6  # it rejects invalid cases, as the reference does
    assert {r["case_id"].split("-")[0] for r in records if r["verdict"] == D.PASS} == set(OPS)


def test_example_backend_passes_under_pytest(tmp_path):
    res = _run(
        [
            "-m",
            "pytest",
            "conformance/test_conformance.py",
            "--conformance-plugin",
            EXAMPLE,
            "--conformance-backends",
            "direct-conv",
            "-k",
            "conv_transpose2d or conv1d",
            "--hypothesis-profile",
            "ci",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (tally,) = [line for line in res.stdout.splitlines() if line.startswith("direct-conv: ")]
    assert "pass" in tally and "mismatch" not in tally and "raised" not in tally, tally


def test_example_backend_names_its_limitation():
    (backend,) = load_plugins([EXAMPLE])
    big = Case("conv2d", 8, 512, 512, (64, 64), (3, 3))
    assert "multiply-adds" in (backend.unsupported_reason(big) or "")
    assert backend.unsupported_reason(Case("conv2d", 1, 2, 2, (5, 5), (3, 3))) is None


# -- load errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch.module:X", "cannot be loaded: ModuleNotFoundError: No module named 'nosuch'"),
        ("tests.bad_plugins:Missing", "module 'tests.bad_plugins' has no attribute 'Missing'"),
        ("tests.bad_plugins", "must be written module:attribute"),
        ("tests.bad_plugins:NOT_A_BACKEND", "gave 42 (int), not a Backend; give a Backend"),
        ("tests.bad_plugins:Abstract", "class Abstract is abstract: it must implement run"),
        ("tests.bad_plugins:Nameless", 'has no name; set the class attribute name = "my-backend"'),
        ("tests.bad_plugins:BadName", "backend name 'my backend,2' is not valid"),
        ("tests.bad_plugins:ShadowsTorch", "backend name 'torch-cpu' is a built-in backend's"),
        ("tests.bad_plugins:TWICE", "backend name 'fine-plugin' is given twice by this plugin"),
        ("tests.bad_plugins:NeedsArguments", "class NeedsArguments() raised TypeError"),
        (
            "tests.bad_plugins:factory_that_raises",
            "factory factory_that_raises() raised RuntimeError: no device found",
        ),
        ("tests.bad_plugins:factory_of_nothing", "returned None (NoneType), not a Backend"),
        ("conformance.backends.numpy_ref:NumpyReference", "'numpy-ref' is a built-in backend's"),
    ],
)
def test_a_bad_plugin_is_one_line_naming_spec_and_rule(spec, message):
    with pytest.raises(ValueError) as err:
        resolve(plugins=[spec])
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"plugin {spec!r}"), text
    assert message in text, text


def test_a_name_two_plugins_share_is_rejected_and_a_spec_given_twice_loads_once(monkeypatch):
    with pytest.raises(ValueError, match="'fine-plugin' is given also by plugin"):
        load_plugins(["tests.bad_plugins:Fine", "tests.bad_plugins:SameNameAgain"])
    monkeypatch.setenv("CONVCHECK_PLUGINS", "tests.bad_plugins:Fine")
    names = [b.name for b in resolve(plugins=["tests.bad_plugins:Fine"])]
    assert names.count("fine-plugin") == 1
    with pytest.raises(ValueError, match="asked for twice"):
        resolve(["fine-plugin", "numpy-ref", "fine-plugin"])


def test_cli_prints_a_bad_plugin_as_one_error_line(tmp_path):
    res = _run(
        ["-m", "conformance", "backends", "--plugin", "tests.bad_plugins:ShadowsTorch"], tmp_path
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: plugin 'tests.bad_plugins:ShadowsTorch': backend name 'torch-cpu' is a built-in "
        "backend's; give the plugin backend another name"
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--conformance-plugin", "nosuch:thing", "plugin 'nosuch:thing' cannot be loaded"),
        ("--conformance-plugin", "tests.bad_plugins:Abstract", "class Abstract is abstract"),
        ("--conformance-backends", "no-such-backend", "unknown backend(s) no-such-backend"),
    ],
)
def test_pytest_reports_a_bad_plugin_as_a_usage_error(tmp_path, option, value, message):
    res = _run(
        [
            "-m",
            "pytest",
            option,
            value,
            "-q",
            "-p",
            "no:cacheprovider",
            "conformance/test_conformance.py",
            "-k",
            "frozen",
        ],
        tmp_path,
        timeout=120,
    )
    out = res.stdout + res.stderr
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], out


# -- known failures of a plugin backend ------------------------------------------------------


def test_a_project_lists_known_failures_of_its_backend(tmp_path, monkeypatch):
    (tmp_path / "cases" / "known_failures").mkdir(parents=True)
    (tmp_path / "cases" / "known_failures" / "planted-unflipped.toml").write_text(
        '[[failure]]\nmatch = "conv_transpose*"\nverdict = "value-mismatch"\n'
        'reason = "forgets to flip the kernel"\n'
    )
    monkeypatch.setenv("CONVCHECK_HOME", str(tmp_path))
    known = KnownFailures.load()
    assert any(e.backend == "mlx-cpu" for e in known.entries)  # the shipped ones stay
    (backend,) = resolve(["planted-unflipped"], plugins=[PLANTED])
    (rec,) = Runner([backend], known=known).run_case(Case("conv_transpose1d", 1, 1, 1, (4,), (3,)))
    assert rec.verdict == D.VALUE_MISMATCH and rec.known_failure == "forgets to flip the kernel"


# -- replay lines ----------------------------------------------------------------------------


def test_replay_command_carries_plugin_and_non_default_tolerance_factor():
    base = "python -m conformance replay conv1d-n1-c1x1-s3-k1-f32 --backends b"
    assert replay_command("conv1d-n1-c1x1-s3-k1-f32", "b") == base
    assert replay_command("conv1d-n1-c1x1-s3-k1-f32", "b", None, 1.0) == base
    assert (
        replay_command("conv1d-n1-c1x1-s3-k1-f32", "b", "m:A", 4.0)
        == base + " --plugin m:A --tolerance-factor 4"
    )
    assert replay_command("x", "b", tolerance_factor=1.0 / 3).endswith(
        f" --tolerance-factor {1.0 / 3!r}"
    )


def test_records_carry_the_tolerance_factor_through_json():
    (backend,) = resolve(["planted-unflipped"], plugins=[PLANTED])
    case = Case("conv_transpose1d", 1, 1, 1, (4,), (3,))
    (rec,) = Runner([backend], tolerance=Tolerance(3.0)).run_case(case)
    assert rec.failed and rec.tolerance_factor == 3.0
    assert rec.replay.endswith(
        f"--backends planted-unflipped --plugin {PLANTED} --tolerance-factor 3"
    )
    assert rec.summary().splitlines()[-1] == f"  replay: {rec.replay}"
    back = record_from_dict(json.loads(json.dumps(json_safe(rec.to_dict()))), "test", "record")
    assert back == rec and back.replay == rec.replay
    old = {k: v for k, v in rec.to_dict().items() if k != "tolerance_factor"}
    assert record_from_dict(old, "test", "record").tolerance_factor == 1.0  # older files


def test_replay_command_carries_proven_bound_only():
    base = "python -m conformance replay x --backends b"
    assert replay_command("x", "b", None, 1.0, True) == base
    assert replay_command("x", "b", None, 1.0, False) == base + " --proven-bound-only"
    assert (
        replay_command("x", "b", "m:A", 4.0, False)
        == base + " --plugin m:A --tolerance-factor 4 --proven-bound-only"
    )


def test_records_carry_proven_bound_only_through_json():
    (backend,) = resolve(["planted-unflipped"], plugins=[PLANTED])
    case = Case("conv_transpose1d", 1, 1, 1, (4,), (3,))
    (default,) = Runner([backend]).run_case(case)
    assert default.tolerance_statistical is True and "--proven-bound-only" not in default.replay
    (rec,) = Runner([backend], tolerance=Tolerance(3.0, statistical=False)).run_case(case)
    assert rec.failed and rec.tolerance_factor == 3.0 and rec.tolerance_statistical is False
    assert rec.replay.endswith(
        f"--backends planted-unflipped --plugin {PLANTED} --tolerance-factor 3 --proven-bound-only"
    )
    assert rec.summary().splitlines()[-1] == f"  replay: {rec.replay}"
    back = record_from_dict(json.loads(json.dumps(json_safe(rec.to_dict()))), "test", "record")
    assert back == rec and back.tolerance_statistical is False and back.replay == rec.replay
    old = {k: v for k, v in rec.to_dict().items() if k != "tolerance_statistical"}
    assert record_from_dict(old, "test", "record").tolerance_statistical is True  # older files
    with pytest.raises(ValueError, match=r"record\.tolerance_statistical has the wrong type"):
        record_from_dict({**rec.to_dict(), "tolerance_statistical": "no"}, "test", "record")
    # A backward case's record carries it too, and replays with it (one replay command).
    grad_case = Case("conv1d", 1, 2, 2, (5,), (3,), direction="bwd_w")
    (ref,) = resolve(["numpy-ref"])
    (grad,) = Runner([ref], tolerance=Tolerance(statistical=False)).run_case(grad_case)
    assert grad.tolerance_statistical is False and grad.verdict == D.PASS
    assert grad.replay == (
        f"python -m conformance replay {grad_case.id} --backends numpy-ref --proven-bound-only"
    )


def test_cli_replay_lines_rerun_the_failure_with_the_same_factor(tmp_path):
    out = tmp_path / "r.json"
    res = _run(
        [
            *PLANTED_RUN,
            "--tolerance-factor",
            "2",
            "--json",
            str(out),
            "-q",
        ],
        tmp_path,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    replays = [line.split("replay: ", 1)[1] for line in lines if "replay: " in line]
    assert replays and all(
        r.endswith(f"--backends planted-unflipped --plugin {PLANTED} --tolerance-factor 2")
        for r in replays
    ), res.stdout
    failed = [r for r in RunResults.read(out).records if r.failed]
    # The summary shows each failure group's smallest case (here, the case shrunk after the run).
    assert set(replays) <= {r.replay for r in failed}
    command = replays[0].split()
    assert command[:3] == ["python", "-m", "conformance"]
    again = _run([*command[1:], "--no-isolation"], tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"replay: {replays[0]}" in again.stdout
