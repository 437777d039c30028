"""Conformance tests: every op on every backend, on Hypothesis cases and on the frozen corpus.

Test names carry the op and the direction (``test_conv_transpose3d``, its gradients
``test_conv_transpose3d_bwd_d`` and ``test_conv_transpose3d_bwd_w``,
``test_conv_transpose3d_invalid``) and frozen cases carry their id, so
``pytest -k conv_transpose3d`` selects one op and ``pytest -k "conv_transpose2d and bwd_d"`` one
op's input gradients. Valid cases draw every input layout (a failure's case id names it).
Backends come from
``--conformance-backends`` (default: all known; unavailable ones are skipped with the reason).
A failure prints the diff summary and a one-line replay command.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from conformance import diff as D
from conformance.case import ALL_OPS, DIRECTIONS, GENERAL_OPS
from conformance.layouts import LAYOUTS
from conformance.pytest_plugin import session
from conformance.strategies import invalid_cases, valid_cases

_DTYPES = session().dtypes


def test_regression(regression, conformance):
    """Saved failures (cases/regressions/, parametrized by the plugin), replayed first on the
    backend they failed on: still failing fails (or xfails when a known-failures entry covers
    it); passing means fixed, and is reported so."""
    rec = conformance.run(regression.case, regression.backend)
    if rec.known_failure:
        pytest.xfail(f"known failure ({rec.verdict}): {rec.known_failure}")
    assert not rec.failed, (
        "\n" + rec.summary() + f"\n  (saved {regression.date} with {regression.versions})"
    )


def _valid_test(op: str, direction: str):
    @given(case=valid_cases(op, _DTYPES, directions=(direction,), layouts=LAYOUTS))
    def test(backend_name, case, conformance):
        conformance.check(case, backend_name)

    what = {"fwd": "outputs", "bwd_d": "input gradients", "bwd_w": "weight and bias gradients"}
    name = f"test_{op}" if direction == "fwd" else f"test_{op}_{direction}"
    test.__name__ = test.__qualname__ = name
    test.__doc__ = f"Valid {op} cases: {what[direction]} agree with the reference within the bound."
    return test


def _invalid_test(op: str):
    @given(case=invalid_cases(op, _DTYPES))
    def test(backend_name, case, conformance):
        rec = conformance.check(case, backend_name)
        assert rec.verdict in (D.BOTH_REJECTED, D.UNSUPPORTED) or rec.known_failure, rec.summary()

    test.__name__ = test.__qualname__ = f"test_{op}_invalid"
    test.__doc__ = f"Invalid {op} cases are rejected, as the reference rejects them."
    return test


for _op in ALL_OPS:
    # The general convolutions are checked forward (Case: the reference's VJPs are the six ops').
    for _direction in ("fwd",) if _op in GENERAL_OPS else DIRECTIONS:
        _test = _valid_test(_op, _direction)
        globals()[_test.__name__] = _test
    globals()[f"test_{_op}_invalid"] = _invalid_test(_op)


def test_frozen(frozen, backend_name, conformance):
    """Frozen cases from cases/*.toml (parametrized by the plugin): known failures xfail; a
    fixed one fails until its known-failures entry is removed."""
    rec = conformance.run(frozen.case, backend_name)
    if rec.verdict in (D.UNSUPPORTED, D.TOO_LARGE):
        pytest.skip(f"{rec.verdict} on {backend_name}: {rec.detail}")
    if rec.known_failure:
        pytest.xfail(f"known failure ({rec.verdict}): {rec.known_failure}")
    if rec.fixed:
        pytest.fail(f"{rec.case_id} passes on {backend_name} now: remove its known-failures entry")
    assert not rec.failed, "\n" + rec.summary() + f"\n  ({frozen.note})"
