"""The neural-network module backends (``torch-*-nn``, ``mlx-*-nn``): drawn cases in every op,
direction and layout, planted wrong weight loads that the judge catches, spies that show the
module itself is called (with ``output_size=`` for PyTorch's transposed modules) holding the
case's weight, and the reasons for what a module cannot express."""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import builtin_backends, resolve
from conformance.backends.base import channels_first_weight, unsupported
from conformance.backends.mlx_nn_backend import MLXNNBackend, missing_parameter, module_name
from conformance.backends.torch_nn_backend import TorchNNBackend
from conformance.case import DIRECTIONS, OPS, Case, parse_id
from conformance.generate import draw_cases
from conformance.inputs import make_inputs
from conformance.known_failures import KnownFailures
from conformance.layouts import LAYOUTS
from conformance.runner import Runner
from conformance.strategies import draw_valid_case

NN = ["torch-cpu-nn", "mlx-cpu-nn"]
TRANSPOSED = "conv_transpose2d-n2-c3x4-s5-k3-st2-p1-op1-bias-f32"


def _available(*names: str) -> list:
    backends = resolve(list(names))
    for b in backends:
        if not b.availability.available:
            pytest.skip(f"{b.name}: {b.availability.detail}")
    return backends


@pytest.fixture(scope="module")
def known() -> KnownFailures:
    return KnownFailures.load()


def _small(case: Case) -> bool:
    """Small enough for a quick test: the reference's float64 loops stay fast."""
    return int(np.prod(case.x_shape)) * int(np.prod(case.kernel)) * case.out_channels <= 200_000


# --- (a) drawn cases, every op, direction and layout -------------------------------------------


def test_the_module_backends_are_registered_after_their_functional_counterparts() -> None:
    names = [b.name for b in builtin_backends()]
    for nn, after in (
        ("mlx-cpu-nn", "mlx-cpu"),
        ("mlx-gpu-nn", "mlx-gpu"),
        ("torch-cpu-nn", "torch-cpu-cl"),
        ("torch-cuda-nn", "torch-cuda-cl"),
        ("torch-mps-nn", "torch-mps"),
    ):
        assert names.index(nn) == names.index(after) + 1, names
    (torch_nn,) = resolve(["torch-cpu-nn"])
    assert torch_nn.description.startswith("torch.nn Conv*d/ConvTranspose*d modules on cpu")
    assert torch_nn.layouts == LAYOUTS and torch_nn.directions == DIRECTIONS
    (mlx_nn,) = resolve(["mlx-cpu-nn"])
    assert mlx_nn.description == "mlx.nn Conv*/ConvTranspose* modules on the CPU stream"
    assert "unbatched" not in mlx_nn.layouts and mlx_nn.directions == DIRECTIONS


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("op", OPS)
def test_drawn_cases_pass_or_are_unsupported_or_known(op: str, direction: str, known) -> None:
    backends = _available(*NN)
    runner = Runner(backends, known=known)
    drawn = draw_cases(
        lambda pick: draw_valid_case(pick, op, directions=(direction,), layouts=LAYOUTS), 40, seed=7
    )
    cases = [c for c in drawn if _small(c)][:5]
    assert len(cases) >= 3
    ran = {b.name: 0 for b in backends}
    for case in cases:
        assert case.direction == direction
        for rec in runner.run_case(case):
            ok = rec.verdict in (D.PASS, D.UNSUPPORTED) or (
                D.is_failure(rec.verdict) and rec.known_failure is not None
            )
            assert ok, rec.summary()
            ran[rec.backend] += rec.verdict != D.UNSUPPORTED
    assert ran["torch-cpu-nn"] > 0, ran  # torch's modules take every case here


@pytest.mark.parametrize("name", NN)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_layout_the_backend_takes_passes(name: str, direction: str) -> None:
    (backend,) = _available(name)
    runner = Runner([backend])
    for base in (parse_id("conv2d-n2-c4x6-s6x5-k3-st2-p1-g2-bias-f32"), parse_id(TRANSPOSED)):
        for layout in LAYOUTS:
            batch = 1 if layout == "unbatched" else base.batch
            case = replace(base, direction=direction, layout=layout, batch=batch)
            (rec,) = runner.run_case(case)
            want = D.PASS if layout in backend.layouts else D.UNSUPPORTED
            assert rec.verdict == want, rec.summary()


# --- (b) the module is really called, with the case's weight ------------------------------------


class TorchTransposedWeight(TorchNNBackend):
    """Planted: loads the weight with its kernel taps reversed (a transposed-conv mix-up)."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "planted-torch-nn-flipped"

    def load(self, module, case, w, b) -> None:
        super().load(module, case, w.flip(-1), b)


class TorchForgetsBias(TorchNNBackend):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "planted-torch-nn-no-bias"

    def load(self, module, case, w, b) -> None:
        super().load(module, case, w, None)  # the module keeps its own random bias


class MLXForgetsBias(MLXNNBackend):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "planted-mlx-nn-no-bias"

    def load(self, mx, module, case, inputs, dt) -> None:
        super().load(mx, module, case, replace(inputs, bias=None), dt)


class MLXTransposedWeight(MLXNNBackend):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "planted-mlx-nn-flipped"

    def load(self, mx, module, case, inputs, dt) -> None:
        flipped = np.ascontiguousarray(np.flip(inputs.w, axis=1))
        super().load(mx, module, case, replace(inputs, w=flipped), dt)


@pytest.mark.parametrize(
    "planted", [TorchTransposedWeight, TorchForgetsBias, MLXForgetsBias, MLXTransposedWeight]
)
@pytest.mark.parametrize("case_id", ["conv2d-n2-c3x4-s6-k3-bias-f32", TRANSPOSED])
def test_a_wrong_weight_load_fails_the_judge(planted, case_id: str) -> None:
    backend = planted()
    if not backend.availability.available:
        pytest.skip(backend.availability.detail)
    runner = Runner([backend])
    # A gradient that does not read what was loaded wrong cannot tell: the bias reaches the output
    # only, the weight the output and the input gradient.
    directions = ["fwd"] if "Bias" in planted.__name__ else ["fwd", "bwd_d"]
    for direction in directions:
        (rec,) = runner.run_case(replace(parse_id(case_id), direction=direction))
        assert D.is_failure(rec.verdict), rec.summary()


def _torch_spy(monkeypatch, cls_name: str) -> list[dict]:
    import torch

    cls = getattr(torch.nn, cls_name)
    forward = cls.forward
    calls: list[dict] = []

    def spy(self, x, *args, **kw):
        calls.append(
            {
                "args": args,
                "kw": dict(kw),
                "weight": self.weight.detach().float().numpy().copy(),
                "bias": None if self.bias is None else self.bias.detach().float().numpy().copy(),
                "output_padding": getattr(self, "output_padding", None),
            }
        )
        return forward(self, x, *args, **kw)

    monkeypatch.setattr(cls, "forward", spy)
    return calls


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", ["contiguous", "unbatched"])
def test_torch_transposed_modules_are_called_with_output_size(
    monkeypatch, direction: str, layout: str
) -> None:
    (backend,) = _available("torch-cpu-nn")
    batch = 1 if layout == "unbatched" else 2
    case = replace(parse_id(TRANSPOSED), direction=direction, layout=layout, batch=batch)
    calls = _torch_spy(monkeypatch, module_name(case.op))
    (rec,) = Runner([backend]).run_case(case)
    # (c) output_padding 1 reaches the module through output_size only, and passes.
    assert rec.verdict == D.PASS, rec.summary()
    (call,) = calls
    assert call["kw"] == {"output_size": [10, 10]} and not call["args"]
    assert case.output_spatial() == (10, 10) and call["output_padding"] == (0, 0)
    inputs = make_inputs(case)
    np.testing.assert_array_equal(call["weight"], channels_first_weight(case, inputs.w))
    np.testing.assert_array_equal(call["bias"], inputs.bias)


def test_torch_forward_modules_hold_the_case_weight(monkeypatch) -> None:
    (backend,) = _available("torch-cpu-nn")
    case = parse_id("conv3d-n1-c4x2-s4-k2x1x3-p1-g2-bias-f16-seed3")
    calls = _torch_spy(monkeypatch, "Conv3d")
    (rec,) = Runner([backend]).run_case(case)
    assert rec.verdict == D.PASS, rec.summary()
    (call,) = calls
    assert call["kw"] == {} and not call["args"]  # no output_size for a forward conv
    inputs = make_inputs(case)
    np.testing.assert_array_equal(call["weight"], channels_first_weight(case, inputs.w))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "case_id",
    ["conv1d-n2-c4x6-s9-k3-st2-g2-bias-bf16", "conv_transpose3d-n1-c2x3-s3-k2-st2-p1-op1-f32"],
)
def test_mlx_modules_are_called_holding_the_case_weight(
    monkeypatch, direction: str, case_id: str
) -> None:
    (backend,) = _available("mlx-cpu-nn")
    import mlx.core as mx
    import mlx.nn as nn

    case = replace(parse_id(case_id), direction=direction)
    cls = getattr(nn, module_name(case.op))
    call = cls.__call__
    seen: list[dict] = []

    def spy(self, x):
        seen.append({"weight": self.weight, "bias": self.get("bias"), "dtype": self.weight.dtype})
        return call(self, x)

    monkeypatch.setattr(cls, "__call__", spy)
    (rec,) = Runner([backend]).run_case(case)
    assert rec.verdict == D.PASS, rec.summary()
    assert seen, "the module was not called"
    inputs = make_inputs(case)
    if direction == "fwd":  # under mx.vjp the module holds tracers
        np.testing.assert_array_equal(np.array(seen[0]["weight"].astype(mx.float32)), inputs.w)
        assert str(seen[0]["dtype"]).endswith(case.dtype)
        assert (seen[0]["bias"] is None) == (not case.bias)


# --- (d) what a module cannot express ------------------------------------------------------------


def test_mlx_module_limitations_name_the_missing_parameter() -> None:
    (mlx_nn,) = resolve(["mlx-cpu-nn"])
    pytest.importorskip("mlx.nn")
    grouped3d = parse_id("conv3d-n1-c4x4-s4-k2-g2-f32")
    assert unsupported(mlx_nn, grouped3d) == (
        "mlx.nn.Conv3d takes no groups parameter (the case has groups 2)"
    )
    grouped_t = parse_id("conv_transpose1d-n1-c4x4-s4-k2-g4-f32-bwd_w")
    assert unsupported(mlx_nn, grouped_t) == (
        "mlx.nn.ConvTranspose1d takes no groups parameter (the case has groups 4)"
    )
    assert unsupported(mlx_nn, parse_id("conv2d-n1-c4x4-s4-k2-g2-f32")) is None
    assert unsupported(mlx_nn, parse_id("conv_transpose3d-n1-c2x2-s3-k2-st2-op1-f32")) is None
    unbatched = parse_id("conv2d-n1-c4x4-s4-k2-f32-unbatched")
    assert unsupported(mlx_nn, unbatched) == (
        "mlx-cpu-nn does not take the unbatched layout: MLX conv ops need a batch axis"
    )
    (rec,) = Runner([mlx_nn]).run_case(grouped3d)
    assert rec.verdict == D.UNSUPPORTED and "takes no groups parameter" in rec.detail


def test_a_parameter_the_constructor_does_not_take_is_named() -> None:
    class OldConvTranspose1d:  # a module from an MLX without output_padding
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
            pass

    assert "output_padding" not in inspect.signature(OldConvTranspose1d).parameters
    case = parse_id("conv_transpose1d-n1-c2x2-s4-k3-st2-op1-f32")
    assert missing_parameter(OldConvTranspose1d, case) == (
        "mlx.nn.OldConvTranspose1d takes no output_padding parameter (the case has "
        "output_padding 1)"
    )
    assert missing_parameter(OldConvTranspose1d, replace(case, output_padding=(0,))) is None
    dilated = parse_id("conv_transpose2d-n1-c2x2-s4-k3-d2x1-f32")
    assert "takes no dilation parameter (the case has dilation 2x1)" in (
        missing_parameter(OldConvTranspose1d, dilated) or ""
    )


def test_torch_output_size_refusal_is_a_known_upstream_failure(known) -> None:
    torch_cpu, torch_nn = _available("torch-cpu", "torch-cpu-nn")
    case = parse_id("conv_transpose1d-n1-c1x1-s1-k2-d2-op1-f32")  # stride 1 <= op 1 < dilation 2
    functional, module = Runner([torch_cpu, torch_nn], known=known).run_case(case)
    assert functional.verdict == D.PASS, functional.summary()
    assert module.verdict == D.RAISED and module.known_failure is not None, module.summary()
    assert "requested an output size of [4], but valid sizes range from [3] to [3]" in (
        module.error_message or ""
    )


def test_the_general_convolutions_have_no_module() -> None:
    import conformance.case as C

    general = getattr(C, "GENERAL_OPS", {})
    if not general:
        pytest.skip("this checkout has no general convolutions")
    for name in NN:
        (backend,) = resolve([name])
        for op, (nd, _) in general.items():
            reason = unsupported(backend, Case(op, 1, 2, 2, (5,) * nd, (3,) * nd)) or ""
            assert reason.startswith(f"{name} has no {op}"), reason
            assert "modules for the six conv and conv_transpose ops only" in reason
