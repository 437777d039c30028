"""From a :class:`~conformance.case.Case` to what every launch needs: the kernel (body and tile
size), the int32 parameter array (layout in ``src/params.h``), the output shape and the thread
count. :func:`make_plan` plans a forward op, :func:`make_weight_grad_plan` a convolution's weight
gradient (the body behind every ``bwd_w``, see :mod:`kernels.backends`).

Validation is the reference's own rule set (:mod:`reference.params`), so an invalid case raises
the same ``ValueError`` here as in the oracle; the output shape is computed here, independently,
so a disagreement shows up as a shape mismatch in the diff engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conformance.case import Case
from kernels.source import TILES, check_tile, param_slots
from reference.params import check_params, check_shapes

#: Threads, and flat offsets into every tensor, are 32-bit ints in the bodies.
MAX_ELEMENTS = 2**31 - 1

#: The body of every weight gradient (:func:`make_weight_grad_plan`).
WEIGHT_GRAD = "conv_weight_grad"


@dataclass(frozen=True)
class Plan:
    op: str  # the body to run: "conv", "conv_transpose" or "conv_weight_grad"
    tile: int  # output channels per thread (one of kernels.source.TILES)
    params: np.ndarray  # int32, KC_P_COUNT slots
    out_shape: tuple[int, ...]  # MLX layout: (N, *O, C_out), or (C_out, *K, C_in/G) for a weight
    threads: int  # threads that do work (slot KC_P_TOTAL)

    @property
    def total(self) -> int:
        """Output elements."""
        return _count(self.out_shape)


#: The largest tile worth using per dialect. On a GPU each lane's input row is its own cache
#: line, so the loads an input element serves bound the speed and wider tiles win (up to 32
#: output channels per thread; H200: device/results/). On the host (2-core AVX2, `nox -s bench
#: -- -k kernels_host_tiles`) tile 4 is fastest on 4 of the 6 bench layers and wider tiles
#: spill registers (dcgan-g3: 56 ms at tile 4, 78 at 8, 95 at 32).
MAX_TILE: dict[str, int] = {"host": 4, "cuda": 32, "metal": 8}


def choose_tile(out_channels_per_group: int, dialect: str = "host") -> int:
    """The largest tile (up to the dialect's :data:`MAX_TILE`) that a group's output channels
    fill: no thread computes lanes it never stores, except in a group's last tile."""
    if dialect not in MAX_TILE:
        raise ValueError(f"dialect must be one of {sorted(MAX_TILE)}, got {dialect!r}")
    limit = min(max(out_channels_per_group, 1), MAX_TILE[dialect])
    return max(t for t in TILES if t <= limit)


def thread_count(out_shape: tuple[int, ...], groups: int, tile: int) -> int:
    """Threads of a launch: one per output position, group and tile of a group's channels."""
    positions = _count(out_shape[:-1])
    c_out = out_shape[-1]
    cout_g = c_out // groups if groups > 0 else 0
    return positions * groups * -(-cout_g // tile)


def weight_grad_thread_count(w_shape: tuple[int, ...], groups: int, tile: int) -> int:
    """Threads of a weight-gradient launch: one per tap, input channel of a group, group and
    tile of a group's output channels."""
    c_out = w_shape[0]
    cout_g = c_out // groups if groups > 0 else 0
    return _count(w_shape[1:]) * groups * -(-cout_g // tile)


def _out_spatial(case: Case) -> list[int]:
    if case.transposed:
        return [
            (s - 1) * st - 2 * p + d * (k - 1) + op + 1
            for s, k, st, p, d, op in zip(
                case.spatial,
                case.kernel,
                case.stride,
                case.padding,
                case.dilation,
                case.output_padding,
            )
        ]
    out = []
    for s, k, st, p, d in zip(case.spatial, case.kernel, case.stride, case.padding, case.dilation):
        extent = s + 2 * p - d * (k - 1) - 1
        out.append(extent // st + 1 if extent >= 0 and st > 0 else 0)
    return out


def _count(shape: list[int] | tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n


def unsupported_reason(case: Case) -> str | None:
    """What the kernels cannot do, or ``None``. Invalid cases are not "unsupported": they get
    through here and are rejected by :func:`make_plan` with the reference's ``ValueError``."""
    out_sp = _out_spatial(case)
    sizes = {
        "input": _count(case.x_shape),
        "weight": _count(case.w_shape),
        "output": _count([case.batch, *out_sp, case.out_channels]),
    }
    for what, n in sizes.items():
        if n > MAX_ELEMENTS:
            return (
                f"{what} has {n} elements; the kernels index with 32-bit ints and launch one "
                f"thread per output element (at most {MAX_ELEMENTS})"
            )
    return None


def make_plan(
    case: Case,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    *,
    tile: int | None = None,
    dialect: str = "host",
) -> Plan:
    """Validate (``ValueError`` for an invalid case) and lay out the parameters. ``tile``:
    output channels per thread (default: :func:`choose_tile`'s pick for ``dialect``)."""
    p = check_params(
        case.op,
        case.ndim,
        transposed=case.transposed,
        **case.params(),  # type: ignore[arg-type]
    )
    bias_t = None if bias_shape is None else tuple(bias_shape)
    check_shapes(p, tuple(x_shape), tuple(w_shape), bias_t)
    reason = unsupported_reason(case)
    if reason is not None:
        raise ValueError(f"kernels: {reason}")
    slots = param_slots()
    pad = 3 - case.ndim  # leading size-1 dimensions: 1-D and 2-D run as 3-D
    out_sp = _out_spatial(case)

    def three(values: tuple[int, ...] | list[int], fill: int) -> list[int]:
        return [fill] * pad + list(values)

    params = np.zeros(slots["COUNT"], np.int32)
    n, *_, c_in = x_shape
    c_out = w_shape[0]
    out_shape = (n, *out_sp, c_out)
    tile = check_tile(tile) if tile is not None else choose_tile(c_out // case.groups, dialect)
    threads = thread_count(out_shape, case.groups, tile)
    if threads > MAX_ELEMENTS:
        raise ValueError(f"kernels: {threads} threads; at most {MAX_ELEMENTS}")
    params[slots["N"]] = n
    params[slots["CIN"]] = c_in
    params[slots["COUT"]] = c_out
    params[slots["GROUPS"]] = case.groups
    params[slots["HAS_BIAS"]] = int(bias_shape is not None)
    params[slots["TOTAL"]] = threads
    for name, values, fill in (
        ("S", x_shape[1:-1], 1),
        ("K", w_shape[1:-1], 1),
        ("O", out_sp, 1),
        ("STRIDE", case.stride, 1),
        ("PAD", case.padding, 0),
        ("DIL", case.dilation, 1),
        ("TSTEP", [s // math.gcd(s, d) for s, d in zip(case.stride, case.dilation)], 1),
    ):
        params[slots[name] : slots[name] + 3] = three(values, fill)
    op = "conv_transpose" if case.transposed else "conv"
    return Plan(op, tile, params, out_shape, threads)


def make_weight_grad_plan(
    case: Case,
    x_shape: tuple[int, ...],
    dy_shape: tuple[int, ...],
    *,
    tile: int | None = None,
    dialect: str = "host",
) -> Plan:
    """Plan the weight gradient of the convolution ``case`` (not transposed; ValueError for an
    invalid one) for its input of ``x_shape`` and the cotangent of its output of ``dy_shape``:
    ``(C_out, *K, C_in/G)``, summed over the batch and ``dy``'s positions. ``dy`` may have fewer
    positions per axis than the output (a transposed convolution's weight gradient is that of
    its adjoint convolution, whose output can be longer than the transposed op's input; the
    positions ``dy`` lacks are zero). ``tile``: output channels per thread (default:
    :func:`choose_tile`'s pick for ``dialect``)."""
    if case.transposed:
        raise ValueError(f"kernels: {WEIGHT_GRAD} plans a convolution, not {case.op}")
    p = check_params(
        case.op,
        case.ndim,
        transposed=False,
        **case.params(),  # type: ignore[arg-type]
    )
    out_shape = tuple(case.w_shape)
    y_full = check_shapes(p, tuple(x_shape), out_shape, None)
    n, *_, c_in = x_shape
    if (
        len(dy_shape) != len(y_full)
        or dy_shape[0] != n
        or dy_shape[-1] != y_full[-1]
        or any(not 0 <= d <= o for d, o in zip(dy_shape[1:-1], y_full[1:-1]))
    ):
        raise ValueError(
            f"kernels: the cotangent's shape {tuple(dy_shape)} does not fit the output "
            f"{tuple(y_full)} of {case.op}"
        )
    for what, shape in (("input", x_shape), ("cotangent", dy_shape), ("weight", out_shape)):
        if _count(shape) > MAX_ELEMENTS:
            raise ValueError(
                f"kernels: {what} has {_count(shape)} elements; the kernels index with 32-bit "
                f"ints (at most {MAX_ELEMENTS})"
            )
    c_out = out_shape[0]
    tile = check_tile(tile) if tile is not None else choose_tile(c_out // case.groups, dialect)
    threads = weight_grad_thread_count(out_shape, case.groups, tile)
    slots = param_slots()
    pad = 3 - case.ndim  # leading size-1 dimensions: 1-D and 2-D run as 3-D

    def three(values: tuple[int, ...] | list[int], fill: int) -> list[int]:
        return [fill] * pad + list(values)

    params = np.zeros(slots["COUNT"], np.int32)
    params[slots["N"]] = n
    params[slots["CIN"]] = c_in
    params[slots["COUT"]] = c_out
    params[slots["GROUPS"]] = case.groups
    params[slots["HAS_BIAS"]] = 0
    params[slots["TOTAL"]] = threads
    for name, values, fill in (
        ("S", x_shape[1:-1], 1),
        ("K", case.kernel, 1),
        ("O", dy_shape[1:-1], 1),
        ("STRIDE", case.stride, 1),
        ("PAD", case.padding, 0),
        ("DIL", case.dilation, 1),
        ("TSTEP", (1,) * case.ndim, 1),
    ):
        params[slots[name] : slots[name] + 3] = three(values, fill)
    return Plan(WEIGHT_GRAD, tile, params, out_shape, threads)
