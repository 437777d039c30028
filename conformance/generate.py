"""Drawing a deterministic list of cases from the Hypothesis strategies (for the CLI and nox).

pytest drives the strategies itself (with shrinking); a conformance *run* wants a fixed list it
can run on every backend, count and report, so it draws examples up front from a seeded,
generate-only Hypothesis run. The same seed and arguments give the same list.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from conformance.case import OPS, Case
from conformance.dtypes import DTYPES
from conformance.strategies import invalid_cases, valid_cases


def draw_cases(strategy: st.SearchStrategy[Case], count: int, seed: int) -> list[Case]:
    """Up to ``count`` distinct cases from ``strategy``, deterministic for a given ``seed``."""
    if count <= 0:
        return []
    seen: dict[str, Case] = {}

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        seen.setdefault(case.id, case)

    collect()
    return list(seen.values())


def generated_cases(
    ops: Iterable[str] = OPS,
    dtypes: Iterable[str] = DTYPES,
    *,
    valid_per_op: int,
    invalid_per_op: int,
    seed: int,
) -> list[Case]:
    """Valid then invalid cases for each op, in op order."""
    dtypes = tuple(dtypes)
    cases: list[Case] = []
    for i, op in enumerate(ops):
        cases += draw_cases(valid_cases(op, dtypes), valid_per_op, seed + i)
        cases += draw_cases(invalid_cases(op, dtypes), invalid_per_op, seed + 1000 + i)
    return cases
