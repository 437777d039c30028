"""Calibration of the diff engine's statistical tier, and the planted bugs it and the rest of
the harness must catch (``nox -s calibrate``).

Two conformance runs, through the same pipeline as ``python -m conformance run``:

1. **Correct implementations**, over the corpus and ``--max-examples`` generated cases per op
   (default 1700: 10,200 valid cases and their invalid share): ``numpy-ref`` (float64 rounded
   once), the CPU backends that are installed (PyTorch, MLX, our host kernels) and the float32
   alternatives of :mod:`tests.alternatives` (per tap, one GEMM over all taps, split channels).
   Its table gives, per implementation, the cases the statistical tier judged and the largest
   ratio each test reached (threshold 1); a new failure is an upstream bug to triage into
   ``cases/known_failures/`` or a false alarm, and fails the session.
2. **Planted bugs**, over the default release run's cases (``--planted-examples``, 400 per op):
   TF32 inputs, one element 1000 ulps off and float16 accumulation
   (:mod:`tests.planted_precision`), a wrong odd-length tail and wrong batch items >= 2
   (:mod:`tests.planted`), NaN where an input is zero (:mod:`tests.planted_fills`), with the
   run's shrinking. Its table gives, per bug and dtype, the cases where the bug changed the
   output, how many each tier caught (``value-mismatch``/``nan-inf-mismatch``: the proven bound
   and the non-finite check; ``precision-mismatch``: the statistical tier), the misses, and the
   smallest case caught (shrunk during the run where it could be) and missed.

``python -m benchmarks.calibration --summarize FILE.json`` prints the tables of an earlier run.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conformance import cli
from conformance import diff as D
from conformance.case import parse_id
from conformance.dtypes import DTYPES
from conformance.report_model import case_size
from conformance.results import RunResults

CORRECT_BUILTINS = ("numpy-ref", "torch-cpu", "torch-cpu-cl", "mlx-cpu", "kernels-host")
ALTERNATIVES = ("alt-f32-per-tap", "alt-f32-im2col", "alt-f32-split")
#: Planted bug -> the plugin that provides it.
PLANTED = {
    "planted-tf32": "tests.planted_precision:Tf32Inputs",
    "planted-one-bad": "tests.planted_precision:OneBadElement",
    "planted-f16-acc": "tests.planted_precision:Float16Accumulation",
    "planted-odd-tail": "tests.planted:WrongLastOddElement",
    "planted-batch3": "tests.planted:WrongForLateBatch",
    "planted-nan-zero": "tests.planted_fills:NanOnZeroInput",
    "planted-nan-squash": "tests.planted_fills:SquashesNaN",
    "planted-daz": "tests.planted_fills:FlushesSubnormals",
    "planted-neg-zero": "tests.planted_fills:NegatedSum",
}
#: The precision bugs are judged against a correct float32 kernel (their own arithmetic); the
#: others against the reference rounded once (numpy-ref), which they corrupt.
FLOAT32_PLANTED = ("planted-tf32", "planted-one-bad", "planted-f16-acc")
RATIOS = (
    ("statistical_ratio", "per element"),
    ("rms_ratio", "error level"),
    ("outlier_ratio", "out of line"),
)


def run(
    backends: Sequence[str],
    plugins: Sequence[str],
    max_examples: int,
    json_path: Path,
    workers: str,
    shrink_groups: int,
) -> int:
    """One conformance run; its exit status is the run's (1 where anything failed)."""
    argv = ["run", "--max-examples", str(max_examples)]
    for plugin in plugins:
        argv += ["--plugin", plugin]
    argv += ["--backends", ",".join(backends), "--json", str(json_path)]
    argv += ["--shrink-groups", str(shrink_groups), "-q", "-n", workers]
    return cli.main(argv)


def available_builtins() -> list[str]:
    from conformance.backends import builtin_backends

    available = {b.name for b in builtin_backends() if b.availability.available}
    return [b for b in CORRECT_BUILTINS if b in available]


def _smallest(records: list) -> str:
    return min(records, key=case_size).case_id if records else "-"


def correct_table(records: Sequence) -> list[str]:
    by_backend = defaultdict(list)
    for r in records:
        if r.backend not in PLANTED:
            by_backend[r.backend].append(r)
    lines = [
        f"{'implementation':<18}{'judged':>8}"
        + "".join(f"{title:>14}" for _, title in RATIOS)
        + f"{'new failures':>14}{'known':>7}  largest-ratio cases"
    ]
    for backend, recs in by_backend.items():
        # Known failures are upstream bugs (float16 accumulation in torch's conv_transpose), not
        # the margins of a correct implementation.
        judged = [
            r
            for r in recs
            if r.metrics is not None and r.metrics.rms_ratio is not None and not r.known_failure
        ]
        worst = {}
        for field, _ in RATIOS:
            top = max(judged, key=lambda r: getattr(r.metrics, field), default=None)
            worst[field] = top
        failures = [r for r in recs if r.failed]
        lines.append(
            f"{backend:<18}{len(judged):>8}"
            + "".join(
                f"{getattr(worst[f].metrics, f):>14.3f}" if worst[f] else f"{'-':>14}"
                for f, _ in RATIOS
            )
            + f"{len(failures):>14}{sum(1 for r in recs if r.known_failure):>7}  "
            + ", ".join(sorted({worst[f].case_id for f, _ in RATIOS if worst[f]}))
        )
        for r in failures[:20]:
            lines.append(f"    failed: {r.case_id}: {r.verdict}: {r.detail[:120]}")
    return lines


def _changes_output(record) -> bool:
    """Whether the planted bug changed this case's output: its output differs from a correct
    one (:data:`FLOAT32_PLANTED`: alt-f32-per-tap's; the others: numpy-ref's), both rounded to
    the case dtype. TF32 rounding leaves float16 and bfloat16 inputs exact, a one-tap case has
    no float16 accumulation, 1000 ulps of a zero are below float16's subnormals, an even output
    length has no odd tail, a batch of 2 no late item, a uniform input no zero: no test can
    catch those."""
    from conformance.backends import load_plugins
    from conformance.backends.numpy_ref import NumpyReference
    from conformance.inputs import make_inputs

    planted = load_plugins([PLANTED[record.backend]])[0]
    if record.backend in FLOAT32_PLANTED:
        correct = load_plugins(["tests.alternatives:Float32PerTap"])[0]
    else:
        correct = NumpyReference()
    case = parse_id(record.case_id)
    inputs = make_inputs(case)
    got, want = planted.run(case, inputs), correct.run(case, inputs)
    return not np.array_equal(got, want, equal_nan=True)


def _of_dtype(records: list, dtype: str) -> list:
    return [r for r in records if dtype == "all" or parse_id(r.case_id).dtype == dtype]


def planted_table(records: Sequence) -> list[str]:
    valid = {r.case_id for r in records if r.backend == "numpy-ref" and r.verdict == D.PASS}
    lines = [
        f"{'planted bug':<18}{'dtype':<10}{'changed':>8}{'caught':>8}{'proven':>8}"
        f"{'statistical':>13}{'missed':>8}  smallest caught / smallest missed"
    ]
    for backend in PLANTED:
        recs = [
            r
            for r in records
            if r.backend == backend and r.case_id in valid and r.shrunk_from is None
        ]
        shrunk = [r for r in records if r.backend == backend and r.shrunk_from is not None]
        # Passing records: only those where the bug changed the output are misses (worked out
        # once per record; the dtype rows below split them).
        all_missed = [r for r in recs if not D.is_failure(r.verdict) and _changes_output(r)]
        for dtype in ("all", *DTYPES):
            mine, missed = _of_dtype(recs, dtype), _of_dtype(all_missed, dtype)
            if not mine:
                continue
            proven = [r for r in mine if r.verdict in (D.VALUE_MISMATCH, D.NAN_INF_MISMATCH)]
            stat = [r for r in mine if r.verdict == D.PRECISION_MISMATCH]
            changed = len(proven) + len(stat) + len(missed)
            lines.append(
                f"{backend if dtype == 'all' else '':<18}{dtype:<10}{changed:>8}"
                f"{len(proven) + len(stat):>8}{len(proven):>8}{len(stat):>13}{len(missed):>8}  "
                f"{_smallest(proven + stat + (shrunk if dtype == 'all' else []))} / "
                f"{_smallest(missed)}"
            )
    return lines


def summarize(json_path: Path, tables: Sequence[str] = ("correct", "planted"), out=None) -> None:
    out = out or sys.stdout
    records = RunResults.read(json_path).records
    cases = {r.case_id for r in records if r.shrunk_from is None}
    generated = sum(1 for c in cases if parse_id(c).seed)
    print(f"\n{json_path}: {len(cases)} cases ({generated} generated), {len(records)} records")
    if "correct" in tables:
        print("\ncorrect implementations (ratios to their thresholds; > 1 fails):", file=out)
        for line in correct_table(records):
            print(line, file=out)
    if "planted" in tables:
        print(
            "\nplanted bugs (cases where the bug changed the output; smallest caught includes "
            "cases shrunk during the run):",
            file=out,
        )
        for line in planted_table(records):
            print(line, file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration")
    parser.add_argument(
        "--max-examples", type=int, default=1700, help="generated cases per op, correct run"
    )
    parser.add_argument(
        "--planted-examples",
        type=int,
        default=400,
        help="generated cases per op for the planted bugs (default: the release run's 400)",
    )
    parser.add_argument("--json", type=Path, default=Path("reports/calibration.json"))
    parser.add_argument(
        "--planted-json", type=Path, default=Path("reports/calibration-planted.json")
    )
    parser.add_argument("-n", "--workers", default="1")
    parser.add_argument("--summarize", type=Path, metavar="FILE.json", help="tables only")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(args.summarize)
        return 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    correct = run(
        [*available_builtins(), *ALTERNATIVES],
        ["tests.alternatives:BACKENDS"],
        args.max_examples,
        args.json,
        args.workers,
        shrink_groups=0,
    )
    planted = run(
        ["numpy-ref", *PLANTED],
        sorted(set(PLANTED.values())),
        args.planted_examples,
        args.planted_json,
        args.workers,
        shrink_groups=len(PLANTED) * 3,
    )
    summarize(args.json, ("correct",))
    summarize(args.planted_json, ("planted",))
    # The correct run must have no new failure; the planted run fails by design.
    return correct if planted == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
