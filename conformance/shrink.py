"""Greedy shrinking of a failing case to a smaller one that fails the same way.

pytest runs get Hypothesis's shrinking; a CLI run draws a fixed list of cases, so before a
failure is saved as a regression it is shrunk here: repeatedly try one simpler variant at a time
(batch 1, fewer channels, smaller sizes, kernel, stride, padding, dilation, output padding,
groups 1, no bias, float32, seed 0, the uniform fill) and keep the first that the backend still
fails with the same verdict and the reference still accepts (or still rejects, for an invalid
case). Each variant tried is one step of the ``max_steps`` budget.

Many bugs depend on a size's structure rather than its magnitude: a tail loop that is wrong only
for an odd output length, or only when the stride leaves a remainder. Halving or decrementing an
odd size makes it even, so a shrinker with only those moves stalls at the first size whose every
smaller neighbour hides the bug (``s9`` for an odd-length bug, never ``s3`` or ``s1``). Besides
the floor (1, or 0 for padding and output padding), half and one less, every size parameter
therefore also tries the smallest value of its parity and two less; a spatial size along an axis
with stride ``st > 1`` also tries the smallest value with its residue modulo ``st`` and modulo
``2 * st``, and ``st`` and ``2 * st`` less (the same remainder, and the same output parity).
Values are tried smallest first.

The output length along an axis depends on spatial size, kernel, stride, padding, dilation and
output padding together, so a bug that depends only on it can need several of them to change at
once (``conv1d s2-k2``, output length 1, has no single smaller neighbour with an odd output
length). Last of all, so that it costs a step only where the moves above have stalled, each axis
whose parameters are not plain already tries the plainest way to get the same output length:
kernel 1, stride 1, padding 0, dilation 1, output padding 0 and a spatial size equal to that
output length. It keeps the output (what cases are first compared by; the input along that axis
may grow), and the spatial moves above then shrink that output keeping its parity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from conformance.case import Case
from conformance.inputs import check_case, run_reference

#: The parameters the plain form of an axis sets, and their plain values (see the docstring).
_PLAIN = {"kernel": 1, "stride": 1, "padding": 0, "dilation": 1, "output_padding": 0}


def _targets(v: int, floor: int, periods: tuple[int, ...]) -> list[int]:
    """The values below ``v`` (and not below ``floor``) to try, smallest first: the floor, half,
    one less, and for each period ``m`` the smallest value congruent to ``v`` modulo ``m`` and
    ``m`` less."""
    values = {floor, v // 2, v - 1}
    for m in periods:
        values.add(floor + (v - floor) % m)
        values.add(v - m)
    return sorted(t for t in values if floor <= t < v)


def _smaller_tuples(
    values: tuple[int, ...], floor: int, periods: list[tuple[int, ...]]
) -> Iterator[tuple[int, ...]]:
    """Smaller variants of one parameter: all axes at their minimum (if they differ), then one
    axis at a time; ``periods[i]`` are the residues axis ``i`` tries to keep."""
    if len(set(values)) > 1:
        yield (min(values),) * len(values)
    for i, v in enumerate(values):
        for target in _targets(v, floor, periods[i]):
            yield values[:i] + (target,) + values[i + 1 :]


def _spatial_periods(stride: int) -> tuple[int, ...]:
    return (2,) if stride <= 1 else tuple(sorted({2, stride, 2 * stride}))


def _plain_axes(case: Case) -> Iterator[Case]:
    """Per axis whose parameters are not plain already, the case with that axis's output length
    from the plainest parameters (:data:`_PLAIN`, spatial size = output length)."""
    try:
        out = check_case(case)[1:-1]  # (N, *spatial, C_out)
    except ValueError:  # invalid: it has no output length to keep
        return
    for i, length in enumerate(out):
        if length < 1 or all(getattr(case, f)[i] == plain for f, plain in _PLAIN.items()):
            continue
        fields = {"spatial": length, **_PLAIN}
        yield replace(
            case,
            **{
                name: getattr(case, name)[:i] + (value,) + getattr(case, name)[i + 1 :]
                for name, value in fields.items()
            },
        )


def candidates(case: Case) -> Iterator[Case]:
    """Simpler variants of ``case``, simplest first; each differs in one respect (the last ones,
    in how one axis's output length is produced)."""
    if case.batch > 1:
        yield replace(case, batch=1)
    if case.bias:
        yield replace(case, bias=False)
    if case.dtype != "float32":
        yield replace(case, dtype="float32")
    if case.seed:
        yield replace(case, seed=0)
    if case.fill != "uniform":
        yield replace(case, fill="uniform")
    g = case.groups
    if g > 1 and case.in_channels % g == 0 and case.out_channels % g == 0:
        yield replace(
            case, groups=1, in_channels=case.in_channels // g, out_channels=case.out_channels // g
        )
    step = g if g >= 1 else 1
    if case.in_channels > step:
        yield replace(case, in_channels=step)
    if case.out_channels > step:
        yield replace(case, out_channels=step)
    parity = [(2,)] * case.ndim
    for name, floor, periods in (
        ("spatial", 1, [_spatial_periods(st) for st in case.stride]),
        ("kernel", 1, parity),
        ("stride", 1, parity),
        ("dilation", 1, parity),
        ("padding", 0, parity),
        ("output_padding", 0, parity),
    ):
        for smaller in _smaller_tuples(getattr(case, name), floor, periods):
            try:
                yield replace(case, **{name: smaller})
            except ValueError:
                continue
    yield from _plain_axes(case)


def _valid(case: Case) -> bool:
    try:
        run_reference(case)
        return True
    except ValueError:
        return False


def shrink(case: Case, still_fails: Callable[[Case], bool], *, max_steps: int = 200) -> Case:
    """The smallest case reached by single simplifications that keep ``still_fails`` true and
    keep the case valid (or invalid) as it was; each candidate tried is one of ``max_steps``."""
    was_valid = _valid(case)
    steps = 0
    improved = True
    while improved and steps < max_steps:
        improved = False
        for candidate in candidates(case):
            if candidate == case:  # a moded case's padding is derived: no change at all
                continue
            steps += 1
            if _valid(candidate) == was_valid and still_fails(candidate):
                case, improved = candidate, True
                break
            if steps >= max_steps:
                break
    return case
