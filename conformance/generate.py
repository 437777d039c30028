"""The CLI's case list: drawn from the case space by our own seeded generator.

pytest drives the Hypothesis strategies itself (with shrinking); a conformance *run* wants a fixed
list it can run on every backend, count, resume and report. It is drawn here from the same case
space (:mod:`conformance.strategies`) with :class:`~conformance.draw.SeededDraw`, one stream per
(seed, op, kind), so:

* the same seed and arguments give the same list, whatever modules or plugins are loaded, on
  every platform, and whatever Hypothesis version is installed;
* ``--ops conv2d`` draws exactly the conv2d cases of a full run.

``tests/golden/`` pins the first ids of the default seed: a change of the list fails a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from conformance.case import ALL_OPS, GENERAL_OPS, Case
from conformance.draw import Draw, SeededDraw, stream_seed
from conformance.dtypes import DTYPES
from conformance.strategies import draw_invalid_case, draw_valid_case

#: Draws per wanted case before giving up on more distinct ids (a small space, e.g. one dtype
#: and tiny limits, can hold fewer distinct cases than asked for).
ATTEMPTS_PER_CASE = 20


def draw_cases(build: Callable[[Draw], Case], count: int, seed: int) -> list[Case]:
    """``count`` distinct cases built by ``build`` from a SplitMix64 stream seeded with
    ``seed`` (fewer only if the space runs out of distinct ids), in the order drawn."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pick = SeededDraw(seed)
    seen: dict[str, Case] = {}
    for _ in range(count * ATTEMPTS_PER_CASE):
        if len(seen) >= count:
            break
        case = build(pick)
        seen.setdefault(case.id, case)
    return list(seen.values())


def generated_cases(
    ops: Iterable[str] = ALL_OPS,
    dtypes: Iterable[str] = DTYPES,
    *,
    valid_per_op: int,
    invalid_per_op: int,
    seed: int,
    directions: Iterable[str] = ("fwd",),
    layouts: Iterable[str] = ("contiguous",),
) -> list[Case]:
    """Valid then invalid cases for each op, in op order. Valid cases draw their direction
    among ``directions``, then their input layout among ``layouts`` (last, so the other fields
    do not depend on them); invalid ones are contiguous forward cases (rejecting them is the
    forward op's job)."""
    dtypes = tuple(dtypes)
    dirs = tuple(directions)
    lays = tuple(layouts)
    cases: list[Case] = []
    for op in ops:
        if op in GENERAL_OPS and "fwd" not in dirs:
            continue  # the general convolutions are checked forward only
        cases += draw_cases(
            lambda pick, op=op: draw_valid_case(pick, op, dtypes, directions=dirs, layouts=lays),
            valid_per_op,
            stream_seed(seed, op, "valid"),
        )
        cases += draw_cases(
            lambda pick, op=op: draw_invalid_case(pick, op, dtypes),
            invalid_per_op,
            stream_seed(seed, op, "invalid"),
        )
    return cases
