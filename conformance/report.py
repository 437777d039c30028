"""The HTML conformance report: one self-contained file rendered from a results file.

:func:`render_report` gathers what to show (with :mod:`conformance.report_model`) and renders
``templates/report.html.j2`` with autoescaping on: every string from the results is escaped.
Styles and the small filter script are inlined; the page fetches nothing.

The page leads with the verdict banner (decision, backend chips, each failure group's inferred
rule from :mod:`conformance.rules`, coverage gaps, parameter regions no case exercised); the
first :data:`OPEN_GROUPS` failure groups are open, the rest one line each; the coverage table
(:mod:`conformance.coverage`), known failures, rejections, error paths and the case list are
collapsed summaries (the filter script opens what it filters); where the run ran comes last.

Size is bounded for runs of any length (10,000 records give about 2.5 MB, 5 MB at most):

* the case list has a row for every record that is not a pass, failures first, up to
  ``max_case_rows``, and a sample of ``max_passing_details`` passing records (spread over op,
  backend and dtype) with their details; other records are only counted in the matrix;
* full detail cards (parameters, metrics, worst element, heatmap) go to the smallest
  ``max_group_details`` cases of each failure group, ``max_failure_details`` in all; heatmaps
  stop at :data:`HEATMAP_CELL_BUDGET` cells;
* each failure or known-failure group lists up to :data:`MAX_GROUP_ROWS` more cases with their
  replay commands, :data:`GROUP_ROW_BUDGET` in all.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jinja2

from conformance import coverage, plots
from conformance import diff as D
from conformance import report_model as M
from conformance.merge import Machine, machine_differences
from conformance.messages import cap_text
from conformance.results import SCHEMA, RunResults, counts
from conformance.runner import Record

#: Size limits that keep a report of any run small (a few MB at most); see the module docstring.
#: Heatmap cells in one report (about 25 bytes each); later cards go without.
HEATMAP_CELL_BUDGET = 30_000
#: Rows (with a replay command, about 450 bytes) per failure or known-failure group, and in all.
MAX_GROUP_ROWS = 50
GROUP_ROW_BUDGET = 1500
#: Records listed per kind of change in the comparison.
MAX_CHANGES_LISTED = 300
#: Invalid cases listed where backends answered differently.
MAX_DISAGREEMENTS_LISTED = 200
#: Fewer compared records than this get no pictures (and the report skips matplotlib's cost).
PICTURE_MIN_RECORDS = 100
#: Cases listed whose verdict differs between merged machines.
MAX_DIFFERENCES_LISTED = 300
#: Lines of the coverage section on regions one backend ran no case of (others did).
MAX_BACKEND_GAPS_LISTED = 100
#: Failure groups listed (with their rules) in the verdict banner.
MAX_BANNER_GROUPS = 8
#: Failure groups shown open (the first, smallest card and the rule); the others are one line
#: each until opened or filtered to.
OPEN_GROUPS = 3


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conformance", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt_num
    env.filters["sec"] = _fmt_seconds
    # Messages as records store them now (capped), also for files written before the cap.
    env.filters["capped"] = lambda text: text if text is None else cap_text(str(text))
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}%"
    return env


def _fmt_num(value: object, digits: int = 3) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _fmt_seconds(value: object) -> str:
    if value is None:
        return "\u2013"
    v = float(value)  # type: ignore[arg-type]
    if v < 1e-3:
        return f"{v * 1e6:.0f} \u00b5s"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def _verdict_sort(v: str) -> int:
    return M.VERDICT_ORDER.index(v) if v in M.VERDICT_ORDER else len(M.VERDICT_ORDER)


def _row_order(r: Record) -> tuple[int, tuple[int, int, int, str]]:
    return (_verdict_sort(M.matrix_key(r)), M.case_size(r))


def _backend_names(results: RunResults) -> list[str]:
    names = [str(b["name"]) for b in results.backends]
    for r in results.records:
        if r.backend not in names:
            names.append(r.backend)
    return names


def _matrix(table, rows, backends) -> list[dict[str, object]]:
    """Rows of the summary matrix: each cell is a verdict -> count list in display order."""
    out = []
    for row_key in rows:
        cells = []
        for b in backends:
            cell = table.get((*row_key, b), {})
            items = sorted(cell.items(), key=lambda kv: _verdict_sort(kv[0]))
            worst = items[0][0] if items else None
            tone = "empty"
            if worst is not None:
                tone = (
                    "fail"
                    if D.VERDICTS.get(worst, False)
                    else ("known" if worst == M.KNOWN else ("pass" if worst == D.PASS else "skip"))
                )
            cells.append({"backend": b, "items": items, "tone": tone, "total": sum(cell.values())})
        out.append({"key": row_key, "cells": cells})
    return out


def _settings(settings: dict[str, object]) -> list[tuple[str, str]]:
    first = [k for k in ("seed", "profile") if k in settings]
    # Stage times get a table of their own.
    keys = first + [k for k in settings if k not in first and k != "stages"]
    out = []
    for k in keys:
        v = settings[k]
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(i) for i in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        out.append((k.replace("_", " "), str(v)))
    return out


def _environment_facts(env: dict[str, object], created: str) -> list[tuple[str, str]]:
    """(label, value) pairs for the header: host, then library versions, then the rest."""
    facts = [("created (UTC)", created)]
    for key in ("os", "machine", "cpu", "cpu_count", "gpu", "python"):
        if env.get(key) is not None:
            facts.append((key.replace("_", " "), str(env[key])))
    versions = env.get("versions")
    if isinstance(versions, dict):
        for name, version in versions.items():
            facts.append((str(name), "not installed" if version is None else str(version)))
    facts.append(("git commit", str(env.get("git_commit") or "unknown")))
    skip = {"os", "machine", "cpu", "cpu_count", "gpu", "python", "versions", "git_commit"}
    facts += [(k.replace("_", " "), str(v)) for k, v in env.items() if k not in skip]
    return facts


def _context(
    results: RunResults,
    baseline: RunResults | None,
    max_passing_details: int,
    max_group_details: int,
    max_failure_details: int,
    max_case_rows: int,
) -> dict[str, object]:
    records = results.records
    backends = _backend_names(results)
    ops = [op for op in M.OPS_ORDER if any(M.record_op(r) == op for r in records)]
    ops += sorted({M.record_op(r) for r in records} - set(ops))
    used_backends = [b for b in backends if any(r.backend == b for r in records)]

    anchors = {id(r): f"r{i}" for i, r in enumerate(records)}

    def anchor(r: Record) -> str:
        return anchors[id(r)]

    comparison = None
    changes: dict[tuple[str, str], M.Change] = {}
    if baseline is not None:
        comparison = M.compare_runs(records, baseline.records)
        changes = comparison.changes

    def change_of(r: Record) -> M.Change | None:
        return changes.get((r.case_id, r.backend))

    # Full detail cards for the smallest cases of each failure group, then rows (with replay
    # commands) for the next ones; both within a total budget.
    cards_left, rows_left = max_failure_details, GROUP_ROW_BUDGET
    failure_groups = []
    for g in M.group_failures(records, backends):
        cards = g.records[: max(0, min(max_group_details, cards_left))]
        rest = g.records[len(cards) :]
        rows = rest[: max(0, min(MAX_GROUP_ROWS, rows_left))]
        cards_left -= len(cards)
        rows_left -= len(rows)
        kinds = sorted({c.kind for r in g.records if (c := change_of(r)) is not None})
        failure_groups.append(
            {
                "group": g,
                "cards": cards,
                "rest": rest,
                "rows": rows,
                "changes": kinds,
                "rule": M.group_rule(g, records),
            }
        )
    detailed = {anchor(r) for fg in failure_groups for r in fg["cards"]}
    known_groups = []
    for g in M.group_known(records):
        rows = g.records[: max(0, min(MAX_GROUP_ROWS, rows_left))]
        rows_left -= len(rows)
        known_groups.append({"group": g, "rows": rows})

    # Details inline in the case list: a sample of passing records, the smallest known failures
    # of each reason, and fixed ones.
    passing = M.sample_passing(records, max_passing_details)
    inline = {anchor(r) for r in passing}
    inline |= {anchor(r) for g in known_groups for r in g["rows"][:max_group_details]}
    inline |= {anchor(r) for r in records if r.fixed}
    # Heatmaps within a cell budget: each group's smallest case first, then the other cards.
    cards = [fg["cards"] for fg in failure_groups]
    cards += [g["rows"][:max_group_details] for g in known_groups]
    order = [c[0] for c in cards if c] + [r for c in cards for r in c[1:]]
    heatmaps: dict[str, M.Heatmap] = {}
    cells_left = HEATMAP_CELL_BUDGET
    for r in order:
        hm = M.heatmap(r)
        if hm is not None and hm.cells <= cells_left:
            heatmaps[anchor(r)] = hm
            cells_left -= hm.cells

    listed = [
        r for r in records if r.verdict != D.PASS or anchor(r) in inline or change_of(r) is not None
    ]
    listed.sort(key=_row_order)
    unlisted = listed[max_case_rows:]
    listed = listed[:max_case_rows]

    dtypes_table = M.count_table(records, by_dtype=True)
    dtype_rows = sorted({k[:2] for k in dtypes_table}, key=lambda k: (ops.index(k[0]), k[1]))
    totals: dict[str, int] = {}
    for r in records:
        totals[M.matrix_key(r)] = totals.get(M.matrix_key(r), 0) + 1
    error_rules, disagreements = M.error_paths(records, used_backends)
    cov = coverage.coverage(records)
    backend_gaps = cov.backend_gaps()

    return {
        "title": "convcheck conformance report",
        "results": results,
        "baseline": baseline,
        "env_facts": _environment_facts(results.environment, results.created),
        "versions": dict(results.environment.get("versions") or {}),  # type: ignore[call-overload]
        "settings": _settings(results.settings),
        "stage_rows": M.stage_rows(results.settings),
        "chips": M.backend_chips(records, backends),
        "gaps": M.coverage_gaps(records, results.backends, results.settings, cov),
        "coverage": cov,
        "coverage_flagged": cov.flagged(),
        "coverage_gap_lines": coverage.gap_lines(cov),
        "coverage_backend_gaps": backend_gaps[:MAX_BACKEND_GAPS_LISTED],
        "n_coverage_backend_gaps": len(backend_gaps),
        "no_rule": M.NO_RULE,
        "backends": results.backends,
        "backend_names": used_backends,
        "matrix": _matrix(counts(records), [(op,) for op in ops], used_backends),
        "dtype_matrix": _matrix(dtypes_table, dtype_rows, used_backends),
        "totals": sorted(totals.items(), key=lambda kv: _verdict_sort(kv[0])),
        "n_records": len(records),
        "n_failures": sum(1 for r in records if r.failed),
        "n_known": sum(1 for r in records if r.known_failure and D.is_failure(r.verdict)),
        "n_fixed": sum(1 for r in records if r.fixed),
        "n_passing": sum(1 for r in records if r.verdict == D.PASS),
        "n_passing_listed": sum(1 for r in listed if r.verdict == D.PASS),
        "groups": failure_groups,
        "detailed": detailed,
        "inline_details": inline,
        "anchor": anchor,
        "known_groups": known_groups,
        "known_usage": results.known_failure_usage,
        "stale_entries": [u for u in results.known_failure_usage if u.get("stale")],
        "fixed": sorted((r for r in records if r.fixed), key=M.case_size),
        "unsupported": M.group_by_reason(records, D.UNSUPPORTED),
        "rejected": M.group_by_reason(records, D.BOTH_REJECTED),
        "too_large": M.group_by_reason(records, D.TOO_LARGE),
        "error_rules": error_rules,
        "disagreements": disagreements,
        "max_disagreements": MAX_DISAGREEMENTS_LISTED,
        "listed": listed,
        "n_unlisted": len(unlisted),
        "n_unlisted_failures": sum(1 for r in unlisted if r.failed),
        "timing": M.timing(records, backends),
        "slowest": M.slowest(records, 10),
        "comparison": comparison,
        "change_kinds": M.CHANGE_KINDS,
        "change_labels": M.CHANGE_LABELS,
        "change_of": change_of,
        "heat_buckets": M.HEAT_BUCKETS,
        "heatmaps": heatmaps,
        "params": M.case_params,
        "op_of": M.record_op,
        "dtype_of": M.record_dtype,
        "matrix_key": M.matrix_key,
        "max_listed_per_reason": 50,
        "max_banner_groups": MAX_BANNER_GROUPS,
        "open_groups": OPEN_GROUPS,
        "max_changes_listed": MAX_CHANGES_LISTED,
        "error_floor": M.ERROR_FLOOR,
        "schema": SCHEMA,
    }


def render_report(
    results: RunResults,
    baseline: RunResults | None = None,
    *,
    machines: list[Machine] | None = None,
    max_passing_details: int = 200,
    max_group_details: int = 3,
    max_failure_details: int = 200,
    max_case_rows: int = 5000,
) -> str:
    """The report as one self-contained HTML document (see the module docstring)."""
    ctx = _context(
        results,
        baseline,
        max_passing_details,
        max_group_details,
        max_failure_details,
        max_case_rows,
    )
    compared = sum(1 for r in results.records if r.metrics is not None)
    if compared < PICTURE_MIN_RECORDS:  # a histogram of a handful of records says nothing
        ctx["plots"] = {
            "missing": f"only {compared} compared records (pictures from "
            f"{PICTURE_MIN_RECORDS} on; the matrix has them all)"
        }
    else:
        ctx["plots"] = {
            "errors": plots.error_histogram(results.records, ctx["backend_names"]),
            "times": plots.time_per_backend(results.records, ctx["backend_names"]),
            "missing": plots.missing(),
        }
    ctx["machines"] = machines or []
    ctx["machine_differences"] = machine_differences(results.records) if machines else []
    ctx["max_differences"] = MAX_DIFFERENCES_LISTED
    return _environment().get_template("report.html.j2").render(ctx)


def write_report(
    results: RunResults,
    path: Path,
    baseline: RunResults | None = None,
    machines: list[Machine] | None = None,
) -> Path:
    """Render the report to ``path`` (UTF-8, parent folders created) and return the path;
    ``machines``: the runs a merged ``results`` came from (:mod:`conformance.merge`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_report(results, baseline, machines=machines), encoding="utf-8")
    tmp.replace(path)
    return path
