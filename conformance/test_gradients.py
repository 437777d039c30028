"""Gradient conformance tests: the backward pass of every op on every backend with gradients.

``test_<op>_grad`` (e.g. ``test_conv_transpose2d_grad``) draws valid Hypothesis cases and checks
``grad_input``, ``grad_weight`` and (with a bias) ``grad_bias`` against the reference VJPs
(:mod:`conformance.gradients`), so ``pytest -k "conv_transpose2d and grad"`` selects one op's
gradients. Backends come from ``--conformance-backends`` like the forward tests; those without a
gradient adapter (our kernels, plugins) and unavailable ones are skipped with the reason. A
failure prints each failing gradient's diff summary and the replay command
``python -m conformance.gradients CASE_ID --backends BACKEND``.

Gradients run in this process unless ``--isolate`` is given, except on the backends in
:data:`ALWAYS_ISOLATED`, whose backward passes are known to segfault on cases no rule covers yet.

The plain tests at the end check the adapters' plumbing (layouts, records, known-failure keys,
isolation).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import event, given

from conformance import diff as D
from conformance import gradients as G
from conformance.backends import resolve
from conformance.backends.base import channels_first_weight
from conformance.case import OPS, Case, parse_id
from conformance.known_failures import KnownFailures
from conformance.pytest_plugin import session
from conformance.strategies import valid_cases

_DTYPES = session().dtypes
_ADAPTERS: dict[str, G.GradientAdapter | str] = {}

#: Backends whose gradients always run in a worker process, even without ``--isolate``: their
#: backward passes segfault on cases no known-failures rule narrows down yet (channels-last
#: bfloat16 convolutions; see cases/known_failures/torch-cpu-cl*.toml), or their compiler aborts
#: the process on some (XLA: cases/known_failures/jax-cpu.toml).
ALWAYS_ISOLATED = ("torch-cpu-cl", "torch-cuda-cl", "jax-cpu", "jax-cuda")


@pytest.fixture(scope="module", autouse=True)
def _close_workers():
    yield
    for adapter in _ADAPTERS.values():
        if isinstance(adapter, G.IsolatedGradients):
            adapter.close()
    _ADAPTERS.clear()


def _adapter(conformance, backend_name: str) -> G.GradientAdapter:
    """The gradient adapter of ``backend_name`` (isolated with ``--isolate`` and for
    :data:`ALWAYS_ISOLATED`), or skip (no adapter / not available)."""
    if backend_name not in _ADAPTERS:
        (backend,) = [b for b in conformance.backends if b.name == backend_name]
        adapter = G.gradient_adapter(backend)
        if adapter is None:
            _ADAPTERS[backend_name] = f"{backend_name} has no gradient adapter (forward only)"
        elif not backend.availability.available:
            _ADAPTERS[backend_name] = f"{backend_name} not available: {backend.availability.detail}"
        elif conformance.isolate or backend_name in ALWAYS_ISOLATED:
            _ADAPTERS[backend_name] = G.IsolatedGradients(adapter)
        else:
            _ADAPTERS[backend_name] = adapter
    found = _ADAPTERS[backend_name]
    if isinstance(found, str):
        pytest.skip(found)
    return found


def check_gradients(conformance, case: Case, backend_name: str) -> list:
    """Run the gradients of ``case`` on one backend; fail with every failing record's summary."""
    records = G.run_gradient_case(
        case, [_adapter(conformance, backend_name)], known=conformance.known
    )
    conformance.records.extend(records)
    for rec in records:
        if rec.verdict == D.UNSUPPORTED:
            event(f"unsupported on {backend_name}: {rec.detail}")
        elif rec.known_failure:
            event(f"known failure on {rec.backend}: {rec.verdict}")
    failed = [r for r in records if r.failed]
    if failed:
        raise AssertionError("\n" + "\n".join(G.summary(r) for r in failed))
    return records


def _grad_test(op: str):
    @given(case=valid_cases(op, _DTYPES))
    def test(backend_name, case, conformance):
        check_gradients(conformance, case, backend_name)

    test.__name__ = test.__qualname__ = f"test_{op}_grad"
    test.__doc__ = f"{op} gradients (input, weight, bias) agree with the reference VJPs."
    return test


for _op in OPS:
    globals()[f"test_{_op}_grad"] = _grad_test(_op)


# --- plumbing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case_id",
    [
        "conv2d-n1-c6x4-s5-k3x2-g2-f32",
        "conv_transpose2d-n1-c6x4-s3-k3x2-g2-f32",
        "conv_transpose3d-n1-c3x6-s2-k2x1x3-g3-f32",
        "conv_transpose1d-n1-c4x4-s3-k2-g4-f32",
    ],
)
def test_mlx_weight_inverts_torch_weight(case_id):
    case = parse_id(case_id)
    w = np.arange(np.prod(case.w_shape), dtype=np.float32).reshape(case.w_shape)
    assert np.array_equal(G.mlx_weight(case, channels_first_weight(case, w)), w)


def test_cotangent_is_deterministic_in_the_dtype_and_output_shaped():
    case = parse_id("conv_transpose1d-n2-c3x2-s4-k3-st2-op1-bf16-seed7")
    dy = G.cotangent(case)
    assert dy.shape == (2, 10, 2) and dy.dtype == np.float32
    assert np.array_equal(dy, G.cotangent(case))
    assert not np.array_equal(dy, G.cotangent(replace(case, seed=8)))
    assert np.all(np.abs(dy) <= 1)
    assert not dy.flags.writeable
    bits = dy.view(np.uint32) & 0xFFFF
    assert not bits.any()  # exact in bfloat16


def test_records_name_backend_and_gradient():
    case = parse_id("conv2d-n1-c2x2-s4-k3-bias-f32")
    records = G.run_gradient_case(case, ["numpy-ref"])
    assert [r.backend for r in records] == [
        "numpy-ref:grad_input",
        "numpy-ref:grad_weight",
        "numpy-ref:grad_bias",
    ]
    assert all(r.case_id == case.id and r.verdict == D.PASS for r in records)
    assert G.split_record_name("torch-cpu-cl:grad_weight") == ("torch-cpu-cl", "grad_weight")
    assert G.split_record_name("torch-cpu") == ("torch-cpu", None)
    no_bias = G.run_gradient_case(replace(case, bias=False), ["numpy-ref"])
    assert [r.backend for r in no_bias] == ["numpy-ref:grad_input", "numpy-ref:grad_weight"]
    summary = G.summary(replace(records[1], verdict=D.VALUE_MISMATCH))
    assert summary.endswith(
        f"replay: python -m conformance.gradients {case.id} --backends numpy-ref"
    )


def test_invalid_cases_have_no_gradient_records():
    assert G.run_gradient_case(parse_id("conv1d-n1-c2x2-s4-k1-st0-f32"), ["numpy-ref"]) == []


def test_mlx_limitations_are_unsupported_records():
    (mlx,) = resolve(["mlx-cpu"])
    if not mlx.availability.available:
        pytest.skip(mlx.availability.detail)
    records = G.run_gradient_case(parse_id("conv3d-n1-c2x2-s3-k1-g2-bias-f32"), [mlx])
    assert len(records) == 3 and all(r.verdict == D.UNSUPPORTED for r in records)


class _PlantedWeightGradient(G.NumpyRefGradients):
    """The reference VJPs with the weight gradient's kernel taps reversed (a classic bug)."""

    def run(self, case, inputs, dy):
        out = super().run(case, inputs, dy)
        taps = tuple(slice(None, None, -1) for _ in range(case.ndim))
        out["grad_weight"] = np.ascontiguousarray(out["grad_weight"][(slice(None), *taps)])
        return out


def test_planted_weight_gradient_bug_is_caught_with_axes_explained():
    (ref,) = resolve(["numpy-ref"])
    case = parse_id("conv_transpose2d-n2-c2x3-s3-k3x2-st2-p1-op1-f32")
    by = {r.backend: r for r in G.run_gradient_case(case, [_PlantedWeightGradient(ref)])}
    assert by["numpy-ref:grad_input"].verdict == D.PASS
    bad = by["numpy-ref:grad_weight"]
    assert bad.verdict == D.VALUE_MISMATCH and bad.failed
    assert "'batch' is the output channel" in bad.detail


def test_known_failures_are_keyed_backend_grad(tmp_path):
    case = parse_id("conv_transpose2d-n2-c2x3-s3-k3x2-st2-p1-op1-f32")
    (ref,) = resolve(["numpy-ref"])
    planted = _PlantedWeightGradient(ref)
    (tmp_path / "numpy-ref-grad.toml").write_text(
        '[[failure]]\nmatch = "conv_transpose2d-*"\nverdict = "value-mismatch"\n'
        'reason = "planted: weight gradient taps reversed (a test of the known-failure key)"\n'
    )
    known = KnownFailures.load(tmp_path)
    by = {r.backend: r for r in G.run_gradient_case(case, [planted], known=known)}
    assert by["numpy-ref:grad_weight"].known_failure and not by["numpy-ref:grad_weight"].failed
    assert by["numpy-ref:grad_input"].known_failure is None
    # The forward file (backend "numpy-ref") does not cover gradients.
    (tmp_path / "numpy-ref-grad.toml").rename(tmp_path / "numpy-ref.toml")
    known = KnownFailures.load(tmp_path)
    by = {r.backend: r for r in G.run_gradient_case(case, [planted], known=known)}
    assert by["numpy-ref:grad_weight"].failed


def test_exact_known_failure_is_fixed_only_when_every_gradient_passes(tmp_path):
    case = parse_id("conv_transpose2d-n2-c2x3-s3-k3x2-st2-p1-op1-f32")
    (tmp_path / "numpy-ref-grad.toml").write_text(
        f'[[failure]]\ncase = "{case.id}"\n'
        'reason = "planted: weight gradient taps reversed (a test of the FIXED logic)"\n'
    )
    known = KnownFailures.load(tmp_path)
    (ref,) = resolve(["numpy-ref"])
    fixed = G.run_gradient_case(case, [ref], known=known)
    assert fixed and all(r.fixed for r in fixed)
    still = G.run_gradient_case(case, [_PlantedWeightGradient(ref)], known=known)
    assert not any(r.fixed for r in still)


def test_pack_round_trips_shapes_and_non_finite_values():
    grads = [
        np.array([[1.5, np.nan], [np.inf, -0.0]], np.float32),
        np.zeros((0, 3), np.float32),
        np.arange(3, dtype=np.float32),
    ]
    back = G.unpack(G.pack(grads))
    assert [b.shape for b in back] == [(2, 2), (0, 3), (3,)]
    for a, b in zip(grads, back):
        np.testing.assert_array_equal(a, b)


def test_isolated_gradients_match_in_process_and_survive_a_crash(monkeypatch):
    """One worker per adapter: same records as in-process; a worker that dies gives crashed
    records, and the next case runs in a fresh worker."""
    case = parse_id("conv_transpose1d-n2-c2x4-s3-k2-st2-op1-g2-bias-f16")
    (ref,) = resolve(["numpy-ref"])
    adapter = G.gradient_adapter(ref)
    iso = G.IsolatedGradients(adapter)
    try:
        here = G.run_gradient_case(case, [adapter])
        there = G.run_gradient_case(case, [iso])
        assert [(r.backend, r.verdict) for r in there] == [(r.backend, r.verdict) for r in here]
        assert [r.metrics.max_abs_error for r in there] == [r.metrics.max_abs_error for r in here]
        start = iso.worker._start

        def start_then_die():  # the worker dies before it answers, as in a segfault
            start()
            iso.worker._proc.kill()
            iso.worker._proc.join()

        iso.worker._kill()
        monkeypatch.setattr(iso.worker, "_start", start_then_die)
        crashed = G.run_gradient_case(case, [iso])
        assert {r.verdict for r in crashed} == {D.CRASHED}
        assert "SIGKILL" in crashed[0].detail and crashed[0].failed
        monkeypatch.undo()
        assert {r.verdict for r in G.run_gradient_case(case, [iso])} == {D.PASS}
    finally:
        iso.close()
