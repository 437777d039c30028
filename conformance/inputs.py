"""Input generation (from the case seed, rounded once to the case dtype) and the reference call.

Every backend sees exactly these values: float32 arrays that are exact in the case dtype, in MLX
layout. Adapters convert them to their own dtype and layout; that conversion is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from conformance.case import Case
from conformance.dtypes import round_to
from reference.core import ConvResult
from reference.ops import run_op
from reference.params import check_params, check_shapes


@dataclass(frozen=True)
class Inputs:
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None


@lru_cache(maxsize=64)
def make_inputs(case: Case) -> Inputs:
    """Uniform values in [-1, 1) from ``case.seed``, rounded once to ``case.dtype``.

    Shapes come from the case even when it is invalid (a negative size becomes 0, so the arrays
    can still be built and handed to backends to reject).
    """
    rng = np.random.default_rng(case.seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        arr = round_to(rng.uniform(-1.0, 1.0, tuple(max(s, 0) for s in shape)), case.dtype)
        arr.setflags(write=False)
        return arr

    x = draw(case.x_shape)
    w = draw(case.w_shape)
    b = draw(case.bias_shape) if case.bias_shape else None
    return Inputs(x, w, b)


def check_case(case: Case) -> tuple[int, ...]:
    """The case's output shape, checked as the reference checks its arguments but with the
    case's own sizes: a negative batch, channel count, spatial or kernel size (which the input
    arrays cannot hold: :func:`make_inputs` makes it 0) is rejected with its real value.
    ValueError naming op, parameter and value otherwise."""
    p = check_params(case.op, case.ndim, transposed=case.transposed, **case.params())  # type: ignore[arg-type]
    return check_shapes(p, case.x_shape, case.w_shape, case.bias_shape)


def run_reference(case: Case, inputs: Inputs | None = None) -> ConvResult:
    """The oracle: float64 output plus error-bound inputs. Raises ValueError for invalid cases
    (:func:`check_case` first, so a negative size is named with its value)."""
    check_case(case)
    inputs = inputs or make_inputs(case)
    res = run_op(
        case.op,
        case.ndim,
        case.transposed,
        inputs.x,
        inputs.w,
        inputs.bias,
        with_bound=True,
        **case.params(),  # type: ignore[arg-type]
    )
    assert isinstance(res, ConvResult)
    return res if inputs.bias is None else replace(res, bias=inputs.bias)
