"""The case space: valid and invalid cases, one op at a time, and their Hypothesis strategies.

The space is written once, against :class:`~conformance.draw.Draw`: :func:`draw_valid_case` and
:func:`draw_invalid_case` build a case from a sequence of choices. :func:`valid_cases` and
:func:`invalid_cases` are the Hypothesis strategies over them (pytest, shrinking); the CLI draws
the same space from a seeded generator (:mod:`conformance.generate`).

Valid cases are built valid (kernel, stride and dilation first, then sizes that fit), never
filtered. Sizes stay small so a default run is fast; :data:`SIZE_LIMITS` holds the caps per
number of spatial dimensions. Invalid cases start from a valid one and break exactly one rule,
named in :data:`INVALID_RULES`.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from conformance.case import OPS, Case
from conformance.draw import Draw, HypothesisDraw
from conformance.dtypes import DTYPES

#: spatial dims -> (max spatial size beyond what the kernel needs, max kernel, max stride,
#: max dilation, max padding)
SIZE_LIMITS: dict[int, tuple[int, int, int, int, int]] = {
    1: (10, 5, 4, 3, 3),
    2: (6, 4, 3, 3, 2),
    3: (4, 3, 3, 2, 2),
}

#: The rules an invalid case breaks (one each).
INVALID_RULES = ("stride", "dilation", "padding", "output_padding", "groups", "output_size")


def draw_valid_case(
    pick: Draw, op: str, dtypes: tuple[str, ...] = DTYPES, bias: bool | None = None
) -> Case:
    """A valid case for ``op``; ``bias`` None means drawn."""
    nd, transposed = OPS[op]
    extra, kmax, smax, dmax, pmax = SIZE_LIMITS[nd]
    groups = pick.integer(1, 3)
    c_in = groups * pick.integer(1, 3)
    c_out = groups * pick.integer(1, 3)
    batch = pick.integer(1, 2)
    kernel, stride, dilation, padding, spatial, out_pad = [], [], [], [], [], []
    for _ in range(nd):
        k = pick.integer(1, kmax)
        s = pick.integer(1, smax)
        d = pick.integer(1, dmax)
        if transposed:
            size = pick.integer(1, 1 + extra // 2)
            o = pick.integer(0, max(s, d) - 1)
            full = (size - 1) * s + d * (k - 1) + 1 + o
            p = pick.integer(0, min(pmax, (full - 1) // 2))
        else:
            o = 0
            p = pick.integer(0, pmax)
            need = max(1, d * (k - 1) + 1 - 2 * p)
            size = pick.integer(need, need + extra)
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        spatial.append(size)
        out_pad.append(o)
    return Case(
        op=op,
        batch=batch,
        in_channels=c_in,
        out_channels=c_out,
        spatial=tuple(spatial),
        kernel=tuple(kernel),
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        output_padding=tuple(out_pad),
        groups=groups,
        dtype=pick.choice(dtypes),
        bias=pick.boolean() if bias is None else bias,
        seed=pick.integer(0, 9999),
    )


def _set(values: tuple[int, ...], axis: int, value: int) -> tuple[int, ...]:
    return values[:axis] + (value,) + values[axis + 1 :]


def draw_invalid_case(pick: Draw, op: str, dtypes: tuple[str, ...] = DTYPES) -> Case:
    """A case for ``op`` that breaks exactly one rule of :data:`INVALID_RULES`."""
    case = draw_valid_case(pick, op, dtypes)
    transposed = OPS[op][1]
    rules = [r for r in INVALID_RULES if transposed or r != "output_padding"]
    rule = pick.choice(rules)
    axis = pick.integer(0, case.ndim - 1)
    if rule == "stride":
        bad = pick.integer(-1, 0)
        # Keep output padding legal for the remaining max(stride, dilation).
        return replace(case, stride=_set(case.stride, axis, bad), output_padding=(0,) * case.ndim)
    if rule == "dilation":
        bad = pick.integer(-1, 0)
        return replace(
            case, dilation=_set(case.dilation, axis, bad), output_padding=(0,) * case.ndim
        )
    if rule == "padding":
        bad = pick.integer(1, 2)
        # Grow the input by what the padding no longer adds and what the negative padding crops,
        # so only the padding rule breaks.
        grown = _set(case.spatial, axis, case.spatial[axis] + 2 * (case.padding[axis] + bad))
        return replace(case, padding=_set(case.padding, axis, -bad), spatial=grown)
    if rule == "output_padding":
        limit = max(case.stride[axis], case.dilation[axis])
        bad = limit + pick.integer(0, 1)
        return replace(case, output_padding=_set(case.output_padding, axis, bad))
    if rule == "groups":
        # More groups than input channels never divides them; 0 groups is never legal.
        bad = pick.choice([0, case.in_channels + 1])
        return replace(case, groups=bad)
    # output_size: make the kernel's extent exceed the (padded) input, or pad the transposed
    # output away entirely.
    if transposed:
        full = (
            (case.spatial[axis] - 1) * case.stride[axis]
            + case.dilation[axis] * (case.kernel[axis] - 1)
            + 1
            + case.output_padding[axis]
        )
        return replace(case, padding=_set(case.padding, axis, full // 2 + 1))
    k = case.spatial[axis] + 2 * case.padding[axis] + 1
    return replace(
        case,
        kernel=_set(case.kernel, axis, k),
        dilation=_set(case.dilation, axis, 1),
    )


def valid_cases(
    op: str, dtypes: tuple[str, ...] = DTYPES, bias: bool | None = None
) -> st.SearchStrategy[Case]:
    """Hypothesis strategy: valid cases for ``op`` (see :func:`draw_valid_case`)."""
    return st.composite(lambda draw: draw_valid_case(HypothesisDraw(draw), op, dtypes, bias))()


def invalid_cases(op: str, dtypes: tuple[str, ...] = DTYPES) -> st.SearchStrategy[Case]:
    """Hypothesis strategy: cases for ``op`` that break one rule (see :func:`draw_invalid_case`)."""
    return st.composite(lambda draw: draw_invalid_case(HypothesisDraw(draw), op, dtypes))()
