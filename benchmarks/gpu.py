"""GPU kernel bench: our kernels (``kernels-cuda``, each tile size) against upstream MLX's GPU
conv (``mlx-gpu``) and cuDNN through PyTorch, strict float32 and TF32, on real-network layers.

Usage: ``python -m benchmarks.gpu [--out DIR] [--budget SECONDS] [--layers a,b]``

Times what runs on the device, on device-resident arrays: inputs are made and copied to the GPU
once per layer, outside the timed region. PyTorch is timed with CUDA events around a loop of
calls; MLX and our kernels by enqueueing a loop of calls and waiting once (``mx.eval`` of all
their outputs), after a warm-up that compiles the kernels. Each figure is the median of
:data:`REPEATS` such loops, per call. ``ratio`` is cuDNN strict float32's time over the row's
time (above 1: faster than cuDNN). ``max|d|`` is the largest difference from cuDNN strict
float32 over the largest |value| (a sanity check; conformance is judged by the harness runs).

On a machine without a CUDA device nothing is timed: the table says which implementations are
unavailable and why, and the exit status is 0 (a dry run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.layers import LAYERS, REAL_NETWORK_CORPORA, flops
from conformance.case import Case, parse_id

REPEATS = 5
#: Each timed loop runs at least this long (calls are added until it does), at most MAX_CALLS.
MIN_LOOP_SECONDS = 0.02
MAX_CALLS = 200


@dataclass(frozen=True)
class Row:
    layer: str  # bench name or corpus case id
    case_id: str
    impl: str
    seconds: float | None  # median per call; None: not timed (see note)
    tflops: float | None
    ratio: float | None  # cuDNN strict time / this time
    max_diff: float | None  # max |this - cuDNN strict| / max |cuDNN strict|
    note: str = ""


def bench_layers(names: list[str] | None = None) -> list[tuple[str, Case]]:
    """The bench layers (full batch) and the real-network corpus layers, in float32, once each."""
    from conformance.corpus import load_corpus

    found: dict[str, tuple[str, Case]] = {}
    for name, case_id in LAYERS.items():
        found.setdefault(case_id, (name, parse_id(case_id)))
    for frozen in load_corpus(list(REAL_NETWORK_CORPORA)):
        case = replace(frozen.case, dtype="float32")
        found.setdefault(case.id, (frozen.source, case))
    layers = list(found.values())
    if names:
        wanted = set(names)
        layers = [(n, c) for n, c in layers if n in wanted or c.id in wanted]
        missing = wanted - {n for n, _ in layers} - {c.id for _, c in layers}
        if missing:
            raise ValueError(f"--layers: unknown layer(s) {', '.join(sorted(missing))}")
    return layers


def median_per_call(loop: Callable[[int], float]) -> float:
    """``loop(calls)`` runs ``calls`` calls and returns their seconds; returns the median seconds
    per call over REPEATS loops, with the call count grown until a loop takes MIN_LOOP_SECONDS."""
    calls = 1
    while calls < MAX_CALLS and loop(calls) < MIN_LOOP_SECONDS:
        calls *= 4
    calls = min(calls, MAX_CALLS)
    return statistics.median(loop(calls) / calls for _ in range(REPEATS))


# --- implementations: each returns (time one call loop, result as float32 NumPy) --------------


class Unavailable(Exception):
    pass


def _torch_impl(case: Case, inputs, *, tf32: bool):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        raise Unavailable(f"PyTorch is not installed ({exc})") from None
    if not torch.cuda.is_available():
        raise Unavailable("PyTorch has no CUDA device here")
    from conformance.backends.base import channels_first, channels_first_weight, channels_last

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = "cuda"
    x = torch.from_numpy(np.ascontiguousarray(channels_first(inputs.x))).to(dev)
    w = torch.from_numpy(np.ascontiguousarray(channels_first_weight(case, inputs.w))).to(dev)
    b = None if inputs.bias is None else torch.from_numpy(inputs.bias).to(dev)
    fn = getattr(F, case.op)
    params = case.params()

    def call():
        return fn(x, w, b, **params)

    def loop(calls: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.no_grad():
            start.record()
            for _ in range(calls):
                call()
            end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    with torch.no_grad():
        for _ in range(2):
            y = call()
        torch.cuda.synchronize()
    result = channels_last(y.float().cpu().numpy())
    return loop, result


def _mlx_loop(mx, call):
    def loop(calls: int) -> float:
        mx.synchronize()
        t0 = time.perf_counter()
        outs = [call() for _ in range(calls)]
        mx.eval(*outs)
        mx.synchronize()
        return time.perf_counter() - t0

    return loop


def _import_mlx_gpu(dialect: str):
    try:
        from kernels.mlx_launch import import_mlx

        mx = import_mlx()
    except ImportError as exc:
        raise Unavailable(f"MLX is not installed ({exc})") from None
    module = getattr(mx, dialect, None)
    if module is None or not module.is_available():
        raise Unavailable(f"MLX has no {dialect.upper()} backend here")
    return mx


def _mlx_impl(case: Case, inputs):
    mx = _import_mlx_gpu("cuda")
    from conformance.backends.mlx_backend import forward

    x, w = mx.array(inputs.x), mx.array(inputs.w)
    b = None if inputs.bias is None else mx.array(inputs.bias)
    mx.eval(x, w, *([] if b is None else [b]))

    def call():
        return forward(mx, case, x, w, b, stream=mx.gpu)

    for _ in range(2):
        y = call()
        mx.eval(y)
    return _mlx_loop(mx, call), np.array(y.astype(mx.float32))


def _kernels_impl(case: Case, inputs, *, tile: int):
    mx = _import_mlx_gpu("cuda")
    from kernels import mlx_launch, plan

    bias_shape = None if inputs.bias is None else inputs.bias.shape
    p = plan.make_plan(case, inputs.x.shape, inputs.w.shape, bias_shape, tile=tile)
    args = mlx_launch.device_inputs(p, case.dtype, inputs.x, inputs.w, inputs.bias)

    def call():
        return mlx_launch.launch("cuda", p, args)

    for _ in range(2):
        y = call()
        mx.eval(y)
    return _mlx_loop(mx, call), np.array(y.astype(mx.float32))


def implementations(case: Case) -> dict[str, Callable]:
    """name -> builder(case, inputs) returning (loop, result); cuDNN strict first (the baseline)."""
    from kernels import plan
    from kernels.source import TILES

    cout_g = case.out_channels // case.groups
    chosen = plan.choose_tile(cout_g, "cuda")
    impls: dict[str, Callable] = {
        "cudnn-f32": lambda c, i: _torch_impl(c, i, tf32=False),
        "cudnn-tf32": lambda c, i: _torch_impl(c, i, tf32=True),
        "mlx-gpu": _mlx_impl,
    }
    for tile in TILES:
        name = f"kernels-cuda-t{tile}" + ("*" if tile == chosen else "")
        impls[name] = lambda c, i, tile=tile: _kernels_impl(c, i, tile=tile)
    return impls


def unavailable() -> dict[str, str]:
    """Implementation family ("cudnn", "mlx-gpu", "kernels-cuda") -> why it cannot run here."""
    why: dict[str, str] = {}
    try:
        import torch

        if not torch.cuda.is_available():
            why["cudnn"] = "PyTorch has no CUDA device here"
    except ImportError as exc:
        why["cudnn"] = f"PyTorch is not installed ({exc})"
    try:
        _import_mlx_gpu("cuda")
    except Unavailable as exc:
        why["mlx-gpu"] = why["kernels-cuda"] = str(exc)
    return why


def family(impl: str) -> str:
    return next(f for f in ("cudnn", "mlx-gpu", "kernels-cuda") if impl.startswith(f))


def bench(
    layers: list[tuple[str, Case]], budget: float, missing: dict[str, str]
) -> tuple[list[Row], list[str]]:
    """Time every implementation whose family is not in ``missing`` on every layer until
    ``budget`` seconds are spent; returns the rows and the layers left out for lack of time."""
    from conformance.inputs import make_inputs

    rows: list[Row] = []
    skipped: list[str] = []
    t_start = time.monotonic()
    if len(missing) == 3:
        return rows, skipped
    for name, case in layers:
        if time.monotonic() - t_start > budget:
            skipped.append(name)
            continue
        inputs = make_inputs(case)
        base_time: float | None = None
        base: np.ndarray | None = None
        for impl, build in implementations(case).items():
            if family(impl) in missing:
                continue
            try:
                loop, result = build(case, inputs)
                seconds = median_per_call(loop)
            except Unavailable as exc:
                rows.append(Row(name, case.id, impl, None, None, None, None, str(exc)))
                continue
            except Exception as exc:  # a failing implementation is a finding, not a crash
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                rows.append(Row(name, case.id, impl, None, None, None, None, msg))
                continue
            if impl == "cudnn-f32":
                base_time, base = seconds, result
            diff = None
            if base is not None and result.shape == base.shape:
                scale = float(np.max(np.abs(base))) or 1.0
                diff = float(np.max(np.abs(result - base))) / scale if result.size else 0.0
            rows.append(
                Row(
                    name,
                    case.id,
                    impl,
                    seconds,
                    flops(case) / seconds / 1e12,
                    base_time / seconds if base_time else None,
                    diff,
                )
            )
    return rows, skipped


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(rows: list[Row], skipped: list[str], missing: dict[str, str], header: str) -> str:
    lines = [header, ""]
    lines += [f"not available: {f}: {why}" for f, why in missing.items()]
    if len(missing) == 3:
        return "\n".join([*lines, "", "dry run: nothing to time on this machine"]) + "\n"
    lines += [
        "",
        "| layer | impl | ms | TFLOP/s | ratio to cuDNN f32 | max\\|d\\| | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.layer} | {r.impl} | {_fmt(r.seconds and r.seconds * 1e3, '.4f')} | "
            f"{_fmt(r.tflops, '.2f')} | {_fmt(r.ratio, '.2f')} | {_fmt(r.max_diff, '.1e')} | "
            f"{r.note} |"
        )
    chosen = [r for r in rows if r.impl.endswith("*") and r.ratio is not None]
    if chosen:
        worst = min(chosen, key=lambda r: r.ratio or 0.0)
        lines += [
            "",
            f"kernels-cuda (chooser's tile, marked *) vs cuDNN strict float32: median ratio "
            f"{statistics.median(r.ratio for r in chosen):.2f}, lowest {worst.ratio:.2f} "
            f"({worst.layer}), at least 1 on {sum(r.ratio >= 1 for r in chosen)} "
            f"of {len(chosen)} layers, at least 0.5 on {sum(r.ratio >= 0.5 for r in chosen)}",
        ]
    if skipped:
        lines += ["", f"not timed (time budget spent): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


def environment() -> str:
    parts = []
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
            parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    except ImportError:
        parts.append("no torch")
    try:
        import mlx.core as mx

        parts.append(f"mlx {mx.__version__}")
    except ImportError:
        parts.append("no mlx")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n")[0]
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=summary)
    ap.add_argument("--out", type=Path, default=None, help="write bench.md and bench.json here")
    ap.add_argument(
        "--budget", type=float, default=120.0, help="seconds of timing before layers are skipped"
    )
    ap.add_argument("--layers", default="", help="comma-separated layer names or case ids")
    args = ap.parse_args(argv)
    if args.budget <= 0:
        ap.error("--budget must be > 0 seconds")
    try:
        layers = bench_layers([n for n in args.layers.split(",") if n])
    except ValueError as exc:
        ap.error(str(exc))
    t0 = time.monotonic()
    missing = unavailable()
    rows, skipped = bench(layers, args.budget, missing)
    header = (
        f"# convcheck GPU bench ({environment()}); median per call on device-resident arrays, "
        f"{len(layers) - len(skipped)} layers in {time.monotonic() - t0:.0f} s"
    )
    text = table(rows, skipped, missing, header)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(text)
        (args.out / "bench.json").write_text(
            json.dumps(
                {"rows": [asdict(r) for r in rows], "skipped": skipped, "unavailable": missing},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
