"""Case budgets (conformance/case_budget.py): a slow backend runs a deterministic prefix of the
generated cases, every frozen case, and the run says what it left out."""

from __future__ import annotations

import argparse
import json

import pytest

from conformance import case_budget as B
from conformance.case import DIRECTIONS, parse_id
from conformance.cli import main
from conformance.generate import generated_cases
from conformance.layouts import LAYOUTS

OPS = ("conv1d", "conv_transpose2d")
DTYPES = ("float32", "float16")


@pytest.mark.parametrize(
    "text, message",
    [
        ("jax-cpu", "must be BACKEND=N"),
        ("=4", "must be BACKEND=N"),
        ("jax-cpu=four", "N must be an integer"),
        ("jax-cpu=-1", "N must be >= 0"),
    ],
)
def test_bad_budget_names_the_option_and_the_rule(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        B.parse_backend_examples(text)


def test_defaults_bind_only_below_the_run_and_given_ones_win():
    names = ["numpy-ref", "jax-cpu", "onnxruntime-cpu"]
    assert B.budgets([], names, 400) == {"jax-cpu": 100}
    assert B.budgets([], names, 100) == {}  # not below the run's own count
    assert B.budgets([("jax-cpu", 400)], names, 400) == {}  # lifted
    assert B.budgets([("onnxruntime-cpu", 3)], names, 10) == {"onnxruntime-cpu": 3}
    assert B.budgets([], ["numpy-ref"], 400) == {}  # jax-cpu not in this run


def test_left_out_keeps_the_prefix_a_smaller_run_draws_and_every_frozen_case():
    full = generated_cases(OPS, DTYPES, valid_per_op=12, invalid_per_op=4, seed=7)
    small = generated_cases(OPS, DTYPES, valid_per_op=3, invalid_per_op=1, seed=7)
    frozen = {full[-1].id}  # a generated id that is also frozen stays in
    dropped = B.left_out(
        full, frozen, OPS, DTYPES, budget=3, max_examples=12, invalid_examples=4, seed=7
    )
    assert {c.id for c in full} - dropped == {c.id for c in small} | frozen
    assert len(dropped) == len(full) - len(small) - 1


def test_run_gives_a_budgeted_backend_the_prefix_and_says_so(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["run", "--ops", "conv1d", "--dtypes", "float32", "--max-examples", "6"]
    args += ["--invalid-examples", "2", "--cases", str(tmp_path / "one.toml"), "--no-corpus"]
    args += ["--backends", "numpy-ref,kernels-host", "--backend-examples", "kernels-host=2"]
    args += ["--no-isolation", "-q", "--json", str(out)]
    (tmp_path / "one.toml").write_text(
        'description = "one frozen case"\n\n[[case]]\nid = "conv1d-n1-c2x3-s9-k3-f32"\n'
        'note = "frozen"\n'
    )
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "case budget: kernels-host runs the first 2 of 6 generated cases per op" in err
    results = json.loads(out.read_text())
    assert results["settings"]["backend_examples"] == {"kernels-host": 2}
    ran = {r["case_id"] for r in results["records"] if r["backend"] == "kernels-host"}
    kept = generated_cases(
        ["conv1d"],
        ["float32"],
        valid_per_op=2,
        invalid_per_op=0,
        seed=20261123,
        directions=DIRECTIONS,
        layouts=LAYOUTS,
    )
    assert ran == {c.id for c in kept} | {"conv1d-n1-c2x3-s9-k3-f32"}
    everyone = {r["case_id"] for r in results["records"] if r["backend"] == "numpy-ref"}
    assert len(everyone) == 6 + 2 + 1
    assert all(parse_id(i).op == "conv1d" for i in ran)
