"""Greedy shrinking of a failing case to a smaller one that fails the same way.

pytest runs get Hypothesis's shrinking; a CLI run draws a fixed list of cases, so before a
failure is saved as a regression it is shrunk here: repeatedly try one simpler variant at a time
(batch 1, fewer channels, smaller sizes, kernel, stride, padding, dilation, output padding,
groups 1, no bias, float32, seed 0) and keep it if the backend still fails with the same verdict
and the reference still accepts it (or still rejects it, for an invalid case).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from conformance.case import Case
from conformance.inputs import run_reference


def _smaller_tuples(values: tuple[int, ...], floor: int) -> Iterator[tuple[int, ...]]:
    if len(set(values)) > 1:
        yield (min(values),) * len(values)
    for i, v in enumerate(values):
        for target in (floor, v // 2, v - 1):
            if floor <= target < v:
                yield values[:i] + (target,) + values[i + 1 :]


def candidates(case: Case) -> Iterator[Case]:
    """Simpler variants of ``case``, simplest first; each differs in one respect."""
    if case.batch > 1:
        yield replace(case, batch=1)
    if case.bias:
        yield replace(case, bias=False)
    if case.dtype != "float32":
        yield replace(case, dtype="float32")
    if case.seed:
        yield replace(case, seed=0)
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
    for name, floor in (
        ("spatial", 1),
        ("kernel", 1),
        ("stride", 1),
        ("dilation", 1),
        ("padding", 0),
        ("output_padding", 0),
    ):
        for smaller in _smaller_tuples(getattr(case, name), floor):
            try:
                yield replace(case, **{name: smaller})
            except ValueError:
                continue


def _valid(case: Case) -> bool:
    try:
        run_reference(case)
        return True
    except ValueError:
        return False


def shrink(case: Case, still_fails: Callable[[Case], bool], *, max_steps: int = 200) -> Case:
    """The smallest case reached by single simplifications that keep ``still_fails`` true and
    keep the case valid (or invalid) as it was."""
    was_valid = _valid(case)
    steps = 0
    improved = True
    while improved and steps < max_steps:
        improved = False
        for candidate in candidates(case):
            steps += 1
            if _valid(candidate) == was_valid and still_fails(candidate):
                case, improved = candidate, True
                break
            if steps >= max_steps:
                break
    return case
