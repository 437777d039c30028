"""Input layouts as a case field: ids, the rules, the views each library receives (real views,
not copies), the NaN poison that catches a kernel reading storage as if it were contiguous, the
strategies' draw, and the backends that run them."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from conformance import diff as D
from conformance.backends import resolve
from conformance.backends.base import unsupported
from conformance.backends.numpy_ref import NumpyReference
from conformance.case import DIRECTIONS, Case, parse_id
from conformance.draw import SeededDraw
from conformance.generate import generated_cases
from conformance.inputs import Inputs, make_inputs
from conformance.layouts import LAYOUTS, NUMPY, batched, laid_out
from conformance.runner import Runner
from conformance.strategies import draw_valid_case

CASE = "conv2d-n2-c3x4-s5x6-k3-bias-f32"


# --- the id and the rules -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_ids_round_trip(layout: str) -> None:
    case = replace(parse_id(CASE), batch=1 if layout == "unbatched" else 2, layout=layout)
    assert parse_id(case.id) == case
    assert Case.from_dict(case.to_dict()) == case
    assert (f"-{layout}" in case.id) == (layout != "contiguous")
    assert ("layout" in case.to_dict()) == (layout != "contiguous")


def test_layout_comes_after_the_direction_in_the_id() -> None:
    case = parse_id("conv1d-n2-c4x8-s9-k3-bias-f16-fint-bwd_w-strided-seed3")
    assert (case.direction, case.layout, case.seed) == ("bwd_w", "strided", 3)
    with pytest.raises(ValueError, match="out of order"):
        parse_id("conv1d-n2-c4x8-s9-k3-f16-strided-bwd_w")


def test_unbatched_needs_batch_one() -> None:
    with pytest.raises(ValueError, match="Case.layout 'unbatched' needs batch 1, got batch 2"):
        replace(parse_id(CASE), layout="unbatched")
    with pytest.raises(ValueError, match="Case.layout must be one of contiguous, strided"):
        replace(parse_id(CASE), layout="tiled")


def test_expanded_inputs_are_the_same_in_every_sample() -> None:
    case = replace(parse_id(CASE), layout="expanded", batch=3)
    x = make_inputs(case).x
    assert (x == x[:1]).all()
    nan = np.full((2, 3), np.nan)  # the special fill's NaN is the same value in every sample
    assert laid_out("expanded", nan, NUMPY).strides[0] == 0
    with pytest.raises(ValueError, match="same values in every sample"):
        laid_out("expanded", np.arange(6.0).reshape(2, 3), NUMPY)


# --- the views ----------------------------------------------------------------------------------


def test_numpy_views_are_views_with_the_inputs_values() -> None:
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    strided = laid_out("strided", a, NUMPY)
    assert strided.base is not None and not strided.flags.c_contiguous
    assert np.isnan(strided.base).sum() == strided.base.size - a.size  # the skipped elements
    permuted = laid_out("permuted", a, NUMPY)
    assert permuted.strides[-1] > permuted.strides[-2]
    expanded = laid_out("expanded", np.broadcast_to(a[:1], a.shape).copy(), NUMPY)
    assert expanded.strides[0] == 0
    for layout, view in (("strided", strided), ("permuted", permuted)):
        np.testing.assert_array_equal(view, a, err_msg=layout)
    assert batched("unbatched", laid_out("unbatched", a[:1], NUMPY)).shape == (1, 3, 4)


def _torch_seen(monkeypatch, case: Case) -> dict:
    """What ``torch.nn.functional``'s op received for ``case`` on torch-cpu."""
    pytest.importorskip("torch")
    import torch.nn.functional as F

    seen: dict = {}
    op = getattr(F, case.op)

    def spy(x, *args, **kw):
        seen.update(
            shape=tuple(x.shape),
            stride=x.stride(),
            offset=x.storage_offset(),
            contiguous=x.is_contiguous(),
        )
        return op(x, *args, **kw)

    monkeypatch.setattr(F, case.op, spy)
    (backend,) = resolve(["torch-cpu"])
    (rec,) = Runner([backend]).run_case(case)
    assert rec.verdict == D.PASS, rec.summary()
    return seen


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_torch_receives_the_view_not_a_copy(monkeypatch, direction: str) -> None:
    base = replace(parse_id(CASE), direction=direction)
    strided = _torch_seen(monkeypatch, replace(base, layout="strided"))
    assert strided["offset"] > 0 and strided["stride"][-1] == 2 and not strided["contiguous"]
    permuted = _torch_seen(monkeypatch, replace(base, layout="permuted"))
    assert permuted["stride"][-2] == 1 and not permuted["contiguous"]
    expanded = _torch_seen(monkeypatch, replace(base, layout="expanded"))
    assert expanded["stride"][0] == 0
    unbatched = _torch_seen(monkeypatch, replace(base, layout="unbatched", batch=1))
    assert unbatched["shape"] == (3, 5, 6)


@pytest.mark.parametrize("name", ["mlx-cpu", "torch-cpu", "numpy-ref"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_backends_pass_every_layout_they_take(name: str, direction: str) -> None:
    (backend,) = resolve([name])
    if not backend.availability.available:
        pytest.skip(backend.availability.detail)
    runner = Runner([backend])
    base = replace(parse_id(CASE), direction=direction, batch=1)
    for layout in LAYOUTS:
        for batch in (1, 2):
            if (layout, batch) in (("unbatched", 2), ("expanded", 1)):
                continue
            case = replace(base, layout=layout, batch=batch)
            (rec,) = runner.run_case(case)
            want = D.PASS if layout in backend.layouts else D.UNSUPPORTED
            assert rec.verdict == want, rec.summary()


def test_a_backend_without_a_layout_calls_it_unsupported() -> None:
    (mlx,) = resolve(["mlx-cpu"])
    case = replace(parse_id(CASE), layout="unbatched", batch=1)
    assert unsupported(mlx, case) == (
        "mlx-cpu does not take the unbatched layout: MLX conv ops need a batch axis"
    )
    (onnx,) = resolve(["onnxruntime-cpu"])
    assert unsupported(onnx, replace(case, layout="strided")).startswith(
        "onnxruntime-cpu does not take the strided layout: "
    )


# --- a planted stride-blind kernel --------------------------------------------------------------


class StrideBlind(NumpyReference):
    """A planted bug: reads the input's storage from its first element as if it were
    contiguous, as a kernel does that takes a data pointer and ignores the strides."""

    name = "planted-stride-blind"

    def run(self, case: Case, inputs: Inputs):
        view = laid_out(case.layout, inputs.x, NUMPY)
        flat = np.lib.stride_tricks.as_strided(
            view, shape=view.shape, strides=np.zeros(view.shape, view.dtype).strides
        )
        laid = np.array(flat)  # what the blind kernel reads
        return super().run(replace(case, layout="contiguous"), replace(inputs, x=laid))


@pytest.mark.parametrize("direction", ["fwd", "bwd_w"])
def test_a_stride_blind_kernel_fails_the_strided_and_permuted_layouts(direction: str) -> None:
    runner = Runner([StrideBlind()])
    base = replace(parse_id(CASE), direction=direction)
    verdicts = {
        layout: runner.run_case(replace(base, layout=layout))[0].verdict
        for layout in ("contiguous", "strided", "permuted")
    }
    assert verdicts["contiguous"] == D.PASS
    assert D.is_failure(verdicts["strided"]) and D.is_failure(verdicts["permuted"]), verdicts


# --- the draw -----------------------------------------------------------------------------------


def test_strategies_draw_every_layout_the_batch_admits() -> None:
    cases = generated_cases(
        valid_per_op=30, invalid_per_op=0, seed=1, directions=DIRECTIONS, layouts=LAYOUTS
    )
    counts = Counter(c.layout for c in cases)
    assert set(counts) == set(LAYOUTS)
    assert 0.35 < counts["contiguous"] / len(cases) < 0.65, counts
    assert all(c.batch == 1 for c in cases if c.layout == "unbatched")
    assert all(c.batch > 1 for c in cases if c.layout == "expanded")


def test_a_contiguous_only_draw_is_what_it_was_before_layouts() -> None:
    for seed in range(20):
        case = draw_valid_case(SeededDraw(seed), "conv2d", directions=DIRECTIONS)
        again = draw_valid_case(
            SeededDraw(seed), "conv2d", directions=DIRECTIONS, layouts=("contiguous",)
        )
        assert case == again and case.layout == "contiguous"
    with pytest.raises(ValueError, match="layouts must name some of contiguous"):
        draw_valid_case(SeededDraw(0), "conv2d", layouts=("tiled",))
