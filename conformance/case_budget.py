"""Case budgets: fewer generated cases for a backend whose every case is slow to run.

JAX compiles each case with XLA before it runs it (about 0.1 s on a CPU core for the tiny cases a
run generates, against about a millisecond for every other CPU backend), so a release run of 400
cases per op would spend most of its time compiling for ``jax-cpu``. A budget of N runs the
backend on the first N valid cases per op of the run's list (and the same share of the invalid
cases) and on every frozen case, regression and ``--cases`` case. Generation draws each op's cases
from its own stream in order, so the first N are the cases a run with ``--max-examples N`` draws:
the budget is deterministic, and a budgeted run replays like any other.

``python -m conformance run --backend-examples jax-cpu=400`` lifts the budget; the run prints
what each budget left out, and the results' settings keep the budgets
(``backend_examples``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from conformance.backends import NAME_PATTERN
from conformance.case import Case
from conformance.generate import generated_cases

#: Valid generated cases per op for backends that compile every case (measured: 0.09 s a case on
#: jax-cpu, one core; 125 cases per op at the default quarter of invalid ones: about 70 s).
DEFAULT_BACKEND_EXAMPLES: dict[str, int] = {"jax-cpu": 100, "jax-cuda": 100}

WHY = {
    "jax-cpu": "XLA compiles every case, about 0.1 s each",
    "jax-cuda": "XLA compiles every case",
}


def parse_backend_examples(text: str) -> tuple[str, int]:
    """``BACKEND=N`` -> (BACKEND, N); an argparse error naming the option and the rule."""
    name, sep, count = text.partition("=")
    if not sep or not NAME_PATTERN.match(name):
        raise argparse.ArgumentTypeError(
            f"--backend-examples must be BACKEND=N (e.g. jax-cpu=400), got {text!r}"
        )
    try:
        value = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--backend-examples {name}: N must be an integer, got {count!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--backend-examples {name}: N must be >= 0, got {value}")
    return name, value


def budgets(
    given: Iterable[tuple[str, int]], names: Iterable[str], max_examples: int
) -> dict[str, int]:
    """The budgets that bind in this run: the defaults, overridden by ``given``, for the
    backends in ``names`` whose budget is below ``max_examples``."""
    merged = {**DEFAULT_BACKEND_EXAMPLES, **dict(given)}
    return {n: merged[n] for n in names if n in merged and merged[n] < max_examples}


def left_out(
    generated: Iterable[Case],
    frozen_ids: set[str],
    ops: Iterable[str],
    dtypes: Iterable[str],
    *,
    budget: int,
    max_examples: int,
    invalid_examples: int,
    seed: int,
    directions: Iterable[str] = ("fwd",),
    layouts: Iterable[str] = ("contiguous",),
) -> set[str]:
    """Ids of the run's generated cases past ``budget`` (valid per op; invalid scaled alike),
    frozen ones excepted."""
    invalid = invalid_examples * budget // max_examples if max_examples else 0
    kept = generated_cases(
        ops,
        dtypes,
        valid_per_op=budget,
        invalid_per_op=invalid,
        seed=seed,
        directions=directions,
        layouts=layouts,
    )
    keep = {c.id for c in kept} | frozen_ids
    return {c.id for c in generated if c.id not in keep}


def describe(budget: Mapping[str, int], dropped: Mapping[str, int], max_examples: int) -> list[str]:
    """One line per budgeted backend for the run's output."""
    return [
        f"case budget: {name} runs the first {n} of {max_examples} generated cases per op "
        f"({dropped[name]} cases left out; {WHY.get(name, 'a slow backend')}); "
        f"--backend-examples {name}={max_examples} runs them all"
        for name, n in budget.items()
    ]
