"""Command line: ``python -m conformance {run,replay,backends,report}``.

Exit status: 0 when no backend failed a case (known failures excepted), 1 when one did, 2 for
bad arguments or files.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from conformance import diff as D
from conformance.backends import Backend, resolve
from conformance.case import OPS, Case, parse_id
from conformance.corpus import load_corpus
from conformance.diff import Tolerance
from conformance.dtypes import DTYPES
from conformance.generate import generated_cases
from conformance.isolation import DEFAULT_TIMEOUT, IsolatedBackend
from conformance.known_failures import KnownFailures
from conformance.results import RunResults, backend_entry, counts
from conformance.runner import Record, Runner

DEFAULT_SEED = 20261123


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _choices(kind: str, allowed: Sequence[str]):
    def parse(text: str) -> list[str]:
        items = _csv(text)
        bad = [i for i in items if i not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(bad)}; choose from {', '.join(allowed)}"
            )
        return items

    return parse


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backends", type=_csv, help="comma-separated backend names (default: all available)"
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="load extra backends (a Backend, a factory or a list); repeatable",
    )
    p.add_argument("--tf32", action="store_true", help="allow TF32 in torch-cuda (default: off)")
    p.add_argument(
        "--no-isolation",
        action="store_true",
        help="run backends in this process (faster; a crashing backend ends the run)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per case per isolated backend (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--tolerance-factor",
        type=float,
        default=1.0,
        help="c in the error bound c*u*terms*sum|x||w| (default 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Conformance harness for conv and conv_transpose kernels.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run generated and frozen cases on every available backend")
    run.add_argument(
        "--ops",
        type=_choices("op", list(OPS)),
        default=list(OPS),
        help=f"comma-separated ops (default: all: {', '.join(OPS)})",
    )
    run.add_argument(
        "--dtypes",
        type=_choices("dtype", DTYPES),
        default=list(DTYPES),
        help="comma-separated dtypes (default: float32,float16,bfloat16)",
    )
    run.add_argument(
        "--max-examples", type=int, default=100, help="valid cases generated per op (default 100)"
    )
    run.add_argument(
        "--invalid-examples",
        type=int,
        default=None,
        help="invalid cases generated per op (default: a quarter of --max-examples)",
    )
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generation seed")
    run.add_argument(
        "--corpus",
        type=_csv,
        default=None,
        help="frozen corpora from cases/*.toml to run (default: all)",
    )
    run.add_argument("--no-corpus", action="store_true", help="skip the frozen cases")
    run.add_argument("--json", type=Path, help="write the results JSON here")
    run.add_argument("--report", type=Path, help="write the HTML report here")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    _add_backend_options(run)

    replay = sub.add_parser("replay", help="run one case (by id) and print the full diff")
    replay.add_argument("case_id", help="a case id as printed by run or pytest")
    _add_backend_options(replay)

    backends = sub.add_parser("backends", help="list backends: available here or why not")
    backends.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR")

    report = sub.add_parser("report", help="render an HTML report from a results JSON")
    report.add_argument("results", type=Path)
    report.add_argument("-o", "--output", type=Path, required=True)
    report.add_argument("--baseline", type=Path, help="an older results JSON to compare against")
    return parser


def select_backends(args: argparse.Namespace) -> tuple[list[Backend], list[Backend]]:
    """(all requested backends, the available ones wrapped for isolation unless disabled)."""
    backends = resolve(args.backends, plugins=args.plugin, allow_tf32=args.tf32)
    available = [b for b in backends if b.availability.available]
    if args.backends:
        missing = [b for b in backends if not b.availability.available]
        for b in missing:
            print(f"warning: {b.name} is not available: {b.availability.detail}", file=sys.stderr)
    if not args.no_isolation:
        available = [
            IsolatedBackend(
                b, plugins=tuple(args.plugin), allow_tf32=args.tf32, timeout=args.timeout
            )
            for b in available
        ]
    return backends, available


class Progress:
    """One updating line on a terminal; a line per tenth of the run otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.done = self.failed = self.known = 0
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self._next_line = 0

    def update(self, case: Case, records: list[Record]) -> None:
        self.done += 1
        self.failed += sum(r.failed for r in records)
        self.known += sum(r.known_failure is not None for r in records)
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        text = (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {elapsed:6.1f}s "
            f"failed {self.failed}, known {self.known}  {case.op}"
        )
        if self.tty:
            print("\r" + text.ljust(78), end="", file=sys.stderr, flush=True)
        elif self.done >= self._next_line or self.done == self.total:
            print(text, file=sys.stderr, flush=True)
            self._next_line = self.done + max(1, self.total // 10)

    def finish(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def print_summary(records: list[Record], backends: list[Backend], out=sys.stdout) -> None:
    names = [b.name for b in backends if b.availability.available]
    table = counts(records)
    print("\nverdicts per op and backend (pass/fail/known/unsupported/rejected):", file=out)
    header = f"{'op':<18}" + "".join(f"{n:>22}" for n in names)
    print(header, file=out)
    for op in OPS:
        if not any((op, n) in table for n in names):
            continue
        row = f"{op:<18}"
        for n in names:
            cell = table.get((op, n), {})
            fail = sum(v for k, v in cell.items() if k in D.VERDICTS and D.is_failure(k))
            text = (
                f"{cell.get(D.PASS, 0)}/{fail}/{cell.get('known-failure', 0)}/"
                f"{cell.get(D.UNSUPPORTED, 0)}/{cell.get(D.BOTH_REJECTED, 0)}"
            )
            row += f"{text:>22}"
        print(row, file=out)
    unavailable = [b for b in backends if not b.availability.available]
    for b in unavailable:
        print(f"not available: {b.name}: {b.availability.detail}", file=out)
    fixed = [r for r in records if r.fixed]
    for r in fixed:
        print(f"FIXED (remove its known-failures entry): {r.case_id} on {r.backend}", file=out)
    failures = [r for r in records if r.failed]
    if failures:
        print(f"\n{len(failures)} failure(s); the first {min(len(failures), 10)}:", file=out)
        for r in failures[:10]:
            print(r.summary(), file=out)


def cmd_run(args: argparse.Namespace) -> int:
    backends, runnable = select_backends(args)
    invalid = args.max_examples // 4 if args.invalid_examples is None else args.invalid_examples
    cases: list[Case] = []
    if not args.no_corpus:
        cases += [
            f.case
            for f in load_corpus(args.corpus)
            if f.case.op in args.ops and f.case.dtype in args.dtypes
        ]
    cases += generated_cases(
        args.ops,
        args.dtypes,
        valid_per_op=args.max_examples,
        invalid_per_op=invalid,
        seed=args.seed,
    )
    runner = Runner(
        runnable, tolerance=Tolerance(args.tolerance_factor), known=KnownFailures.load()
    )
    print(
        f"running {len(cases)} cases on "
        f"{', '.join(b.name for b in runner.backends) or 'no backend'}"
        f" ({'isolated' if not args.no_isolation else 'in-process'})",
        file=sys.stderr,
    )
    progress = Progress(len(cases), args.quiet)
    records: list[Record] = []
    start = time.perf_counter()
    for case in cases:
        recs = runner.run_case(case)
        records += recs
        progress.update(case, recs)
    progress.finish()
    seconds = time.perf_counter() - start
    for b in runnable:
        if isinstance(b, IsolatedBackend):
            b.close()
    results = RunResults(
        settings={
            "command": "python -m conformance " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "profile": "cli",
            "max_examples": args.max_examples,
            "invalid_examples": invalid,
            "ops": args.ops,
            "dtypes": args.dtypes,
            "isolated": not args.no_isolation,
            "tolerance": {"factor": args.tolerance_factor, "accumulation": "float32"},
            "cases": len(cases),
            "seconds": round(seconds, 3),
        },
        backends=[backend_entry(b) for b in backends],
        records=records,
    )
    print_summary(records, backends)
    print(f"\n{len(cases)} cases, {len(records)} records in {seconds:.1f} s", file=sys.stdout)
    if args.json:
        results.write(args.json)
        print(f"results: {args.json}")
    if args.report:
        from conformance.report import write_report

        write_report(results, args.report)
        print(f"report: {args.report}")
    return 1 if any(r.failed for r in records) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    case = parse_id(args.case_id)
    backends, runnable = select_backends(args)
    runner = Runner(
        runnable, tolerance=Tolerance(args.tolerance_factor), known=KnownFailures.load()
    )
    print(f"case {case.id}")
    for key, value in case.to_dict().items():
        print(f"  {key:<15} {value}")
    records = runner.run_case(case)
    for b in runnable:
        if isinstance(b, IsolatedBackend):
            b.close()
    for r in records:
        print()
        print(r.summary())
        if r.metrics is not None and r.verdict == D.PASS:
            m = r.metrics
            print(
                f"  max abs err {m.max_abs_error:.3g}, max ulp {m.max_ulp}, "
                f"max err/bound {m.max_error_over_bound:.3g}"
            )
    for b in backends:
        if not b.availability.available:
            print(f"\nnot available: {b.name}: {b.availability.detail}")
    return 1 if any(r.failed for r in records) else 0


def cmd_backends(args: argparse.Namespace) -> int:
    for b in resolve(plugins=args.plugin):
        a = b.availability
        versions = ", ".join(f"{k} {v}" for k, v in a.versions.items())
        state = "available" if a.available else "not available"
        print(f"{b.name:<14} {state:<14} {a.detail}" + (f"  [{versions}]" if versions else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report import write_report

    results = RunResults.read(args.results)
    baseline = RunResults.read(args.baseline) if args.baseline else None
    path = write_report(results, args.output, baseline=baseline)
    print(f"report: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {
            "run": cmd_run,
            "replay": cmd_replay,
            "backends": cmd_backends,
            "report": cmd_report,
        }[args.command](args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
