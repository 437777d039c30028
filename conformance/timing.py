"""Where a run's time goes: seconds per stage, summed over cases, and the throughput table.

The runner adds to a :class:`StageTimes` as it works: ``inputs`` (generating and rounding the
case's arrays), ``reference`` (the float64 oracle with its error bound, once per case),
``backend:<name>`` (the backend's call, including the layout conversion and, for an isolated
backend, sending the case to its worker process and the output back) and ``diff`` (comparing
outputs to the reference). The CLI adds ``results`` (results JSON) and ``report`` (HTML).

An isolated backend's workers run a case side by side (:meth:`conformance.runner.Runner.run_cases`):
its seconds are then what its worker spent on the case plus the hand-over, not the wall time
this process waited, so the backends' seconds can add up to more than the run's wall time.

With ``--workers N`` each worker keeps its own and the parent sums them: the stage seconds are
then CPU-side seconds over all workers, larger than the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

BACKEND_PREFIX = "backend:"


@dataclass
class StageTimes:
    """Seconds and counts per stage (insertion-ordered)."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.counts[stage] = self.counts.get(stage, 0) + count

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def merge(self, other: StageTimes) -> None:
        for name, seconds in other.seconds.items():
            self.add(name, seconds, other.counts.get(name, 0))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            name: {"seconds": round(s, 6), "count": self.counts.get(name, 0)}
            for name, s in self.seconds.items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]]) -> StageTimes:
        out = cls()
        for name, entry in data.items():
            out.add(name, float(entry["seconds"]), int(entry.get("count", 0)))
        return out


STAGE_LABELS = {
    "inputs": "input generation",
    "reference": "reference (float64 + bound)",
    "diff": "diffing",
    "results": "results JSON",
    "report": "HTML report",
}


def throughput_table(times: StageTimes, wall_seconds: float | None = None) -> list[str]:
    """Lines of the table: stage, calls, seconds, share of the summed time, calls per second.

    For a backend, calls are the cases it ran (unsupported ones are not called) and calls/s is
    that backend's own throughput; ``wall_seconds`` (if given) adds the end-to-end rate.
    """
    total = sum(times.seconds.values()) or 1.0
    lines = [f"{'stage':<34}{'calls':>8}{'seconds':>10}{'share':>8}{'calls/s':>10}"]
    for name, seconds in times.seconds.items():
        label = (
            f"backend {name[len(BACKEND_PREFIX) :]}"
            if name.startswith(BACKEND_PREFIX)
            else STAGE_LABELS.get(name, name)
        )
        count = times.counts.get(name, 0)
        rate = f"{count / seconds:.0f}" if seconds > 0 else "-"
        lines.append(f"{label:<34}{count:>8}{seconds:>10.2f}{seconds / total:>8.1%}{rate:>10}")
    lines.append(f"{'sum of stages':<34}{'':>8}{total:>10.2f}")
    if wall_seconds is not None:
        cases = times.counts.get("inputs", 0)
        rate = f"{cases / wall_seconds:.0f}" if wall_seconds > 0 else "-"
        lines.append(
            f"{'wall (end to end, cases)':<34}{cases:>8}{wall_seconds:>10.2f}{'':>8}{rate:>10}"
        )
    return lines
