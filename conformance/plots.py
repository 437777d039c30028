"""The report's pictures, drawn with matplotlib into inline SVG (the page stays one file).

* :func:`error_histogram` -- how close each backend runs to the error bound: per dtype, a
  histogram of max |err| / bound over the records that were compared (log scale; exact results
  in the first bin, failures past the line at 1);
* :func:`time_per_backend` -- seconds per case on each backend (box plot, log scale; whiskers
  at the 1st and 99th percentiles).

matplotlib is the ``plots`` extra (installed by the nox sessions); without it the report says
so where the pictures would be, with :func:`missing`'s reason. The SVG is deterministic:
no date, a fixed hash salt, text kept as text (``svg.fonttype = none``, which also keeps it
small).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from conformance.dtypes import DTYPES
from conformance.report_model import record_dtype
from conformance.runner import Record

#: Bin edges of log10(max |err| / bound); values below the first edge (exact) go to bin 0.
LOG_EDGES = [x / 2 for x in range(-12, 7)]  # 1e-6 .. 1e3, half-decade bins
#: Error ratios below this are drawn in the first bin (exact or nearly).
FLOOR = 10 ** LOG_EDGES[0]


def missing() -> str | None:
    """Why the report has no pictures here (matplotlib not installed), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}): pip install 'convcheck[plots]'"
    return None


def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.figure import Figure  # the object API: no pyplot, no global figure state

    matplotlib.rcParams.update(
        {"svg.fonttype": "none", "svg.hashsalt": "convcheck", "font.size": 9}
    )
    return Figure(figsize=(width, height))


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline in HTML


def error_histogram(records: Iterable[Record], backends: Sequence[str]) -> str | None:
    """SVG: per dtype, each backend's histogram of log10(max |err| / bound); None without
    matplotlib or without compared records."""
    if missing():
        return None
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        m = r.metrics
        if m is None or m.max_error_over_bound is None or not math.isfinite(m.max_error_over_bound):
            continue
        v = max(m.max_error_over_bound, FLOOR)
        ratios[record_dtype(r)][r.backend].append(math.log10(v))
    dtypes = [d for d in DTYPES if d in ratios] + sorted(set(ratios) - set(DTYPES))
    if not dtypes:
        return None
    fig = _figure(4.2 * len(dtypes), 2.8)
    axes = fig.subplots(1, len(dtypes), squeeze=False, sharey=False)[0]
    order = [b for b in backends if any(b in ratios[d] for d in dtypes)]
    colours = {b: f"C{i % 10}" for i, b in enumerate(order)}
    edges = [LOG_EDGES[0] - 0.5, *LOG_EDGES]
    for ax, dtype in zip(axes, dtypes):
        for b in order:
            values = ratios[dtype].get(b)
            if values:
                ax.hist(
                    values, bins=edges, histtype="step", linewidth=1.3, color=colours[b], label=b
                )
        ax.axvline(0.0, color="#b00020", linestyle="--", linewidth=1)
        ax.set_title(dtype)
        ax.set_xlabel("log10(max |err| / bound)   (left bin: < 1e-6)")
        ax.set_yscale("log")
        ax.set_ylabel("records")
    # One legend for every backend, whichever dtypes it ran.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[b], linewidth=1.3, label=b) for b in order]
    axes[-1].legend(
        handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0)
    )
    return _svg(fig)


def time_per_backend(records: Iterable[Record], backends: Sequence[str]) -> str | None:
    """SVG: box plot of seconds per case for each backend (log scale); None without
    matplotlib or without timed records."""
    if missing():
        return None
    seconds: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.seconds is not None and r.seconds > 0:
            seconds[r.backend].append(r.seconds)
    order = [b for b in backends if seconds.get(b)] + sorted(set(seconds) - set(backends))
    if not order:
        return None
    fig = _figure(max(4.0, 0.9 * len(order) + 1.5), 2.8)
    ax = fig.subplots()
    # Whiskers at the 1st and 99th percentiles, no outlier points: thousands of dots would make
    # the SVG large and say nothing the whiskers do not.
    ax.boxplot([seconds[b] for b in order], whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("seconds per case")
    return _svg(fig)
