"""Gradient conformance: the backward pass of every op against the reference's own VJPs.

For a valid case, ``y = op(x, w) [+ b]`` and a cotangent ``dy`` drawn from the case seed (see
:func:`cotangent`), each backend computes ``grad_input``, ``grad_weight`` and (with a bias)
``grad_bias`` in the case dtype; each is judged by :func:`conformance.diff.compare` against the
float64 VJP from :mod:`reference.grad`, whose ``abs_sum``/``terms`` feed the usual error bound
(``terms`` counts every product a gradient accumulates: over batch *and* positions for the
weight, over batch and positions for the bias). Nothing else about the bound changes.

Gradient adapters reuse the forward adapters (found with :func:`conformance.backends.resolve`)
for availability and documented limitations:

* ``numpy-ref``: the reference VJPs rounded once to the case dtype (checks the plumbing);
* ``mlx-cpu``, ``mlx-gpu``: ``mx.vjp`` of the op plus the bias add, in the case dtype;
* ``jax-cpu``, ``jax-cuda``: ``jax.vjp`` of the forward adapter's op plus the bias add, in the
  case dtype, jitted as one program;
* ``torch-*`` (every :class:`~conformance.backends.torch_backend.TorchBackend`: CPU, CUDA, MPS,
  contiguous or channels-last): ``torch.autograd.grad`` in the case dtype; the input gradient
  goes back to channels-last, the weight gradient back to MLX layout with :func:`mlx_weight`,
  the inverse of :func:`~conformance.backends.base.channels_first_weight`.

One :class:`~conformance.runner.Record` per (backend, gradient): ``case_id`` is the case id and
``backend`` is ``BACKEND:GRADIENT`` (``mlx-cpu:grad_weight``), so reports show the gradient as a
backend of its own. Arrays are judged in MLX layout: ``grad_input`` like an input
``(N, *S, C_in)``; ``grad_weight`` ``(C_out, *K, C_in/groups)``, so in its summary "batch" is the
output channel, "position" the kernel tap and "channel" the input channel within its group;
``grad_bias`` as ``(1, 1.., C_out)``. ``seconds`` is the time of the whole forward+backward call,
the same on each gradient of one backend.

Known failures: a gradient record is looked up as backend ``BACKEND-grad``, i.e. in
``cases/known_failures/BACKEND-grad.toml`` (the usual schema; entries cover all three gradients
of the backend, narrowed by verdict/hint/when). A case whose *forward* op (or whose gradients)
is listed as crashing the backend is not run in-process, as in the forward runner.

Isolation: :class:`IsolatedGradients` runs an adapter in a worker process through
:class:`~conformance.isolation.IsolatedBackend` (the adapter is wrapped as a forward-style
backend, :class:`PackedGradients`, that returns all gradients packed in one array), so a
segfault becomes a ``crashed`` record.

Replay one case (isolated): ``python -m conformance.gradients CASE_ID --backends mlx-cpu``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from conformance import diff as D
from conformance.backends import Backend, builtin_backends, resolve
from conformance.backends.base import (
    Availability,
    channels_first,
    channels_first_weight,
    channels_last,
)
from conformance.backends.jax_backend import JaxBackend, _import_jax
from conformance.backends.jax_backend import forward as jax_forward
from conformance.backends.mlx_backend import MLXBackend, _import_mlx
from conformance.backends.numpy_ref import NumpyReference
from conformance.backends.torch_backend import TorchBackend, with_memory_format
from conformance.case import Case, parse_id
from conformance.diff import Tolerance
from conformance.dtypes import round_to
from conformance.inputs import Inputs, check_case, make_inputs
from conformance.isolation import (
    DEFAULT_TIMEOUT,
    IsolatedBackend,
    RemoteError,
    WorkerCrashed,
    WorkerTimeout,
)
from conformance.known_failures import KnownFailures
from conformance.runner import Record, tolerance_option
from reference import grad as RG
from reference.core import ConvResult

GRADIENTS: tuple[str, ...] = ("grad_input", "grad_weight", "grad_bias")

#: Added to the case seed (as a second SeedSequence word) for the cotangent's stream, so ``dy``
#: is independent of the inputs drawn from the case seed itself.
COTANGENT_STREAM = 1

_WEIGHT_AXES = (
    "grad_weight is (C_out, *K, C_in/groups): 'batch' is the output channel, 'position' the "
    "kernel tap, 'channel' the input channel in its group"
)


def gradient_names(case: Case) -> tuple[str, ...]:
    """The gradients a case has: input and weight, and bias when the case has one."""
    return GRADIENTS if case.bias else GRADIENTS[:2]


def record_name(backend: str, gradient: str) -> str:
    """The ``Record.backend`` of one gradient of one backend: ``mlx-cpu:grad_weight``."""
    return f"{backend}:{gradient}"


def split_record_name(name: str) -> tuple[str, str | None]:
    """``mlx-cpu:grad_weight`` -> (``mlx-cpu``, ``grad_weight``); a forward name -> (name, None)."""
    backend, sep, gradient = name.rpartition(":")
    if sep and gradient in GRADIENTS:
        return backend, gradient
    return name, None


def known_failures_key(backend: str) -> str:
    """The known-failures backend (file stem) for gradients of ``backend``: ``BACKEND-grad``."""
    return f"{backend}-grad"


def cotangent(case: Case) -> np.ndarray:
    """``dy``: uniform in [-1, 1) from ``(case.seed, COTANGENT_STREAM)``, rounded to the dtype,
    as a read-only float32 array of the output's shape."""
    rng = np.random.default_rng([case.seed, COTANGENT_STREAM])
    dy = round_to(rng.uniform(-1.0, 1.0, check_case(case)), case.dtype)
    dy.setflags(write=False)
    return dy


def reference_gradients(case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, ConvResult]:
    """The float64 VJPs with their error-bound inputs, by gradient name."""
    kw = case.params()
    g = RG.vjp(case.op, inputs.x, inputs.w, dy, bias=case.bias, with_bound=True, **kw)
    out = {"grad_input": g.input, "grad_weight": g.weight}
    if g.bias is not None:
        out["grad_bias"] = g.bias
    return out


def mlx_weight(case: Case, tw: np.ndarray) -> np.ndarray:
    """A PyTorch-layout weight (or weight gradient) back in MLX layout: the inverse of
    :func:`~conformance.backends.base.channels_first_weight`."""
    if not case.transposed:
        return channels_last(tw)
    g = case.groups
    c_in, c_out_g, *kernel = tw.shape
    wg = tw.reshape(g, c_in // g, c_out_g, *kernel)  # (G, C_in_g, C_out_g, *K)
    wg = np.moveaxis(wg, 1, -1)  # (G, C_out_g, *K, C_in_g)
    return np.ascontiguousarray(wg.reshape(g * c_out_g, *kernel, c_in // g))


# --- gradient adapters ---------------------------------------------------------------------------


class GradientAdapter:
    """The backward pass of one forward backend. ``run`` returns the gradients by name, in MLX
    layout, as float arrays whose values are in the case dtype."""

    def __init__(self, forward: Backend) -> None:
        self.forward = forward
        self.name = forward.name

    @property
    def availability(self):
        return self.forward.availability

    def unsupported_reason(self, case: Case) -> str | None:
        return self.forward.unsupported_reason(case)

    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<gradients of {self.name}>"


class NumpyRefGradients(GradientAdapter):
    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        g = RG.vjp(case.op, inputs.x, inputs.w, dy, bias=case.bias, **case.params())
        out = {"grad_input": g.input.out, "grad_weight": g.weight.out}
        if g.bias is not None:
            out["grad_bias"] = g.bias.out
        return {k: round_to(v, case.dtype) for k, v in out.items()}


class MLXGradients(GradientAdapter):
    forward: MLXBackend

    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        mx = _import_mlx()
        stream = mx.gpu if self.forward.device == "gpu" else mx.cpu
        dt = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}[case.dtype]
        kw = case.params()
        if case.ndim == 1:  # mlx's 1-D ops take ints, not 1-tuples
            kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
        op = getattr(mx, case.op)

        def fn(x, w, *b):
            y = op(x, w, stream=stream, **kw)
            return mx.add(y, b[0], stream=stream) if b else y

        primals = [mx.array(inputs.x).astype(dt), mx.array(inputs.w).astype(dt)]
        if inputs.bias is not None:
            primals.append(mx.array(inputs.bias).astype(dt))
        with mx.stream(stream):
            _, grads = mx.vjp(fn, primals, [mx.array(dy).astype(dt)])
            grads = [g.astype(mx.float32) for g in grads]
            mx.eval(grads)
        names = gradient_names(case)
        return {n: np.array(g) for n, g in zip(names, grads)}


class TorchGradients(GradientAdapter):
    forward: TorchBackend

    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        fb = self.forward
        if fb.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = fb.allow_tf32
            torch.backends.cudnn.allow_tf32 = fb.allow_tf32
        dt = fb._torch_dtype(case.dtype)

        def to_torch(a: np.ndarray, grad: bool):
            t = torch.from_numpy(np.array(a, copy=True)).to(device=fb.device, dtype=dt)
            t = with_memory_format(t, fb.memory_format) if t.ndim > 1 else t
            return t.requires_grad_(grad)

        x = to_torch(channels_first(inputs.x), True)
        w = to_torch(channels_first_weight(case, inputs.w), True)
        b = None if inputs.bias is None else to_torch(inputs.bias, True)
        g_out = to_torch(channels_first(dy), False)
        y = getattr(F, case.op)(x, w, b, **case.params())
        wrt = [x, w] + ([b] if b is not None else [])
        grads = torch.autograd.grad(y, wrt, grad_outputs=g_out)
        if fb.device == "cuda":
            torch.cuda.synchronize()
        host = [g.detach().to(device="cpu", dtype=torch.float32).numpy() for g in grads]
        out = {"grad_input": channels_last(host[0]), "grad_weight": mlx_weight(case, host[1])}
        if b is not None:
            out["grad_bias"] = host[2]
        return out


class JaxGradients(GradientAdapter):
    forward: JaxBackend

    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        jax = _import_jax()
        dt = jax.numpy.dtype(case.dtype)
        precision = self.forward._precision(jax)

        # One jitted program (casts, op, bias, VJP) returning the case dtype, as the forward
        # adapter does.
        @jax.jit
        def program(dy, x, w, *b):
            def fn(x, w, *b):
                return jax_forward(jax, case, x, w, b[0] if b else None, precision=precision)

            primals = [a.astype(dt) for a in (x, w, *b)]
            _, pullback = jax.vjp(fn, *primals)
            return pullback(dy.astype(dt))

        grads = program(*self.forward.on_device(jax, dy, inputs.x, inputs.w, inputs.bias))
        names = gradient_names(case)
        return {n: np.asarray(jax.device_get(g)).astype(np.float32) for n, g in zip(names, grads)}


def gradient_adapter(backend: Backend) -> GradientAdapter | None:
    """The gradient adapter of a forward backend, or None when there is none (our kernels,
    plugins: forward only)."""
    if isinstance(backend, NumpyReference):
        return NumpyRefGradients(backend)
    if isinstance(backend, MLXBackend):
        return MLXGradients(backend)
    if isinstance(backend, TorchBackend):
        return TorchGradients(backend)
    if isinstance(backend, JaxBackend):
        return JaxGradients(backend)
    return None


def gradient_adapters(backends: Iterable[Backend | str]) -> list[GradientAdapter]:
    """Adapters for the given backends (names are resolved); those without one are left out."""
    items = list(backends)
    names = [b for b in items if isinstance(b, str)]
    by_name = {b.name: b for b in resolve(names)} if names else {}
    out = []
    for item in items:
        backend = by_name[item] if isinstance(item, str) else item
        adapter = gradient_adapter(backend)
        if adapter is not None:
            out.append(adapter)
    return out


# --- isolation: gradients in a worker process ----------------------------------------------------

#: Forward backends that have a gradient adapter (the worker looks them up by these names).
GRADIENT_BACKENDS: tuple[str, ...] = (
    "numpy-ref",
    "mlx-cpu",
    "mlx-gpu",
    "torch-cpu",
    "torch-cpu-cl",
    "torch-cuda",
    "torch-cuda-cl",
    "torch-mps",
    "jax-cpu",
    "jax-cuda",
)


def packed_name(backend: str) -> str:
    return f"{backend}+grad"


def pack(grads: Sequence[np.ndarray]) -> np.ndarray:
    """Gradients as one float64 array: count, then each rank and shape, then every value
    (float32 values are exact in float64; NaN and Inf survive)."""
    arrays = [np.asarray(g, np.float64) for g in grads]
    header = [float(len(arrays))]
    for a in arrays:
        header += [float(a.ndim), *map(float, a.shape)]
    return np.concatenate([np.array(header), *(a.ravel() for a in arrays)])


def unpack(packed: np.ndarray) -> list[np.ndarray]:
    """The inverse of :func:`pack`; arrays come back as float32."""
    packed = np.asarray(packed, np.float64)
    count, pos, shapes = int(packed[0]), 1, []
    for _ in range(count):
        ndim = int(packed[pos])
        shapes.append(tuple(int(v) for v in packed[pos + 1 : pos + 1 + ndim]))
        pos += 1 + ndim
    out = []
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(packed[pos : pos + size].astype(np.float32).reshape(shape))
        pos += size
    return out


class PackedGradients(Backend):
    """A gradient adapter dressed as a forward :class:`Backend`, so that
    :class:`~conformance.isolation.IsolatedBackend` can run it in a worker process: ``run``
    draws the cotangent from the case and returns every gradient :func:`pack`-ed."""

    def __init__(self, forward_name: str) -> None:
        self.forward_name = forward_name
        self.name = packed_name(forward_name)
        self.description = f"gradients of {forward_name}"

    @functools.cached_property
    def adapter(self) -> GradientAdapter:
        (forward,) = [b for b in builtin_backends() if b.name == self.forward_name]
        adapter = gradient_adapter(forward)
        assert adapter is not None, self.forward_name
        return adapter

    def probe(self) -> Availability:
        return self.adapter.availability

    def unsupported_reason(self, case: Case) -> str | None:
        return self.adapter.unsupported_reason(case)

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        got = self.adapter.run(case, inputs, cotangent(case))
        return pack([got[n] for n in gradient_names(case)])


#: The ``--plugin``-style spec the worker loads to find :class:`PackedGradients` by name.
PLUGIN_SPEC = "conformance.gradients:PACKED_BACKENDS"
PACKED_BACKENDS = [functools.partial(PackedGradients, name) for name in GRADIENT_BACKENDS]


class IsolatedGradients(GradientAdapter):
    """``adapter`` run in a worker process (one per adapter, reused across cases, restarted
    after a crash): a segfault or a hang becomes a ``crashed``/``timeout`` record.
    On CUDA the worker runs with TF32 off (the default)."""

    isolated = True

    def __init__(self, adapter: GradientAdapter, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(adapter.forward)
        if adapter.name not in GRADIENT_BACKENDS:
            raise ValueError(f"no isolated gradients for {adapter.name}")
        self.inner = adapter
        self.worker = IsolatedBackend(
            PackedGradients(adapter.name), plugins=(PLUGIN_SPEC,), timeout=timeout
        )

    def run(self, case: Case, inputs: Inputs, dy: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(gradient_names(case), unpack(self.worker.run(case, inputs))))

    def close(self) -> None:
        self.worker.close()


# --- running a case ------------------------------------------------------------------------------


def _diff_view(case: Case, gradient: str, arr: np.ndarray) -> tuple[Case, np.ndarray]:
    """The case and array shape the diff engine judges a gradient with.

    No bias rounding term (the bias add does not touch any gradient's arithmetic); for the
    weight no group or stride pattern (its axes are not an output's); the bias gradient as a
    one-position output so the engine's (batch, position, channel) indexing holds.
    """
    view = replace(case, bias=False)
    if gradient == "grad_weight":
        view = replace(view, groups=1, stride=(1,) * case.ndim)
    if gradient == "grad_bias":
        arr = np.asarray(arr).reshape(1, *(1,) * case.ndim, -1)
    return view, arr


def _judge(case: Case, gradient: str, got: np.ndarray, ref: ConvResult, tol: Tolerance) -> D.Diff:
    view, got_v = _diff_view(case, gradient, got)
    if gradient == "grad_bias":
        if np.asarray(got).shape != ref.out.shape:
            return D.Diff(
                D.SHAPE_MISMATCH,
                detail=f"shape {tuple(np.shape(got))} but the reference has {ref.out.shape}",
            )
        _, out = _diff_view(case, gradient, ref.out)
        _, abs_sum = _diff_view(case, gradient, ref.abs_sum)
        _, terms = _diff_view(case, gradient, ref.terms)
        ref = ConvResult(out, abs_sum, terms)
    result = D.compare(view, got_v, ref, tol)
    if gradient == "grad_weight" and D.is_failure(result.verdict) and result.metrics is not None:
        result = replace(result, detail=f"{result.detail} ({_WEIGHT_AXES})")
    return result


def _crash_listed(known: KnownFailures, case: Case, backend: str) -> str | None:
    """The reason, when known failures list ``case``'s forward op (or gradients) as crashing
    ``backend`` unconditionally: running it in this process would end the process."""
    for name in (backend, known_failures_key(backend)):
        probe = Record(case_id=case.id, backend=name, verdict=D.CRASHED)
        entry = known.lookup(probe)
        if entry is not None and entry.verdict == D.CRASHED and entry.error is None:
            return entry.reason
    return None


def run_gradient_case(
    case: Case,
    backends: Iterable[Backend | GradientAdapter | str],
    *,
    tolerance: Tolerance = Tolerance(),
    known: KnownFailures | None = None,
) -> list[Record]:
    """One record per (available backend with a gradient adapter, gradient of ``case``).

    Invalid cases (the reference rejects them) give no records: rejecting them is the forward
    conformance tests' job. ``known``: known failures (default: none), looked up for gradients
    as backend ``BACKEND-grad``. ``backends``: adapters (from :func:`gradient_adapters`; pass
    these when running many cases, so availability is probed once), forward backends or names.
    """
    known = known if known is not None else KnownFailures([])
    try:
        dy = cotangent(case)
    except ValueError:
        return []
    inputs = make_inputs(case)
    ref = reference_gradients(case, inputs, dy)
    names = gradient_names(case)
    items = list(backends)
    adapters = [b for b in items if isinstance(b, GradientAdapter)]
    adapters += gradient_adapters([b for b in items if not isinstance(b, GradientAdapter)])
    records: list[Record] = []
    for adapter in adapters:
        if not adapter.availability.available:
            continue
        records.extend(_run_adapter(case, inputs, dy, ref, names, adapter, tolerance, known))
    return records


def _run_adapter(case, inputs, dy, ref, names, adapter, tol, known) -> list[Record]:
    def base(gradient: str) -> dict[str, object]:
        return {
            "case_id": case.id,
            "backend": record_name(adapter.name, gradient),
            "case": case.to_dict(),
            "tolerance_factor": tol.factor,
            "tolerance_statistical": tol.statistical,
        }

    reason = adapter.unsupported_reason(case)
    if reason is not None:
        return [Record(verdict=D.UNSUPPORTED, detail=reason, **base(n)) for n in names]
    if not getattr(adapter, "isolated", False):
        crash = _crash_listed(known, case, adapter.name)
        if crash is not None:
            detail = (
                "not run in this process: listed as crashing it; run isolated (replay, or "
                "pytest --isolate) to check it again"
            )
            return [
                Record(verdict=D.CRASHED, detail=detail, known_failure=crash, **base(n))
                for n in names
            ]
    start = time.perf_counter()
    try:
        got = adapter.run(case, inputs, dy)
    except Exception as exc:  # every backend error is data
        seconds = time.perf_counter() - start
        message = str(exc).strip() or repr(exc)
        type_name = exc.type_name if isinstance(exc, RemoteError) else type(exc).__name__
        verdict = D.RAISED
        if isinstance(exc, WorkerCrashed):
            verdict = D.CRASHED
        elif isinstance(exc, WorkerTimeout):
            verdict = D.TIMEOUT
        recs = [
            Record(
                verdict=verdict,
                detail=f"{type_name}: {message}",
                seconds=seconds,
                error_type=type_name,
                error_message=message,
                **base(n),
            )
            for n in names
        ]
        return _with_known(recs, adapter.name, known)
    seconds = time.perf_counter() - start
    recs = []
    for n in names:
        if n not in got:
            recs.append(
                Record(verdict=D.RAISED, detail=f"no {n} returned", seconds=seconds, **base(n))
            )
            continue
        result = _judge(case, n, got[n], ref[n], tol)
        recs.append(
            Record(
                verdict=result.verdict,
                detail=result.detail,
                seconds=seconds,
                metrics=result.metrics,
                **base(n),
            )
        )
    return _with_known(recs, adapter.name, known)


def _with_known(recs: list[Record], backend: str, known: KnownFailures) -> list[Record]:
    key = known_failures_key(backend)
    out = []
    for rec in recs:
        if D.is_failure(rec.verdict):
            entry = known.lookup(replace(rec, backend=key))
            rec = replace(rec, known_failure=entry.reason) if entry is not None else rec
        out.append(rec)
    # An exact-id entry is FIXED only when every gradient of the backend passes now.
    if recs and known.exact(key, recs[0].case_id) and not any(D.is_failure(r.verdict) for r in out):
        out = [replace(r, fixed=True) for r in out]
    return out


def replay_command(
    case_id: str, backend: str, tolerance_factor: float = 1.0, tolerance_statistical: bool = True
) -> str:
    """The command that replays the gradients of one case on one (forward) backend (with the
    tolerance options where they are not the defaults)."""
    extra = tolerance_option(tolerance_factor, tolerance_statistical)
    return f"python -m conformance.gradients {case_id} --backends {backend}{extra}"


def summary(rec: Record) -> str:
    """``Record.summary`` with the gradient replay command instead of the forward one."""
    backend, _ = split_record_name(rec.backend)
    lines = rec.summary().splitlines()
    if lines and lines[-1].lstrip().startswith("replay:"):
        command = replay_command(
            rec.case_id, backend, rec.tolerance_factor, rec.tolerance_statistical
        )
        lines[-1] = f"  replay: {command}"
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.gradients",
        description="Replay the gradient conformance of one case and print every record.",
    )
    parser.add_argument("case_id")
    parser.add_argument(
        "--backends",
        default="numpy-ref,mlx-cpu,torch-cpu",
        help="comma-separated forward backend names (default: numpy-ref,mlx-cpu,torch-cpu)",
    )
    parser.add_argument("--tolerance-factor", type=float, default=1.0)
    parser.add_argument(
        "--proven-bound-only",
        action="store_true",
        help="judge by the proven error bound alone: no statistical precision tier "
        "(precision-mismatch); for Winograd/FFT-style kernels whose rounding is outside its "
        "model",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the backends in this process (default: one worker process each, so a crash "
        "is reported, not fatal)",
    )
    args = parser.parse_args(argv)
    case = parse_id(args.case_id)
    backends = resolve([n.strip() for n in args.backends.split(",") if n.strip()])
    adapters = gradient_adapters(b for b in backends if b.availability.available)
    if not args.in_process:
        adapters = [IsolatedGradients(a) for a in adapters]
    tolerance = Tolerance(args.tolerance_factor, statistical=not args.proven_bound_only)
    try:
        records = run_gradient_case(case, adapters, tolerance=tolerance, known=KnownFailures.load())
    finally:
        for a in adapters:
            if isinstance(a, IsolatedGradients):
                a.close()
    print(f"case {case.id}")
    if not records:
        print("  no gradient records (invalid case, or no available backend with gradients)")
    for rec in records:
        print()
        print(summary(rec))
        m = rec.metrics
        if m is not None and rec.verdict == D.PASS:
            print(
                f"  max abs err {m.max_abs_error:.3g}, max ulp {m.max_ulp}, "
                f"max err/bound {m.max_error_over_bound:.3g}"
            )
    for b in backends:
        if not b.availability.available:
            print(f"\nnot available: {b.name}: {b.availability.detail}")
    return 1 if any(r.failed for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
