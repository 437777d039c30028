"""Command line: ``python -m conformance {run,replay,backends,report}``.

``run`` streams its records to a JSON Lines file as it goes (``--stream``, see
:mod:`conformance.stream`) and builds the results JSON and the report from it at the end; a run
that was killed or interrupted goes on with ``run --resume FILE.jsonl``.

Exit status (:data:`EXIT_PASS` and the others): 0 when every record passed or is a listed known
failure, 1 when some backend failed a case outside the known failures, 2 for bad arguments or
files and for a run that executed no case, 130 when interrupted (the stream keeps what was done).
The results JSON, the stream and the report are written before the exit status is decided.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from conformance import case_budget, coverage
from conformance import diff as D
from conformance import report_model as M
from conformance.backends import Backend, resolve
from conformance.case import ALL_OPS as OPS
from conformance.case import DIRECTIONS, Case, parse_id
from conformance.case import OPS as SIX_OPS
from conformance.corpus import load_corpus, parse_corpus
from conformance.dtypes import ALL_DTYPES, DTYPES
from conformance.filelock import RunLock
from conformance.generate import generated_cases
from conformance.isolation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, TimeBudget
from conformance.known_failures import EntryUsage, KnownFailures, usage_lines
from conformance.layouts import LAYOUTS
from conformance.merge import merge_runs, parse_sources
from conformance.parallel import (
    RunSpec,
    WorkerError,
    WorkerPool,
    close_runner,
    parse_workers,
    start_isolated,
)
from conformance.regressions import load_regressions, save_regression
from conformance.results import backend_entry, counts
from conformance.runner import Record, Runner
from conformance.shrink import shrink
from conformance.stream import StreamContents, StreamWriter, read_results, read_stream
from conformance.timing import StageTimes, throughput_table

#: Exit statuses of ``run`` (and ``replay``), stated in README.md.
EXIT_PASS = 0  # every record passed or is a listed known failure
EXIT_FAILURES = 1  # some record failed outside the known failures
EXIT_ERROR = 2  # bad arguments or files, or a run that executed no case
EXIT_INTERRUPTED = 130  # interrupted; the stream keeps what was done

DEFAULT_SEED = 20261123
DEFAULT_MAX_EXAMPLES = 100
DEFAULT_STREAM = Path("reports/results.jsonl")
#: New failure groups the run shrinks (``--shrink-groups``), and the steps each may take: a
#: budget in steps, not seconds, so that the same run records the same shrunk cases anywhere.
DEFAULT_SHRINK_GROUPS = 10
SHRINK_STEPS = 100


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


def _count(option: str):
    """An argparse type: an integer >= 0, or an error naming ``option``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{option} must be >= 0, got {value}")
        return value

    return parse


def _workers(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        action="append",
        default=[],
        metavar="[BACKEND=]SECONDS",
        help="time budget of one case on an isolated backend; over it, the verdict is timeout "
        f"and the run goes on. SECONDS for every backend (default {DEFAULT_TIMEOUT:g}), "
        "BACKEND=SECONDS for one (e.g. --timeout mlx-cpu=600); repeatable",
    )
    p.add_argument(
        "--worker-memory-mb",
        type=_count("--worker-memory-mb"),
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help="memory limit of each isolated backend's worker process in MiB; allocating past it "
        f"is verdict crashed (default {DEFAULT_MEMORY_MB}; 0: no limit); a limit too small to "
        "start a backend's worker is an error",
    )
    p.add_argument(
        "--max-case-memory-mb",
        type=_count("--max-case-memory-mb"),
        default=None,
        metavar="MB",
        help="a case estimated to need more memory than this (inputs, outputs, the reference's "
        "temporaries) is not run: verdict too-large (default: a quarter of this machine's "
        "memory; 0: no cap)",
    )
    p.add_argument(
        "--tolerance-factor",
        type=float,
        default=None,
        help="c in the error bound c*u*terms*sum|x||w| (default 1)",
    )
    p.add_argument(
        "--proven-bound-only",
        action="store_true",
        default=None,  # None: not given (--resume takes the stream's)
        help="judge by the proven error bound alone: no statistical precision tier "
        "(precision-mismatch); for Winograd/FFT-style kernels whose rounding is outside its "
        "model",
    )


def _add_case_options(p: argparse.ArgumentParser) -> None:
    """The options that decide which cases a run runs (``run`` and ``cases``)."""
    # They default to None, so that --resume can tell the ones given (which must match the
    # stream) from the ones to take from the stream.
    p.add_argument(
        "--ops",
        type=_choices("op", list(OPS)),
        default=None,
        help=f"comma-separated ops (default: all: {', '.join(OPS)})",
    )
    p.add_argument(
        "--dtypes",
        type=_choices("dtype", ALL_DTYPES),
        default=None,
        help="comma-separated dtypes (default: float32,float16,bfloat16; float64 when asked, "
        "checked on the backends that compute it: torch-*, numpy-ref)",
    )
    p.add_argument(
        "--dirs",
        type=_choices("direction", list(DIRECTIONS)),
        default=None,
        help="comma-separated directions generated cases draw from: fwd (the output), bwd_d "
        "(the input's gradient), bwd_w (the weight's and bias's) (default: all three)",
    )
    p.add_argument(
        "--layouts",
        type=_choices("layout", list(LAYOUTS)),
        default=None,
        help="comma-separated input layouts generated cases draw from: contiguous, strided (a "
        "slice of a larger array), permuted (last two axes swapped in memory), expanded (a "
        "stride-0 batch), unbatched (no batch axis) (default: all; a backend that does not "
        "take one reports its cases unsupported)",
    )
    p.add_argument(
        "--max-examples",
        type=_count("--max-examples"),
        default=None,
        help=f"valid cases generated per op (default {DEFAULT_MAX_EXAMPLES})",
    )
    p.add_argument(
        "--invalid-examples",
        type=_count("--invalid-examples"),
        default=None,
        help="invalid cases generated per op (default: a quarter of --max-examples)",
    )
    p.add_argument(
        "--seed",
        type=_count("--seed"),
        default=None,
        help=f"generation seed, an integer >= 0 (default {DEFAULT_SEED}); the same seed and "
        "options give the same cases on every machine",
    )
    p.add_argument(
        "--corpus",
        type=_csv,
        default=None,
        help="frozen corpora from cases/*.toml to run (default: all)",
    )
    p.add_argument(
        "--no-corpus",
        action="store_true",
        help="skip the frozen cases and saved regressions under cases/",
    )
    p.add_argument(
        "--cases",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.toml",
        help="also run the cases in this file (the format of cases/*.toml); repeatable; "
        "with --no-corpus --max-examples 0, only these",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Conformance harness for conv and conv_transpose kernels.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run generated and frozen cases on every available backend")
    _add_case_options(run)
    run.add_argument(
        "--save-failures",
        action="store_true",
        help="shrink each new failure and save it to cases/regressions/<backend>.toml",
    )
    run.add_argument("--json", type=Path, help="write the results JSON here")
    run.add_argument(
        "--stream",
        type=Path,
        help="stream records to this JSON Lines file as they come (default: beside --json "
        f"with the suffix .jsonl, else {DEFAULT_STREAM})",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="FILE.jsonl",
        help="go on with the run streamed to this file: skip what it holds, append the rest; "
        "options left out are taken from its header, options given must match it",
    )
    run.add_argument("--report", type=Path, help="write the HTML report here")
    run.add_argument(
        "-n",
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="run cases in N worker processes ('auto': one per CPU, at most 8); same records "
        "and report as a serial run (default 1: in this process)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    run.add_argument(
        "--shrink-groups",
        type=_count("--shrink-groups"),
        default=DEFAULT_SHRINK_GROUPS,
        metavar="N",
        help="after the run, shrink the smallest case of the first N new failure groups (at "
        f"most {SHRINK_STEPS} steps each); a smaller case that fails the same way is recorded "
        f"and leads its group (default {DEFAULT_SHRINK_GROUPS}; 0: off)",
    )
    run.add_argument(
        "--backend-examples",
        type=case_budget.parse_backend_examples,
        action="append",
        default=None,
        metavar="BACKEND=N",
        help="run only the first N generated valid cases per op (and the same share of invalid "
        "ones) on BACKEND; frozen cases always run; repeatable (default: "
        + ", ".join(f"{k}={v}" for k, v in case_budget.DEFAULT_BACKEND_EXAMPLES.items())
        + ": XLA compiles every case)",
    )
    _add_backend_options(run)

    listing = sub.add_parser(
        "cases",
        help="print the ids of the cases `run` would run with the same options, one per line",
    )
    _add_case_options(listing)

    replay = sub.add_parser("replay", help="run one case (by id) and print the full diff")
    replay.add_argument("case_id", help="a case id as printed by run or pytest")
    _add_backend_options(replay)

    backends = sub.add_parser("backends", help="list backends: available here or why not")
    backends.add_argument("--plugin", action="append", default=[], metavar="MODULE:ATTR")

    report = sub.add_parser(
        "report", help="render an HTML report from a results JSON or a results stream (.jsonl)"
    )
    report.add_argument(
        "results",
        nargs="+",
        metavar="[LABEL=]RESULTS",
        help="results JSON or stream (.jsonl); several (e.g. ci=cpu.json h200=gpu.json) merge "
        "into one report with a column per machine and backend (label: the file's stem unless "
        "given)",
    )
    report.add_argument("-o", "--output", type=Path, required=True)
    report.add_argument(
        "--baseline", type=Path, help="an older results JSON or stream to compare against"
    )
    return parser


def run_spec(args: argparse.Namespace) -> RunSpec:
    """How to build this run's runner, from the backend options (names are checked)."""
    budget = TimeBudget.parse(args.timeout)
    if budget.per_backend:
        known = {b.name for b in resolve(plugins=args.plugin)}
        unknown = [n for n, _ in budget.per_backend if n not in known]
        if unknown:
            raise ValueError(
                f"--timeout: unknown backend {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
    return RunSpec(
        backends=tuple(args.backends) if args.backends else None,
        plugins=tuple(args.plugin),
        allow_tf32=args.tf32,
        isolate=not args.no_isolation,
        budget=budget,
        memory_mb=args.worker_memory_mb,
        tolerance_factor=args.tolerance_factor,
        tolerance_statistical=not args.proven_bound_only,
        max_case_memory_mb=args.max_case_memory_mb,
    )


def select_backends(spec: RunSpec) -> list[Backend]:
    """All requested backends (available or not), warning about requested unavailable ones."""
    backends = spec.resolve()
    if spec.backends:
        for b in backends:
            if not b.availability.available:
                print(
                    f"warning: {b.name} is not available: {b.availability.detail}",
                    file=sys.stderr,
                )
    return backends


class NothingToRun(ValueError):
    """The run would execute no case: an error (exit 2), never a pass."""


NO_CASE = (
    "these options select no case (--max-examples 0 with --no-corpus, or --ops/--dtypes that "
    "nothing matches)"
)


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


def print_summary(records: list[Record], backends: list[Backend], out=None) -> None:
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
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
    too_large = sorted({r.case_id: r for r in records if r.verdict == D.TOO_LARGE}.items())
    for case_id, r in too_large[:10]:
        print(f"too large to run here: {case_id}: {r.detail}", file=out)
    if len(too_large) > 10:
        print(f"too large to run here: {len(too_large) - 10} more case(s)", file=out)
    fixed = [r for r in records if r.fixed]
    for r in fixed:
        print(
            f"FIXED (was a known failure or saved regression): {r.case_id} on {r.backend}", file=out
        )
    for line in coverage.summary_lines(records):
        print(line, file=out)
    print_failure_groups(records, [b.name for b in backends], out)


#: Failure groups the CLI summary shows (each with its rule and its smallest case).
MAX_GROUPS_SHOWN = 10


def print_failure_groups(records: list[Record], backend_order: list[str], out=None) -> None:
    """New failures by group (op, backend, verdict, cause), each with the rule inferred over the
    run (:mod:`conformance.rules`) and its smallest case in full, replay command included."""
    out = out or sys.stdout
    failures = [r for r in records if r.failed]
    if not failures:
        return
    groups = M.group_failures(failures, backend_order)
    shown = groups[:MAX_GROUPS_SHOWN]
    print(
        f"\n{len(failures)} failure(s) in {len(groups)} group(s); the first {len(shown)}, "
        "each with its smallest case:",
        file=out,
    )
    for g in shown:
        key = g.key
        rule = M.group_rule(g, records)
        print(
            f"\n[{key.verdict}] {key.op} on {key.backend}: {key.cause} ({g.count} case(s))",
            file=out,
        )
        print(f"  rule: {rule if rule is not None else M.NO_RULE}", file=out)
        print(g.records[0].summary(), file=out)
    if len(groups) > len(shown):
        print(f"\nand {len(groups) - len(shown)} more group(s): see the report", file=out)


def print_known_usage(usage: list[EntryUsage], out=None) -> None:
    """How many records the known-failures entries matched, and the stale ones."""
    for line in usage_lines(usage):
        print(line, file=out or sys.stdout)


def _corpus_setting(args: argparse.Namespace) -> object:
    return "none" if args.no_corpus else (list(args.corpus) if args.corpus else "all")


def _same_path(a: object, b: object) -> bool:
    return Path(str(a)).resolve() == Path(str(b)).resolve()


def apply_resume(args: argparse.Namespace, settings: dict[str, object], source: Path) -> None:
    """Take the options left out from the stream's header; fail if a given one differs."""

    def stored(key: str) -> object:
        if key not in settings:
            raise ValueError(f"{source}:1: header settings lack field '{key}'; cannot resume")
        return settings[key]

    differ: list[str] = []

    def check(name: str, given: object, in_stream: object, same=lambda a, b: a == b) -> None:
        if not same(given, in_stream):
            differ.append(f"{name}: {_show(given)} here, {_show(in_stream)} in the stream")

    for attr, key in (
        ("seed", "seed"),
        ("ops", "ops"),
        ("dtypes", "dtypes"),
        ("max_examples", "max_examples"),
        ("invalid_examples", "invalid_examples"),
    ):
        if getattr(args, attr) is None:
            setattr(args, attr, stored(key))
        else:
            check(f"--{attr.replace('_', '-')}", getattr(args, attr), stored(key))
    # Streams written before directions existed ran forward cases only.
    dirs = settings.get("dirs", ["fwd"])
    if args.dirs is None:
        args.dirs = dirs
    else:
        check("--dirs", args.dirs, dirs)
    # ... and before layouts existed, contiguous inputs only.
    layouts = settings.get("layouts", ["contiguous"])
    if args.layouts is None:
        args.layouts = layouts
    else:
        check("--layouts", args.layouts, layouts)
    corpus = stored("corpus")
    if args.no_corpus or args.corpus:
        check("--corpus/--no-corpus", _corpus_setting(args), corpus)
    else:
        args.no_corpus = corpus == "none"
        args.corpus = corpus if isinstance(corpus, list) else None
    files = stored("case_files")
    if args.cases:
        check(
            "--cases",
            [str(p) for p in args.cases],
            files,
            lambda a, b: len(a) == len(b) and all(map(_same_path, a, b)),
        )
    else:
        args.cases = [Path(str(p)) for p in files]  # type: ignore[union-attr]
    requested = stored("backends")
    if args.backends is None:
        args.backends = requested if isinstance(requested, list) else None
    else:
        check("--backends", args.backends, requested)
    if not args.plugin:
        args.plugin = list(stored("plugins"))  # type: ignore[call-overload]
    else:
        check("--plugin", args.plugin, stored("plugins"))
    in_stream = settings.get("backend_examples", {})
    if args.backend_examples is None:
        # The stream's binding budgets, and no default for the others: the same todo list.
        args.backend_examples = list(in_stream.items()) + [  # type: ignore[union-attr]
            (n, 10**9) for n in case_budget.DEFAULT_BACKEND_EXAMPLES if n not in in_stream
        ]
    tolerance = stored("tolerance")
    factor = tolerance.get("factor") if isinstance(tolerance, dict) else tolerance
    if args.tolerance_factor is None:
        args.tolerance_factor = factor
    else:
        check("--tolerance-factor", args.tolerance_factor, factor)
    # A stream from before the statistical tier has no "statistical": the default, on.
    statistical = tolerance.get("statistical", True) if isinstance(tolerance, dict) else True
    if not isinstance(statistical, bool):
        raise ValueError(
            f"{source}:1: header settings.tolerance.statistical has the wrong type "
            f"({type(statistical).__name__}); cannot resume"
        )
    if args.proven_bound_only is None:
        args.proven_bound_only = not statistical
    elif args.proven_bound_only and statistical:
        differ.append(
            "--proven-bound-only: given here, not in the stream (its records were judged with "
            "the statistical precision tier)"
        )
    if differ:
        raise ValueError(
            f"--resume {source}: these options differ from the stream's header: "
            + "; ".join(differ)
            + ". Give the same options, or leave them out to take the stream's."
        )


def _show(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


def frozen_cases(args: argparse.Namespace) -> list[Case]:
    """Saved regressions first, then frozen cases and case files; filtered by op and dtype."""
    frozen = [] if args.no_corpus else [r.case for r in load_regressions()]
    frozen += [] if args.no_corpus else [f.case for f in load_corpus(args.corpus)]
    for path in args.cases:
        frozen += [f.case for f in parse_corpus(path)]
    return [
        c
        for c in frozen
        if c.op in args.ops
        and c.dtype in args.dtypes
        and c.direction in args.dirs
        and c.layout in args.layouts
    ]


def run_generated_cases(args: argparse.Namespace) -> list[Case]:
    return generated_cases(
        args.ops,
        args.dtypes,
        valid_per_op=args.max_examples,
        invalid_per_op=args.invalid_examples,
        seed=args.seed,
        directions=args.dirs,
        layouts=args.layouts,
    )


def collect_cases(frozen: list[Case], generated: list[Case]) -> list[Case]:
    """The run's list: the frozen cases (:func:`frozen_cases`) then the generated ones, each id
    once."""
    cases = frozen + generated
    return list({c.id: c for c in reversed(cases)}.values())[::-1]


def budget_left_out(
    args: argparse.Namespace, binding: dict[str, int], generated: list[Case], frozen: list[Case]
) -> dict[str, set[str]]:
    """Per backend with a binding budget (:mod:`conformance.case_budget`), the ids of the run's
    ``generated`` cases it does not run (never a ``frozen`` one)."""
    frozen_ids = {c.id for c in frozen}
    return {
        name: case_budget.left_out(
            generated,
            frozen_ids,
            args.ops,
            args.dtypes,
            budget=n,
            max_examples=args.max_examples,
            invalid_examples=args.invalid_examples,
            seed=args.seed,
            directions=args.dirs,
            layouts=args.layouts,
        )
        for name, n in binding.items()
    }


def _fill_case_defaults(args: argparse.Namespace) -> None:
    """The defaults of the case options left out (after --resume took the stream's)."""
    args.seed = DEFAULT_SEED if args.seed is None else args.seed
    args.ops = list(OPS) if args.ops is None else args.ops
    args.dtypes = list(DTYPES) if args.dtypes is None else args.dtypes
    args.dirs = list(DIRECTIONS) if args.dirs is None else args.dirs
    args.layouts = list(LAYOUTS) if args.layouts is None else args.layouts
    if args.max_examples is None:
        args.max_examples = DEFAULT_MAX_EXAMPLES
    if args.invalid_examples is None:
        args.invalid_examples = args.max_examples // 4


def cmd_cases(args: argparse.Namespace) -> int:
    _fill_case_defaults(args)
    cases = collect_cases(frozen_cases(args), run_generated_cases(args))
    if not cases:
        raise NothingToRun(NO_CASE)
    for case in cases:
        print(case.id)
    return 0


def shrink_groups(runner: Runner, records: list[Record], max_groups: int) -> list[Record]:
    """Shrink the smallest case of the first ``max_groups`` new failure groups (report order,
    :data:`SHRINK_STEPS` steps each). Crashes and timeouts are left to ``--save-failures``: a
    step could cost a worker restart or the whole timeout. A smaller case that fails the same
    way (verdict and cause) becomes a record with ``shrunk_from`` set, which then leads its
    group in the summary and the report."""
    by_name = {b.name: b for b in runner.backends}
    have = {(r.case_id, r.backend) for r in records}
    out: list[Record] = []
    groups = [
        g
        for g in M.group_failures(records, list(by_name))
        if g.records[0].verdict not in (D.TIMEOUT, D.CRASHED) and g.records[0].backend in by_name
    ]
    for group in groups[:max_groups]:
        first = group.records[0]
        if first.shrunk_from is not None:  # already shrunk (a resumed run)
            continue
        try:
            case = parse_id(first.case_id)
        except ValueError:  # a plugin's own id: nothing to shrink
            continue
        backend = by_name[first.backend]
        want = M.signature(first)

        def fails_the_same_way(candidate: Case, backend=backend, want=want) -> bool:
            (rec,) = runner.run_case(candidate, [backend])
            return rec.failed and M.signature(rec) == want

        small = shrink(case, fails_the_same_way, max_steps=SHRINK_STEPS)
        if small.id == case.id or (small.id, first.backend) in have:
            continue
        (rec,) = runner.run_case(small, [backend])
        if rec.failed and M.signature(rec) == want:
            out.append(replace(rec, shrunk_from=first.case_id))
            have.add((small.id, first.backend))
    return out


def save_failures(runner: Runner, records: list[Record]) -> None:
    """Shrink each new failure on its backend and append it to cases/regressions/."""
    by_name = {b.name: b for b in runner.backends}
    saved: set[tuple[str, str]] = set()
    for rec in records:
        backend = by_name.get(rec.backend)
        if not rec.failed or backend is None:
            continue

        def still_fails(candidate: Case, backend=backend, verdict=rec.verdict) -> bool:
            return runner.run_case(candidate, [backend])[0].verdict == verdict

        small = shrink(parse_id(rec.case_id), still_fails)
        if (small.id, rec.backend) in saved:
            continue
        (small_rec,) = runner.run_case(small, [backend])
        versions = ", ".join(f"{k} {v}" for k, v in backend.availability.versions.items())
        if small_rec.failed and save_regression(small_rec, versions):
            print(f"saved regression: {small.id} on {rec.backend} (from {rec.case_id})")
        saved.add((small.id, rec.backend))


def _stream_path(args: argparse.Namespace) -> Path:
    if args.resume is not None:
        if args.stream is not None and not _same_path(args.stream, args.resume):
            raise ValueError(
                "--resume FILE is the stream; give --stream the same file or no --stream"
            )
        return args.resume
    if args.stream is not None:
        path = args.stream
    elif args.json is not None:
        path = args.json.with_suffix(".jsonl")
    else:
        path = DEFAULT_STREAM
    if args.json is not None and _same_path(path, args.json):
        raise ValueError(f"--json and --stream must be different files ({path})")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    """``run``, holding the lock of the stream and the results JSON (:mod:`conformance.filelock`):
    a second run on the same files is refused instead of interleaving with this one."""
    command = "python -m conformance " + " ".join(sys.argv[1:])
    stream_path = _stream_path(args)
    with ExitStack() as locks:
        locks.enter_context(RunLock(stream_path, "--stream", command))
        if args.json is not None:
            locks.enter_context(RunLock(args.json, "--json", command))
        return _run(args, command, stream_path, locks)


def _run(args: argparse.Namespace, command: str, stream_path: Path, exits: ExitStack) -> int:
    """The run; ``exits`` closes what it leaves open on an error (the early workers)."""
    previous: StreamContents | None = None
    if args.resume is not None:
        previous = read_stream(args.resume)
        apply_resume(args, previous.settings, args.resume)
        if previous.truncated_line is not None:
            print(f"warning: {previous.warnings[0]}; cut off before appending", file=sys.stderr)
    _fill_case_defaults(args)
    if args.tolerance_factor is None:
        args.tolerance_factor = 1.0
    if args.proven_bound_only is None:
        args.proven_bound_only = False
    if args.backend_examples is None:
        args.backend_examples = []

    regressions = [] if args.no_corpus else load_regressions()
    spec = replace(
        run_spec(args), regressions=frozenset((r.case.id, r.backend) for r in regressions)
    )
    backends = select_backends(spec)
    runner = _early_runner(args, spec, backends, exits)
    frozen, generated = frozen_cases(args), run_generated_cases(args)
    cases = collect_cases(frozen, generated)
    names = [b.name for b in backends if b.availability.available]
    if not cases:
        raise NothingToRun(NO_CASE + "; a run that executes no case is not a pass")
    if not names:
        raise NothingToRun(
            "no backend is available to run the cases on; "
            "see `python -m conformance backends` for why"
        )
    done: set[tuple[str, str]] = set()
    if previous is not None:
        was = [str(b["name"]) for b in previous.header["backends"] if b["available"]]  # type: ignore[attr-defined,index]
        if was != names:
            raise ValueError(
                f"--resume {args.resume}: the stream's run had the backends "
                f"{_show(was)} available, this one has {_show(names)}"
            )
        done = previous.done
        ids = {c.id for c in cases}
        stale = {r.case_id for r in previous.records if r.shrunk_from is None} - ids
        if stale or previous.settings.get("cases") != len(cases):
            print(
                f"warning: the case list differs from the stream's ({len(cases)} cases here, "
                f"{previous.settings.get('cases')} in the stream; {len(stale)} case(s) in the "
                "stream are not in this list): a different Hypothesis version or cases/ files?",
                file=sys.stderr,
            )
    binding = case_budget.budgets(args.backend_examples, names, args.max_examples)
    skip = budget_left_out(args, binding, generated, frozen)
    todo = [
        (c, [n for n in names if (c.id, n) not in done and c.id not in skip.get(n, ())])
        for c in cases
    ]
    todo = [(c, ns) for c, ns in todo if ns]
    mode = "isolated" if not args.no_isolation else "in-process"
    if args.workers > 1:
        mode += f", {args.workers} workers"
    print(
        f"running {len(todo)} of {len(cases)} cases on {', '.join(names) or 'no backend'} "
        f"({mode}); stream: {stream_path}",
        file=sys.stderr,
    )
    for line in case_budget.describe(
        binding, {n: len(ids) for n, ids in skip.items()}, args.max_examples
    ):
        print(line, file=sys.stderr)
    if previous is not None:
        print(
            f"resuming {stream_path}: {len(previous.records)} record(s) already there",
            file=sys.stderr,
        )
        writer = StreamWriter.resume(previous, command)
    else:
        settings = {
            "command": command,
            "seed": args.seed,
            "profile": "cli",
            "max_examples": args.max_examples,
            "invalid_examples": args.invalid_examples,
            "backend_examples": binding,
            "ops": args.ops,
            "dtypes": args.dtypes,
            "dirs": args.dirs,
            "layouts": args.layouts,
            "corpus": _corpus_setting(args),
            "case_files": [str(p) for p in args.cases],
            "backends": args.backends or "all",
            "plugins": list(args.plugin),
            "isolated": not args.no_isolation,
            "workers": args.workers,
            "timeout": spec.budget.default,
            "timeout_per_backend": dict(spec.budget.per_backend),
            "worker_memory_mb": args.worker_memory_mb,
            "max_case_memory_mb": args.max_case_memory_mb,
            "tolerance": {
                "factor": args.tolerance_factor,
                "accumulation": "float32",
                "statistical": not args.proven_bound_only,
            },
            "shrink_groups": args.shrink_groups,
            "cases": len(cases),
        }
        writer = StreamWriter.create(
            stream_path, settings=settings, backends=[backend_entry(b) for b in backends]
        )
    progress = Progress(len(todo), args.quiet)
    start = time.perf_counter()
    times = StageTimes()
    pool: WorkerPool | None = None
    try:
        if args.workers > 1 and todo:
            pool = WorkerPool(spec, args.workers)
            outcomes = pool.run(todo)
        else:
            if runner is None:
                runner = spec.runner(backends)
                start_isolated(runner, {n for _, ns in todo for n in ns})
            outcomes = _run_serial(runner, todo)
        failing = previous is not None and any(r.failed for r in previous.records)
        for case, recs, case_times in outcomes:
            times.merge(case_times)
            writer.write_records(recs)
            progress.update(case, recs)
            failing = failing or any(r.failed for r in recs)
        if args.shrink_groups > 0 and failing:
            so_far = read_stream(stream_path).results.records
            if runner is None:
                runner = spec.runner(backends)
            with times.stage("shrink"):
                shrunk = shrink_groups(runner, so_far, args.shrink_groups)
            writer.write_records(shrunk)
            for r in shrunk:
                print(f"shrunk: {r.shrunk_from} -> {r.case_id} on {r.backend}", file=sys.stderr)
        seconds = time.perf_counter() - start
        writer.end(seconds, stages=times.to_dict())
        if args.save_failures:
            if runner is None:
                runner = spec.runner(backends)
            save_failures(runner, read_stream(stream_path).results.records)
    except KeyboardInterrupt:
        progress.finish()
        print(
            f"\ninterrupted: {writer.written} record(s) of this run are in {stream_path}; "
            f"go on with: python -m conformance run --resume {stream_path}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        writer.close()
        if pool is not None:
            pool.close()
        if runner is not None:
            close_runner(runner)
    progress.finish()

    results = read_stream(stream_path).results
    records = results.records
    usage = KnownFailures.load().usage(records)
    results.known_failure_usage = [u.to_dict() for u in usage]
    print_summary(records, backends)
    print_known_usage(usage)
    print(
        f"\n{len(cases)} cases, {len(records)} records ({writer.written} run now) "
        f"in {seconds:.1f} s",
        file=sys.stdout,
    )
    print(f"stream: {stream_path}")
    if args.json:
        with times.stage("results"):
            results.write(args.json)
        print(f"results: {args.json}")
    if args.report:
        from conformance.report import write_report

        with times.stage("report"):
            write_report(results, args.report)
        print(f"report: {args.report}")
    if times.seconds and not args.quiet:
        print("\nwhere the time went (this part of the run):")
        for line in throughput_table(times, wall_seconds=seconds):
            print(f"  {line}")
    return EXIT_FAILURES if any(r.failed for r in records) else EXIT_PASS


def _early_runner(
    args: argparse.Namespace, spec: RunSpec, backends: list[Backend], exits: ExitStack
) -> Runner | None:
    """A new serial run's runner, its isolated workers started at once: they load their
    libraries (PyTorch: seconds) while the cases are drawn. None for a resumed run (it starts
    only the workers it still needs, later) and for a parallel one (its pool has its own)."""
    if args.workers > 1 or args.resume is not None:
        return None
    runner = spec.runner(backends)
    exits.callback(close_runner, runner)
    start_isolated(runner)
    return runner


def _run_serial(
    runner: Runner, todo: list[tuple[Case, list[str]]]
) -> Iterator[tuple[Case, list[Record], StageTimes]]:
    """The cases in this process, pipelined (:meth:`Runner.run_cases`)."""
    return runner.run_cases(todo)


def cmd_replay(args: argparse.Namespace) -> int:
    case = parse_id(args.case_id)
    if args.tolerance_factor is None:
        args.tolerance_factor = 1.0
    if args.proven_bound_only is None:
        args.proven_bound_only = False
    spec = run_spec(args)
    backends = select_backends(spec)
    runner = spec.runner(backends)
    print(f"case {case.id}")
    for key, value in case.to_dict().items():
        print(f"  {key:<15} {value}")
    try:
        records = runner.run_case(case)
    finally:
        close_runner(runner)
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
    backends = resolve(plugins=args.plugin)
    width = max(len(b.name) for b in backends)
    for b in backends:
        a = b.availability
        versions = ", ".join(f"{k} {v}" for k, v in a.versions.items())
        state = "available" if a.available else "not available"
        line = f"{b.name:<{width}}  {state:<14} {a.detail}"
        print(line + (f"  [{versions}]" if versions else ""))
        print(f"{'':<{width}}  {b.description}")
        print(f"{'':<{width}}  runs: {_runs(b)}")
    return 0


def _runs(backend: Backend) -> str:
    """What a backend computes, in one line: its ops, directions, input layouts and padding
    modes."""
    general = [op for op in backend.ops if op not in SIX_OPS]
    ops = "the six conv ops" + (f" and {', '.join(general)}" if general else "")
    if not set(SIX_OPS) <= set(backend.ops):
        ops = ", ".join(backend.ops)
    return (
        f"{ops}; directions {', '.join(backend.directions)}; layouts {', '.join(backend.layouts)}"
        f"; padding {', '.join(backend.padding_modes)}"
    )


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report import write_report

    sources = parse_sources(args.results)
    if len(sources) > 1 and args.baseline:
        raise ValueError("report: --baseline compares one run with another; give one results file")
    warnings: list[str] = []
    runs = []
    for label, source in sources:
        run, more = read_results(source)
        runs.append((label, run))
        warnings += [f"{source}: {w}" for w in more]
    machines = None
    if len(runs) == 1:
        results = runs[0][1]
    else:
        results, machines = merge_runs(runs)
    baseline = None
    if args.baseline:
        baseline, more = read_results(args.baseline)
        warnings += more
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    path = write_report(results, args.output, baseline=baseline, machines=machines)
    print(f"report: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Before any backend loads OpenMP: with --no-isolation, torch's spinning OpenMP threads take
    # the cores from MLX and NumPy, and from other processes (torch-cpu 10x slower per case on
    # a loaded 2-core machine). Isolated workers set the same (conformance/isolation.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        return {
            "run": cmd_run,
            "cases": cmd_cases,
            "replay": cmd_replay,
            "backends": cmd_backends,
            "report": cmd_report,
        }[args.command](args)
    except (ValueError, WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
