"""The two computational cores of the reference, over any number of spatial dimensions.

* :func:`conv_general` gathers: every output position reduces over the kernel taps of the
  (padded, optionally input-dilated) input.
* :func:`conv_transpose_general` scatters: every input position adds its product with each
  kernel tap into the output. It never builds a zero-stuffed input.

They are written independently on purpose: the reference's own tests check that a transposed
convolution from the scatter core equals the gather core with input dilation and a flipped
kernel, which is how MLX defines ``conv_transpose``.

Both compute in float64 from the inputs as given. Layout is MLX's (see :mod:`reference`).
With ``with_bound=True`` they also return, per output element, the sum of ``|x| * |w|`` over the
terms that feed it and the number of those terms: the inputs of the diff engine's error bound.

Formulations (``formulation=`` on both cores; ``"auto"`` asks :func:`choose_formulation`, whose
docstring gives the rule and the measurements behind its thresholds):

* ``"per-tap"``: one grouped matrix product per kernel tap, inner dimension ``C_in/groups``.
  Gather: the tap's strided window of the input (copied, and cast, into a block buffer unless it
  already is a float64 matrix view) times the tap's weight, added into the output block; a tap
  that covers the whole block writes it directly. Scatter: the input block times the tap's
  weight, added into the tap's strided, clipped region of the output. Depthwise products
  (``C_in/groups == 1``) are broadcast multiplies over all groups at once.
* ``"im2col"``: one grouped matrix product per block for all taps. Gather: the taps of a block
  of output positions are copied side by side into a ``(rows, K * C_in/groups)`` patch matrix per
  group and multiplied straight into the output (no accumulation pass). Scatter (col2im): the
  input block times all taps' weights at once, ``(rows, K * C_out/groups)`` per group, stored
  positions-innermost, then each tap's slab is added into its region of the output.
* Bias (optional, on both cores): no pass over the output of its own where it can be avoided:
  the scatter starts from it instead of zeros, im2col multiplies it in (one more weight row
  against a column of ones, when the output is larger than the weight), per-tap adds it to each
  block while the block is in cache.
* No FFT: the corpus's large kernels are the 16-tap, stride-8 transposed 1-D layers of HiFi-GAN,
  where the direct products already run at BLAS speed (2-4x faster than torch's float64) and a
  strided transposed convolution is no plain FFT correlation; FFT would also add rounding error
  that does not shrink with ``sum |x||w|``, which the error bound is built on.

Padding, cropping (negative padding), input dilation and output padding are index arithmetic
(:class:`Span`): for each tap and axis, the output positions it reaches and the input positions
they read form two arithmetic progressions, clipped to the arrays. Nothing is zero-stuffed,
padded or cropped afterwards: patch entries that fall on padding are zeroed in the patch buffer
(only the border slabs), per-tap products only touch their clipped region, and the scatter adds
straight into the output.

Memory: besides the float64 output, at most one float64 copy of the weight (none if it already is
float64) and per-block temporaries. Work is split into blocks over the batch and the outermost
spatial axis (of the output for the gather, of the input for the scatter) so that a block's
temporaries stay within :func:`block_budget` (the float64 bytes of input, weight and output,
clamped to ``[MIN_BLOCK_BYTES, BLOCK_BYTES]``; at least one row per block, and the chooser only
picks im2col when one row of it fits). The peak extra memory of a call is then at most
``out + w + (x + w + out)``, within twice the float64 bytes of its arguments and result.

Threads: the products are BLAS calls (NumPy's OpenBLAS, all cores by default); per-tap makes one
per tap and block, im2col one per block. Where the cores are also busy with other processes
(parallel test workers, other jobs), each multi-threaded call can wait a scheduler slice for its
helper thread, which hits per-tap hardest; ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``)
avoids that. The chooser's thresholds come from single-thread timings, which are stable.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference.threads import blas_threads_for

#: Largest per-block temporary (patch matrices, window copies, products), in bytes. 4 MiB:
#: smaller blocks keep the scatter's output region in cache across taps (the 3-D U-Net decoder,
#: 2x16x32x32x64 -> 32, k2 s2: 47 ms with 1 MiB, 55 ms with 4 MiB, 63 ms with 16 MiB on one
#: core); from 4 MiB down the other corpus layers are within noise (2-16 MiB: +-5%).
BLOCK_BYTES = 4 * 2**20
#: Smallest block budget, so tiny problems are not cut into needlessly tiny blocks.
MIN_BLOCK_BYTES = 256 * 2**10
FORMULATIONS = ("per-tap", "im2col")


@dataclass(frozen=True)
class ConvResult:
    """Output of a reference op; ``abs_sum`` and ``terms`` are ``None`` unless requested.

    ``abs_sum``: per output element, ``sum |x||w|`` (plus ``|b|``) over its terms (float64), or
    an upper bound on it by at most a relative ``(2 (terms + 1) + 6) 2^-24`` (float32; see
    :func:`_abs_sums`); ``terms``: how many terms (a read-only broadcast view); ``bias``: the
    bias the output includes, ``(C_out,)``, where the caller records it (the harness does: the
    statistical precision tier bounds the rounding of the sum before the bias with it);
    ``nan_allowed``: where the inputs hold NaN or infinities, the elements where a kernel that
    multiplies padding (or a transposed op's inserted zeros) by the weight gets NaN, which
    conforms as well as ``out`` does (:mod:`reference.special`); None when no input is."""

    out: np.ndarray
    abs_sum: np.ndarray | None = None
    terms: np.ndarray | None = None
    bias: np.ndarray | None = None
    nan_allowed: np.ndarray | None = None


# --- index arithmetic ---------------------------------------------------------------------------


class Span(NamedTuple):
    """One axis of one kernel tap: output positions ``out_start + j * out_step`` pair with input
    positions ``in_start + j * in_step`` for ``j`` in ``range(count)``."""

    out_start: int
    out_step: int
    in_start: int
    in_step: int
    count: int

    def out_slice(self, origin: int = 0) -> slice:
        return _progression(self.out_start - origin, self.out_step, self.count)

    def in_slice(self, origin: int = 0) -> slice:
        return _progression(self.in_start - origin, self.in_step, self.count)


def _progression(start: int, step: int, count: int) -> slice:
    return slice(start, start + (count - 1) * step + 1, step) if count else slice(0, 0)


_EMPTY = Span(0, 1, 0, 1, 0)


def gather_span(offset: int, size: int, input_dilation: int, stride: int, n_out: int) -> Span:
    """Output positions ``o`` in ``[0, n_out)`` whose padded-input position ``o * stride +
    offset`` (``offset = tap * dilation - padding_lo``) holds a real input element: it must be
    ``i * input_dilation`` with ``0 <= i < size``. Positions on padding or on the zeros input
    dilation inserts are left out: they contribute nothing."""
    g = math.gcd(stride, input_dilation)
    if offset % g:
        return _EMPTY
    period = input_dilation // g
    # o * stride == -offset (mod input_dilation)  <=>  o * (stride/g) == -offset/g (mod period)
    phase = (-offset // g) * pow(stride // g, -1, period) % period if period > 1 else 0
    first = max(0, -(offset // stride))  # ceil(-offset / stride): i >= 0
    last = min(n_out - 1, ((size - 1) * input_dilation - offset) // stride)
    first += (phase - first) % period
    if first > last:
        return _EMPTY
    in_start = (first * stride + offset) // input_dilation
    return Span(
        first, period, in_start, period * stride // input_dilation, (last - first) // period + 1
    )


def scatter_span(offset: int, size: int, stride: int, n_out: int) -> Span:
    """Input positions ``i`` in ``[0, size)`` whose output position ``i * stride + offset``
    (``offset = tap * dilation - padding_lo``) lies in ``[0, n_out)``."""
    first = max(0, -(offset // stride))
    last = min(size - 1, (n_out - 1 - offset) // stride)
    if first > last:
        return _EMPTY
    return Span(first * stride + offset, stride, first, 1, last - first + 1)


def restrict(span: Span, lo: int, hi: int, *, side: str) -> Span:
    """The part of ``span`` whose ``side`` ("out" or "in") positions lie in ``[lo, hi)``."""
    start, step = (
        (span.out_start, span.out_step) if side == "out" else (span.in_start, span.in_step)
    )
    j0 = max(0, -((start - lo) // step))
    j1 = min(span.count - 1, (hi - 1 - start) // step)
    if j0 > j1:
        return _EMPTY
    return Span(
        span.out_start + j0 * span.out_step,
        span.out_step,
        span.in_start + j0 * span.in_step,
        span.in_step,
        j1 - j0 + 1,
    )


# --- blocks, budget, chooser --------------------------------------------------------------------


def block_budget(x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """Bytes of per-block temporaries: the float64 bytes of input, weight and output, so that
    the output, one float64 weight copy and the temporaries together stay within twice the
    arguments and result (``out + w + (x + w + out) <= 2 (x + w + out)``); clamped to
    ``[MIN_BLOCK_BYTES, BLOCK_BYTES]``."""
    total = 8 * (math.prod(x_shape) + math.prod(w_shape) + math.prod(out_shape))
    return int(min(BLOCK_BYTES, max(MIN_BLOCK_BYTES, total)))


def row_elements(
    formulation: str,
    transposed: bool,
    positions: int,
    c_in: int,
    c_out: int,
    taps: int,
    input_copy: bool = True,
) -> int:
    """Float64 temporaries per row of a block (``positions``: positions in one row, i.e. one
    index of the blocked axis, of the output for the gather and of the input for the scatter).
    ``input_copy``: whether the scatter copies its input block (it reads a contiguous float64
    input in place)."""
    if transposed:
        product = c_out * (taps if formulation == "im2col" else 1)
        return positions * (c_in * input_copy + product)  # float64 input block + products
    if formulation == "im2col":
        return positions * taps * c_in  # the patch matrix; the product goes into the output
    return positions * (c_in + c_out)  # window copy + product


def blocks(n: int, rows: int, row_elems: int, budget_elems: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, row slice) blocks covering ``n x rows``: whole batch items (several per
    block) when one fits the budget, else row ranges of one item; at least one row each."""
    item = rows * row_elems
    if item <= budget_elems:
        step = max(1, budget_elems // max(item, 1))
        for b in range(0, n, step):
            yield slice(b, min(n, b + step)), slice(0, rows)
        return
    step = max(1, budget_elems // max(row_elems, 1))
    for b in range(n):
        for r in range(0, rows, step):
            yield slice(b, b + 1), slice(r, min(rows, r + step))


#: Chooser thresholds (see :func:`choose_formulation` for the measurements).
#: Gather: im2col while ``C_in/groups`` is below this, per-tap from it. The corpus has gather
#: layers with 1, 80 (im2col faster) and 384, 512 (per-tap as fast or faster) input channels.
GATHER_IM2COL_MAX_CIN_G = 256
#: Scatter: im2col (col2im) while ``C_out/groups`` is below this, per-tap from it. The corpus has
#: transposed layers with 3 (col2im faster) and 32 or more (per-tap faster) output channels.
SCATTER_IM2COL_MAX_COUT_G = 16


def choose_formulation(
    *,
    transposed: bool,
    c_in: int,
    c_out: int,
    groups: int,
    kernel: Sequence[int],
    row_positions: int,
    budget_bytes: int,
) -> str:
    """The faster formulation for a case; a pure function of its shapes.

    Rules, in order. Times are medians, per-tap vs im2col forced, on the corpus layers of
    ``benchmarks/test_bench_oracle.py`` (table "formulations"), float64, one thread
    (``OMP_NUM_THREADS=1``; on the shared 2-core machine two-thread timings swung by 10x with
    the other processes' load, see the module docstring):

    1. One tap: ``"per-tap"``; both are one product, im2col only adds a patch copy
       (``conv2d c64x2 k1``: 0.7 vs 0.85 ms).
    2. Depthwise (``groups > 2``, ``C_in/groups == 1``): ``"per-tap"``. Its products are
       broadcast multiplies over all groups at once, where im2col makes one skinny matrix
       product per group: 1.6-4x slower on every depthwise layer (``conv_transpose2d g64``:
       1.7-2.1 vs 4.9-5.5 ms, ``g128``: 0.5-0.6 vs 1.9-2.2 ms, ``conv2d g64``: 0.9 vs 1.4 ms).
       Not for two groups (a one-channel op paired with its sums, see ``_paired``): there the
       broadcast multiplies are ``C_out/2`` wide per tap, and one product over all taps per
       group wins (``conv1d c1x512 k10`` paired: 32 ms per-tap).
    3. ``"per-tap"`` if one row of im2col's temporaries (``taps`` times per-tap's) would not fit
       ``budget_bytes``: memory first, and per-tap is faster there anyway (``conv3d c64x32``:
       6.8 vs 8.9 ms, ``c128x64``: 10.1 vs 13.3 ms, ``c32x3``: 3.2 vs 4.8 ms).
    4. Scatter: ``"im2col"`` when ``C_out/groups < SCATTER_IM2COL_MAX_COUT_G``: per-tap's
       products would be a few columns wide, far too thin for BLAS, where col2im makes one
       product ``taps`` times wider (``conv_transpose2d c64x3``: 0.6-0.9 vs 2.0-2.5 ms). From 32
       output channels per group per-tap is faster, 1.1-2.5x (``hifigan-up1``: 14 vs 21-25 ms,
       ``vae3d-up``: 41-48 vs 70-77 ms): col2im's positions-innermost slabs add with strided writes.
    5. Gather: ``"im2col"`` when ``C_in/groups < GATHER_IM2COL_MAX_CIN_G``: one product with
       inner dimension ``taps * C_in/groups`` instead of ``taps`` narrow ones plus their
       accumulation passes (``conv1d c1x512 k10``: 0.44 vs 5.7 ms; ``c80x512 k7``: 0.54 vs
       0.63 ms; ``c80x384 k3``: 1.19 vs 1.29 ms). With 384 or more input channels per group
       per-tap's products are efficient and it copies no patch matrix (``conv2d c512x256``:
       52-56 vs 61-75 ms; ``conv1d c384x384``, ``c512x512``: even).
    """
    taps = math.prod(kernel)
    c_in_g, c_out_g = c_in // groups, c_out // groups
    if taps == 1 or (groups > 2 and c_in_g == 1):
        return "per-tap"
    row = 8 * row_elements("im2col", transposed, row_positions, c_in, c_out, taps)
    if row > budget_bytes:
        return "per-tap"
    if transposed:
        return "im2col" if c_out_g < SCATTER_IM2COL_MAX_COUT_G else "per-tap"
    return "im2col" if c_in_g < GATHER_IM2COL_MAX_CIN_G else "per-tap"


# --- products -----------------------------------------------------------------------------------


def grouped_matmul(a: np.ndarray, wg: np.ndarray, out: np.ndarray) -> None:
    """``out[m, g*N:(g+1)*N] = a[m, g*K:(g+1)*K] @ wg[g]`` for ``a`` (M, G*K), ``wg`` (G, K, N),
    ``out`` (M, G*N), written in place. One BLAS call per group (NumPy's stacked matmul on
    strided views); with ``K == 1`` (depthwise) a broadcast multiply, which beats G tiny GEMMs."""
    g, k, n = wg.shape
    m = a.shape[0]
    if g == 1:
        np.matmul(a, wg[0], out=out)
        return
    a3 = a.reshape(m, g, k)
    o3 = out.reshape(m, g, n)
    if k == 1:
        np.multiply(a3, wg[:, 0, :], out=o3)
    else:
        np.matmul(a3.transpose(1, 0, 2), wg, out=o3.transpose(1, 0, 2))


def matrix_view(a: np.ndarray, dtype: type = np.float64) -> np.ndarray | None:
    """``a`` (..., C) as an (M, C) matrix view without copying, or None if its leading axes do not
    merge into one strided axis (then the caller copies) or it is not of ``dtype``."""
    if a.dtype != dtype or a.strides[-1] != a.itemsize:
        return None
    lead = [(n, s) for n, s in zip(a.shape[:-1], a.strides[:-1]) if n != 1]
    if any(s0 != s1 * n1 for (_, s0), (n1, s1) in zip(lead, lead[1:])):
        return None
    row_stride = lead[-1][1] if lead else a.shape[-1] * a.itemsize
    m = math.prod(a.shape[:-1])
    return np.lib.stride_tricks.as_strided(
        a, (m, a.shape[-1]), (row_stride, a.itemsize), writeable=False
    )


def _as_matrix(a: np.ndarray, scratch: _Scratch) -> np.ndarray:
    """``a`` as an (M, C) matrix of the scratch's dtype: a view when possible, else copied (and
    cast) into ``scratch``."""
    view = matrix_view(a, scratch.dtype)
    if view is not None:
        return view
    dst = scratch.take((math.prod(a.shape[:-1]), a.shape[-1]))
    np.copyto(dst.reshape(a.shape), a)
    return dst


def _weight_view(
    w: np.ndarray, groups: int, order: Sequence[int], dtype: type = np.float64
) -> np.ndarray:
    """``w`` (C_out, *K, C_in/g) as float64 (one copy only if it is not already contiguous
    float64), split to (G, C_out/g, *K, C_in/g) and its axes permuted by ``order``: a view, so
    small-batch layers do not pay a weight-sized transpose. Never flipped: a flipped gather
    applies tap ``t``'s weight at kernel position ``K - 1 - t`` (its spans)."""
    c_out, *kernel, c_in_g = w.shape
    w64 = np.ascontiguousarray(w, dtype=dtype)
    return w64.reshape(groups, c_out // groups, *kernel, c_in_g).transpose(order)


class _Scratch:
    """A reusable buffer of ``size`` elements (float64 unless told), allocated on first use
    (blocks come largest first, so one allocation serves them all)."""

    def __init__(self, size: int, dtype: type = np.float64) -> None:
        self.size = size
        self.dtype = dtype
        self.buf: np.ndarray | None = None

    def take(self, shape: Sequence[int]) -> np.ndarray:
        if self.buf is None:
            self.buf = np.empty(self.size, self.dtype)
        return self.buf[: math.prod(shape)].reshape(shape)


# --- taps and blocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tap:
    """One kernel tap of one call: its weight index, its spans, and the slices of axes 1.. (the
    same for every block; only axis 0 is restricted per block)."""

    index: tuple[int, ...]
    spans: tuple[Span, ...]
    rest_out: tuple[slice, ...]
    rest_in: tuple[slice, ...]
    empty: bool

    @classmethod
    def build(cls, index: tuple[int, ...], spans: Sequence[Span]) -> _Tap:
        rest = spans[1:]
        return cls(
            tuple(index),
            tuple(spans),
            tuple(s.out_slice() for s in rest),
            tuple(s.in_slice() for s in rest),
            any(s.count == 0 for s in spans),
        )

    def clip(self, lo: int, hi: int, side: str) -> Span | None:
        """Axis-0 span restricted to block rows ``[lo, hi)`` of ``side``; None if empty."""
        if self.empty:
            return None
        first = restrict(self.spans[0], lo, hi, side=side)
        return first if first.count else None


@dataclass(frozen=True)
class _Geometry:
    """Shapes of one call and its taps."""

    n: int
    size: tuple[int, ...]
    out_size: tuple[int, ...]
    c_in: int
    c_out: int
    groups: int
    taps: tuple[_Tap, ...]
    dtype: type = np.float64  # of the products and the output (float32 for the bound's sums)


def _first_block_rows(n: int, rows: int, row_elems: int, budget_elems: int) -> int:
    """Rows (batch items x axis-0 rows) of the largest, first, block: what scratch is sized for."""
    bs, rs = next(blocks(n, rows, row_elems, budget_elems))
    return (bs.stop - bs.start) * (rs.stop - rs.start)


# --- gather -------------------------------------------------------------------------------------


def _gather_per_tap(x, w, bias, geo: _Geometry, budget: int) -> np.ndarray:
    n, out_size, c_in, c_out, groups = geo.n, geo.out_size, geo.c_in, geo.c_out, geo.groups
    nd = len(out_size)
    out = np.empty((n, *out_size, c_out), geo.dtype)
    row_pos = math.prod(out_size[1:])
    row = row_elements("per-tap", False, row_pos, c_in, c_out, len(geo.taps))
    # (G, Cout_g, *K, Cin_g) -> (*K, G, Cin_g, Cout_g): one (G, Cin_g, Cout_g) operand per tap.
    wk = _weight_view(w, groups, (*range(2, 2 + nd), 0, 2 + nd, 1), geo.dtype)
    m_max = _first_block_rows(n, out_size[0], row, budget // 8) * row_pos
    windows, products = _Scratch(m_max * c_in, geo.dtype), _Scratch(m_max * c_out, geo.dtype)
    # Taps whose region is all of every block's axes 1.. (unit steps) may write a block directly.
    inner_full = [
        all(s.out_step == 1 and s.count == o for s, o in zip(t.spans[1:], out_size[1:]))
        for t in geo.taps
    ]
    for bs, rs in blocks(n, out_size[0], row, budget // 8):
        oblk = out[bs, rs]
        m_blk = oblk.size // c_out
        firsts = [t.clip(rs.start, rs.stop, "out") for t in geo.taps]
        full = [
            f is not None and f.out_step == 1 and f.count == rs.stop - rs.start and inner
            for f, inner in zip(firsts, inner_full)
        ]
        # A tap that covers the whole block writes it first, directly; the others add to it.
        order = sorted(range(len(firsts)), key=lambda t: not full[t])
        if not full[order[0]]:
            oblk.fill(0.0)
        for i, t in enumerate(order):
            tap, first = geo.taps[t], firsts[t]
            if first is None:
                continue
            a = _as_matrix(x[(bs, first.in_slice(), *tap.rest_in)], windows)
            if i == 0 and full[t]:
                grouped_matmul(a, wk[tap.index], oblk.reshape(m_blk, c_out))
                continue
            prod = products.take((a.shape[0], c_out))
            grouped_matmul(a, wk[tap.index], prod)
            dst = oblk[(slice(None), first.out_slice(rs.start), *tap.rest_out)]
            dst += prod.reshape(dst.shape)
        if bias is not None:
            oblk += bias  # while the block is still in cache
    return out


def _zero_outside(col: np.ndarray, spans: Sequence[Span]) -> None:
    """Zero the entries of one tap's patch column ``col`` (nb, *out_block, G, Cin_g) that the
    tap's region (``spans``, block-relative, none empty) does not cover: slabs below and above
    it on each axis, so only the border is written, not the whole column."""
    if any(s.out_step != 1 for s in spans):
        col.fill(0.0)  # input dilation: a strided lattice; the copy then writes its points
        return
    inner: list[slice] = []
    for a, s in enumerate(spans):
        rest = [slice(None)] * (len(spans) - a - 1)
        lo, hi = s.out_start, s.out_start + s.count
        if lo > 0:
            col[(slice(None), *inner, slice(0, lo), *rest)] = 0.0
        if hi < col.shape[1 + a]:
            col[(slice(None), *inner, slice(hi, None), *rest)] = 0.0
        inner.append(slice(lo, hi))


def _im2col_weight(
    w: np.ndarray, bias: np.ndarray | None, groups: int, dtype: type = np.float64
) -> np.ndarray:
    """im2col's (G, K * Cin_g [+ 1], Cout_g) weight: rows tap-major, matching the patch matrix's
    (G, K, Cin_g) columns. A view of ``w`` without bias; with one, a copy whose last row per
    group is the bias, so the product adds it (its column of the patch matrix holds ones) and
    the output needs no pass of its own for it."""
    c_out, *kernel, c_in_g = w.shape
    nd, taps, c_out_g = len(kernel), math.prod(kernel), c_out // groups
    order = (0, *range(2, 3 + nd), 1)  # (G, Cout_g, *K, Cin_g) -> (G, *K, Cin_g, Cout_g)
    if bias is None:
        return _weight_view(w, groups, order, dtype).reshape(groups, taps * c_in_g, c_out_g)
    wg = np.empty((groups, taps * c_in_g + 1, c_out_g), dtype)
    rows = wg[:, :-1, :].reshape(groups, *kernel, c_in_g, c_out_g)
    np.copyto(rows, w.reshape(groups, c_out_g, *kernel, c_in_g).transpose(order))
    wg[:, -1, :] = bias.reshape(groups, c_out_g)
    return wg


def _gather_im2col(x, w, bias, geo: _Geometry, budget: int) -> np.ndarray:
    n, out_size, c_in, c_out, groups = geo.n, geo.out_size, geo.c_in, geo.c_out, geo.groups
    taps, c_in_g = len(geo.taps), c_in // groups
    out = np.empty((n, *out_size, c_out), geo.dtype)  # every block is written whole by its product
    # Fusing the bias costs a transposed weight copy: worth it when the output pass it saves
    # is larger (``conv1d c1x512 k10``: 0.56 -> 0.47 ms), not for small outputs of large weights
    # (``conv1d c80x512 k7``: 0.55 -> 0.75 ms).
    fused = bias is not None and w.size <= out.size
    wg = _im2col_weight(w, bias if fused else None, groups, geo.dtype)
    width = wg.shape[1]  # columns of the patch matrix per group (+1: the bias's ones)
    row_pos = math.prod(out_size[1:])
    row = row_pos * groups * width
    m_max = _first_block_rows(n, out_size[0], row, budget // 8) * row_pos
    scratch = _Scratch(m_max * groups * width, geo.dtype)
    for bs, rs in blocks(n, out_size[0], row, budget // 8):
        oblk = out[bs, rs]
        m_blk = oblk.size // c_out
        patches = scratch.take((*oblk.shape[:-1], groups, width))
        if fused:
            patches[..., -1] = 1.0
        columns = patches[..., : taps * c_in_g].reshape(*oblk.shape[:-1], groups, taps, c_in_g)
        for t, tap in enumerate(geo.taps):
            col = columns[..., t, :]
            first = tap.clip(rs.start, rs.stop, "out")
            if first is None:
                col.fill(0.0)
                continue
            local = first._replace(out_start=first.out_start - rs.start)  # block-relative
            _zero_outside(col, (local, *tap.spans[1:]))
            window = x[(bs, first.in_slice(), *tap.rest_in)]
            dst = col[(slice(None), first.out_slice(rs.start), *tap.rest_out)]
            np.copyto(dst, window.reshape(*window.shape[:-1], groups, c_in_g))
        grouped_matmul(patches.reshape(m_blk, groups * width), wg, oblk.reshape(m_blk, c_out))
        if bias is not None and not fused:
            oblk += bias  # while the block is still in cache
    return out


# --- scatter ------------------------------------------------------------------------------------


def _scatter(x, w, geo: _Geometry, im2col: bool, budget: int, out: np.ndarray) -> np.ndarray:
    """Both scatter formulations: per block of input rows, per-tap products (or one product for
    all taps) added into each tap's clipped, strided region of the output.

    col2im stores its products positions-innermost, (G, Cout_g, K, M), with the weight as a
    view ((G, Cin_g, Cout_g * K) columns): each tap's adds then run long inner loops over
    positions, which is what makes it pay off for thin outputs (the only place the chooser
    picks it). A tap-major layout would need a transposed weight copy, which costs more than
    it saves on every wide corpus layer."""
    n, size, c_in, c_out, groups = geo.n, geo.size, geo.c_in, geo.c_out, geo.groups
    nd, taps = len(size), len(geo.taps)
    c_in_g, c_out_g = c_in // groups, c_out // groups
    row_pos = math.prod(size[1:])
    input_copy = not (x.dtype == geo.dtype and x.flags.c_contiguous)
    formulation = "im2col" if im2col else "per-tap"
    row = row_elements(formulation, True, row_pos, c_in, c_out, taps, input_copy)
    if im2col:  # (G, Cout_g, *K, Cin_g) -> (G, Cin_g, Cout_g, *K) -> (G, Cin_g, Cout_g * K)
        wk = _weight_view(w, groups, (0, 2 + nd, 1, *range(2, 2 + nd)), geo.dtype).reshape(
            groups, c_in_g, -1
        )
    else:  # (*K, G, Cin_g, Cout_g)
        wk = _weight_view(w, groups, (*range(2, 2 + nd), 0, 2 + nd, 1), geo.dtype)
    width = c_out * (taps if im2col else 1)
    m_max = _first_block_rows(n, size[0], row, budget // 8) * row_pos
    inputs, products = _Scratch(m_max * c_in, geo.dtype), _Scratch(m_max * width, geo.dtype)
    channels_first = (nd + 1, nd + 2, *range(nd + 1))  # (nb, *S, G, Cout_g) -> (G, Cout_g, nb, *S)
    for bs, rs in blocks(n, size[0], row, budget // 8):
        xblk = x[bs, rs]
        a = _as_matrix(xblk, inputs)
        m_blk, lead = a.shape[0], xblk.shape[:-1]
        if im2col:  # all taps' products, (G, Cout_g, K, M)
            prod = products.take((groups, width // groups, m_blk))
            np.matmul(
                a.reshape(m_blk, groups, c_in_g).transpose(1, 0, 2), wk, out=prod.transpose(0, 2, 1)
            )
            per_tap = prod.reshape(groups, c_out_g, taps, *lead)
        else:  # one tap's products (M, G, Cout_g) at a time
            prod = products.take((m_blk, width))
            per_row = prod.reshape(*lead, groups, c_out_g)
        for t, tap in enumerate(geo.taps):
            first = tap.clip(rs.start, rs.stop, "in")
            if first is None:
                continue
            rows = (first.in_slice(rs.start), *tap.rest_in)
            dst = out[(bs, first.out_slice(), *tap.rest_out)]
            # Splitting the contiguous channel axis is always a view: the add lands in ``out``.
            dst = dst.reshape(*dst.shape[:-1], groups, c_out_g)
            if im2col:
                src = per_tap[(slice(None), slice(None), t, slice(None), *rows)]
                dst = dst.transpose(channels_first)
            else:
                grouped_matmul(a, wk[tap.index], prod)
                src = per_row[(slice(None), *rows)]
            np.add(src, dst, out=dst)  # iteration order follows ``src``, the first operand
    return out


# --- entry points -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TapCounts:
    """How many kernel taps land on each output position (on real input elements): per axis a
    count, since a tap lands iff it does along every axis, so the counts multiply."""

    out_size: tuple[int, ...]
    taps: tuple[_Tap, ...]

    def per_position(self) -> np.ndarray:
        """Counts of shape ``(1, *out_size, 1)``, int64."""
        axes = []
        for a, n in enumerate(self.out_size):
            count = np.zeros(n, np.int64)
            seen: set[int] = set()
            for tap in self.taps:
                if tap.index[a] in seen:
                    continue
                seen.add(tap.index[a])
                span = tap.spans[a]
                if span.count:
                    count[span.out_slice()] += 1
            axes.append(count)
        if not axes:
            return np.zeros((1, 1), np.int64)
        per = functools.reduce(np.multiply.outer, axes)
        return per.reshape(1, *self.out_size, 1)


def _in_dtype(
    compute: Callable[..., np.ndarray],
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    groups: int,
    with_bound: bool,
    dtype: type,
) -> ConvResult:
    """The output computed in ``dtype`` instead of float64 (products, sums and the result): the
    same formulations as a float32 kernel would run them, for calibrating the diff engine's
    statistical tier. No bound: its inputs must be float64 sums."""
    if with_bound:
        raise ValueError("with_bound needs compute_dtype float64")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"compute_dtype must be float32 or float64, got {np.dtype(dtype)}")
    b = None if bias is None else np.asarray(bias).astype(dtype)
    return ConvResult(compute(x, w, groups, b, dtype))


def _with_bound(
    compute: Callable[..., np.ndarray],
    counts: _TapCounts,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    groups: int,
    with_bound: bool,
) -> ConvResult:
    b = None if bias is None else _as_float(np.asarray(bias))
    # Products of one op: every weight element meets every input position once (an estimate
    # for strided ops, which is all the thread choice needs).
    macs = w.size * (x.size // max(x.shape[-1], 1)) * (2 if with_bound else 1)
    outputs = x.shape[0] * math.prod(counts.out_size) * w.shape[0]
    f32_sums = macs >= F32_SUMS_MIN_MACS or outputs >= F32_SUMS_MIN_OUTPUTS
    if macs < TINY_OP_MACS:  # BLAS runs these on one thread anyway: no setting to change
        return _compute_with_bound(compute, counts, x, w, b, groups, with_bound, f32_sums)
    with blas_threads_for(macs):
        return _compute_with_bound(compute, counts, x, w, b, groups, with_bound, f32_sums)


#: float32 unit roundoff and half its smallest subnormal spacing: the error of one rounding.
U32 = 2.0**-24
TINY32 = 2.0**-150
#: The bound's sums are computed in float32 for ops of at least this many multiply-adds (output
#: and bound) or output elements; below both they are float64, computed in the same pass as the
#: output (:func:`_paired`), which saves more than float32's cheaper products there: over the
#: default release run's 2459 valid cases, float32 sums for every op took 1.06x the time of the
#: previous code (float64 sums in a pass of their own below 4M multiply-adds), these thresholds
#: 0.82x (interleaved in one process). From 16384 output elements float32 wins on the corpus's
#: small depthwise layers (10-20%) and halves the memory of the sums.
F32_SUMS_MIN_MACS = 1 << 22
F32_SUMS_MIN_OUTPUTS = 1 << 14
#: Ops below which no BLAS thread setting is made (OpenBLAS runs such products on one thread by
#: itself).
TINY_OP_MACS = 1 << 16
#: The float32 sums serve as long as ``(terms + 1) * U32`` stays below this (terms < 1.6e5);
#: past it, and wherever they overflow, the bound's sums are computed in float64.
F32_SUMS_MAX_GAMMA = 0.01


def _compute_with_bound(
    compute: Callable[..., np.ndarray],
    counts: _TapCounts,
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    groups: int,
    with_bound: bool,
    f32_sums: bool,
) -> ConvResult:
    if not with_bound:
        return ConvResult(compute(x, w, groups, b))
    # The number of terms does not depend on batch or channel: the taps that land on each
    # position, times the channels each output element reduces over (plus one for the bias).
    per_element = counts.per_position() * (x.shape[-1] // groups) + (b is not None)
    if f32_sums:
        out = compute(x, w, groups, b)
        abs_sum = _abs_sums(compute, x, w, b, groups, per_element)
    else:
        out, abs_sum = _paired(compute, x, w, b, groups)
    terms = np.broadcast_to(per_element, out.shape)  # read-only; the diff only reads it
    return ConvResult(out, abs_sum, terms)


def _paired(
    compute: Callable[..., np.ndarray],
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The output and its float64 ``sum |x||w|`` (plus ``|b|``) in one pass: a convolution with
    twice the groups, of ``[x, |x|]`` (channels) with ``[w; |w|]`` (output channels) and bias
    ``[b, |b|]``, whose first ``C_out`` output channels are the output and the others the sums.
    The groups never mix, so each half is what a call of its own would compute; small ops
    thereby pay the per-tap and per-block work once instead of twice."""
    xx = np.concatenate([x, _magnitude(x)], axis=-1)
    ww = np.concatenate([w, _magnitude(w)], axis=0)
    bb = None if b is None else np.concatenate([b, abs(b)])
    both = compute(xx, ww, 2 * groups, bb)
    c_out = w.shape[0]
    # Contiguous copies, like every other result: this path only serves small outputs.
    return np.ascontiguousarray(both[..., :c_out]), np.ascontiguousarray(both[..., c_out:])


def _abs_sums(
    compute: Callable[..., np.ndarray],
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    groups: int,
    terms: np.ndarray,
) -> np.ndarray:
    """``sum |x||w|`` (plus ``|b|``) per output element, or an upper bound on it within a
    relative ``(2 (terms + 1) + 6) 2^-24`` and ``(terms + 1) 2^-147``: computed in float32 (half
    the cost of float64, and half its memory: the result stays float32), then raised by what
    float32 rounding can have taken off.

    Every term is non-negative and passes through at most ``k = terms + 1`` roundings (its
    product, then each addition: within the products, across taps and blocks, the bias),
    whatever the summation order, so the float32 sum ``s`` satisfies ``s >= S (1 - U32)^k - k
    TINY32`` (the second part: products that underflow). Hence ``S <= (s + k TINY32) F`` with
    ``F = 1 / (1 - g)``, ``g = k U32 / (1 - k U32) >= 1 - (1 - U32)^k``. :func:`_raise_sums`
    evaluates that in float32, rounding included, from above. This needs exact float32 operands:
    float64 inputs (the gradients' cotangents) keep float64 sums, as do sums that float32 could
    not hold (bfloat16 inputs near float32's range, non-finite inputs) or where ``g`` would not
    be small.
    """
    ax, aw = _magnitude(x), _magnitude(w)
    ab = None if b is None else _magnitude(b)
    n1 = float(terms.max(initial=0)) + 1
    exact32 = all(a.dtype.itemsize <= 4 for a in (ax, aw) + (() if ab is None else (ab,)))
    if exact32 and n1 * U32 < F32_SUMS_MAX_GAMMA:
        # The largest exact sum; NaN or inf (non-finite inputs) fail the comparison.
        peak = float(ax.max(initial=0)) * float(aw.max(initial=0)) * n1
        peak += 0.0 if ab is None else float(ab.max(initial=0))
        if peak < F32_SUMS_MAX:
            s32 = compute(
                ax.astype(np.float32, copy=False),
                aw.astype(np.float32, copy=False),
                groups,
                None if ab is None else ab.astype(np.float32),
                np.float32,
            )
            return _raise_sums(s32, terms)
    return compute(ax, aw, groups, ab)


def _as_float(a: np.ndarray) -> np.ndarray:
    """A float array as it is (its values are exact in float64), anything else as float64."""
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _magnitude(a: np.ndarray) -> np.ndarray:
    """``|a|`` as floats: a float array keeps its dtype; integers become float64 (``abs`` of the
    most negative integer of a signed type would stay negative)."""
    return np.abs(a) if a.dtype.kind == "f" else np.abs(a, dtype=np.float64)


#: Exact sums below this cannot overflow in float32, rounding and the raise included.
F32_SUMS_MAX = float(np.finfo(np.float32).max) / 4


def _raise_sums(s32: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Raise float32 sums ``s32`` (in place) to ``fl(fl(s32 * F') + C)`` with per-position
    float32 constants ``F' = fl(F (1 + 2^-22))`` and ``C = k 2^-148`` (``k = terms + 1``), which
    is at least ``(s32 + k TINY32) F``, the bound on the exact sum (:func:`_abs_sums`):

    * ``F' >= F (1 + 2^-22)(1 - 2^-24)``. Where ``s32 F'`` is a normal float32, its rounding
      loses at most a relative 2^-24, so ``r = fl(s32 F') >= s32 F (1 + 2^-22)(1 - 2^-24)^2``;
      then ``fl(r + C) >= (r + C)(1 - 2^-24) >= s32 F + k 2^-149 >= s32 F + k TINY32 F``
      (``(1 + 2^-22)(1 - 2^-24)^3 > 1`` and ``F < 2``).
    * Where ``s32 F'`` is subnormal, ``r >= s32 F - 2^-150``; ``r + C`` is exact if subnormal and
      loses at most ``2^-24 (r + C)`` (about 2^-150) if not, and ``C - 2^-150 - 2^-150 >= k
      2^-149 >= k TINY32 F``.

    The raise adds at most a relative ``(2 k + 6) 2^-24`` and ``k 2^-147``. Two float32 passes
    over the output; ``terms`` is per position, so the constants are small.
    """
    k = terms.astype(np.float64) + 1  # (1, *O, 1)
    gamma = k * U32 / (1 - k * U32)
    factor = (1 / (1 - gamma) * (1 + 2.0**-22)).astype(np.float32)
    np.multiply(s32, factor, out=s32)
    np.add(s32, (k * 2.0**-148).astype(np.float32), out=s32)
    return s32


def _pad_or_crop(x: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """Pad spatial axes with zeros (positive) or crop them (negative), per side. (Used by
    :mod:`reference.grad`; the cores themselves clip by index arithmetic instead.)"""
    x = np.pad(x, [(0, 0)] + [(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)] + [(0, 0)])
    crop = tuple(
        slice(max(-a, 0), x.shape[1 + i] - max(-b, 0)) for i, (a, b) in enumerate(zip(lo, hi))
    )
    return x[(slice(None), *crop, slice(None))]


def _ints(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@functools.lru_cache(maxsize=256)
def _gather_taps(
    kernel: tuple[int, ...],
    size: tuple[int, ...],
    out_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding_lo: tuple[int, ...],
    dilation: tuple[int, ...],
    input_dilation: tuple[int, ...],
    flip: bool,
) -> tuple[_Tap, ...]:
    """The gather's taps (cached: a bounded call computes three times on the same geometry, and
    the harness repeats shapes). A flipped gather applies tap ``t``'s weight at kernel position
    ``K - 1 - t``."""
    return tuple(
        _Tap.build(
            tap,
            [
                gather_span((k - 1 - t if flip else t) * d - lo, s, di, st, o)
                for t, k, d, lo, s, di, st, o in zip(
                    tap, kernel, dilation, padding_lo, size, input_dilation, stride, out_size
                )
            ],
        )
        for tap in itertools.product(*(range(k) for k in kernel))
    )


@functools.lru_cache(maxsize=256)
def _scatter_taps(
    kernel: tuple[int, ...],
    size: tuple[int, ...],
    out_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding_lo: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[_Tap, ...]:
    """The scatter's taps (cached like :func:`_gather_taps`)."""
    return tuple(
        _Tap.build(
            tap,
            [
                scatter_span(t * d - lo, s, st, o)
                for t, d, lo, s, st, o in zip(tap, dilation, padding_lo, size, stride, out_size)
            ],
        )
        for tap in itertools.product(*(range(k) for k in kernel))
    )


def auto_formulation(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    out_shape: Sequence[int],
    *,
    transposed: bool,
    groups: int,
    block_bytes: int | None = None,
) -> str:
    """What ``formulation="auto"`` runs for a core call with these shapes: the chooser, given the
    row length of the blocked array (output for the gather, input for the scatter) and the
    block budget."""
    c_out, *kernel, _ = w_shape
    rows_of = x_shape if transposed else out_shape
    return choose_formulation(
        transposed=transposed,
        c_in=x_shape[-1],
        c_out=c_out,
        groups=groups,
        kernel=kernel,
        row_positions=math.prod(rows_of[2:-1]),
        budget_bytes=block_bytes or block_budget(x_shape, w_shape, out_shape),
    )


def _check_formulation(formulation: str) -> None:
    if formulation != "auto" and formulation not in FORMULATIONS:
        raise ValueError(
            f"formulation must be 'auto' or one of {', '.join(FORMULATIONS)}, got {formulation!r}"
        )


def _resolve(formulation: str, *shapes: Sequence[int], **kw) -> str:
    return auto_formulation(*shapes, **kw) if formulation == "auto" else formulation


def conv_general(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Sequence[int],
    padding_lo: Sequence[int],
    padding_hi: Sequence[int],
    kernel_dilation: Sequence[int],
    input_dilation: Sequence[int] | None = None,
    groups: int = 1,
    flip: bool = False,
    with_bound: bool = False,
    formulation: str = "auto",
    block_bytes: int | None = None,
    bias: np.ndarray | None = None,
    compute_dtype: type = np.float64,
) -> ConvResult:
    """General gather convolution (cross-correlation unless ``flip``), no parameter checks.

    Callers (:mod:`reference.ops`) validate; this function trusts its arguments. Input dilation
    places ``input_dilation - 1`` zeros between input elements (by index arithmetic: taps that
    land on them are skipped). Negative padding crops. ``formulation``: ``"auto"``,
    ``"per-tap"`` or ``"im2col"``; ``block_bytes`` overrides :func:`block_budget`. ``bias``
    (``(C_out,)``, optional) is added to each output block as soon as it is complete, or by
    im2col's product itself (a ones column); with ``with_bound`` its ``|b|`` joins ``abs_sum``
    and it counts as one more term. ``compute_dtype=np.float32`` computes in float32 (no bound).
    """
    _check_formulation(formulation)
    nd = x.ndim - 2
    input_dilation = tuple(input_dilation or (1,) * nd)

    def geometry(size: Sequence[int], kernel: Sequence[int]) -> tuple[tuple[int, ...], tuple]:
        """Output size and taps of spatial ``size`` with a ``kernel`` (taps empty if no output)."""
        dilated = [(s - 1) * d + 1 for s, d in zip(size, input_dilation)]
        out_size = tuple(
            int(max(0, (s + lo + hi - d * (k - 1) - 1) // st + 1))
            for s, lo, hi, d, k, st in zip(
                dilated, padding_lo, padding_hi, kernel_dilation, kernel, stride
            )
        )
        if 0 in out_size:
            return out_size, ()
        taps = _gather_taps(
            _ints(kernel),
            _ints(size),
            out_size,
            _ints(stride),
            _ints(padding_lo),
            _ints(kernel_dilation),
            _ints(input_dilation),
            bool(flip),
        )
        return out_size, taps

    # Once per op: every compute() call (the output, the bound's sums) has x's and w's spatial
    # shapes, so they share the output size and taps.
    out_size, taps = geometry(x.shape[1:-1], w.shape[1:-1])

    def compute(
        xv: np.ndarray,
        wv: np.ndarray,
        groups: int,
        bv: np.ndarray | None,
        dtype: type = np.float64,
    ) -> np.ndarray:
        n, *size, c_in = xv.shape
        c_out = wv.shape[0]
        out_shape = (n, *out_size, c_out)
        if n == 0 or 0 in out_size:
            return np.zeros(out_shape, dtype)
        geo = _Geometry(n, tuple(size), out_size, c_in, c_out, groups, taps, dtype)
        budget = block_bytes or block_budget(xv.shape, wv.shape, out_shape)
        chosen = _resolve(
            formulation,
            xv.shape,
            wv.shape,
            out_shape,
            transposed=False,
            groups=groups,
            block_bytes=budget,
        )
        fn = _gather_im2col if chosen == "im2col" else _gather_per_tap
        return fn(xv, wv, bv, geo, budget)

    if np.dtype(compute_dtype) != np.float64:
        return _in_dtype(compute, x, w, bias, groups, with_bound, compute_dtype)
    return _with_bound(compute, _TapCounts(out_size, taps), x, w, bias, groups, with_bound)


def conv_transpose_general(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Sequence[int],
    padding_lo: Sequence[int],
    padding_hi: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
    groups: int = 1,
    with_bound: bool = False,
    formulation: str = "auto",
    block_bytes: int | None = None,
    bias: np.ndarray | None = None,
    compute_dtype: type = np.float64,
) -> ConvResult:
    """Scatter form of the transposed convolution, no parameter checks.

    ``out[i*s - p_lo + k*d] += x[i] . w[:, k, :]`` for every input position ``i`` and tap ``k``;
    the output spans ``(S-1)s + d(K-1) + 1 - p_lo - p_hi + output_padding`` positions, the
    output padding extending the high end. Weight ``(C_out, *K, C_in/groups)``, not flipped.
    Products are added straight into the output, each tap clipped to it (no buffer, no crop).
    ``formulation``, ``block_bytes`` and ``bias`` as for :func:`conv_general`; the bias is the
    output's initial value (instead of zeros), so it costs no pass of its own.
    """
    _check_formulation(formulation)

    def geometry(size: Sequence[int], kernel: Sequence[int]) -> tuple[tuple[int, ...], tuple]:
        """Output size and taps of spatial ``size`` with a ``kernel`` (taps empty if no output)."""
        out_size = tuple(
            int(max(0, (s - 1) * st + d * (k - 1) + 1 - lo - hi + op))
            for s, st, d, k, lo, hi, op in zip(
                size, stride, dilation, kernel, padding_lo, padding_hi, output_padding
            )
        )
        if 0 in out_size:
            return out_size, ()
        taps = _scatter_taps(
            _ints(kernel),
            _ints(size),
            out_size,
            _ints(stride),
            _ints(padding_lo),
            _ints(dilation),
        )
        return out_size, taps

    # Once per op: every compute() call (the output, the bound's sums) has x's and w's spatial
    # shapes, so they share the output size and taps.
    out_size, taps = geometry(x.shape[1:-1], w.shape[1:-1])

    def compute(
        xv: np.ndarray,
        wv: np.ndarray,
        groups: int,
        bv: np.ndarray | None,
        dtype: type = np.float64,
    ) -> np.ndarray:
        n, *size, c_in = xv.shape
        c_out = wv.shape[0]
        if bv is None:
            out = np.zeros((n, *out_size, c_out), dtype)
        else:
            out = np.empty((n, *out_size, c_out), dtype)
            out[...] = bv
        if n == 0 or 0 in out_size:
            return out
        geo = _Geometry(n, tuple(size), out_size, c_in, c_out, groups, taps, dtype)
        budget = block_bytes or block_budget(xv.shape, wv.shape, out.shape)
        chosen = _resolve(
            formulation,
            xv.shape,
            wv.shape,
            out.shape,
            transposed=True,
            groups=groups,
            block_bytes=budget,
        )
        return _scatter(xv, wv, geo, chosen == "im2col", budget, out)

    if np.dtype(compute_dtype) != np.float64:
        return _in_dtype(compute, x, w, bias, groups, with_bound, compute_dtype)
    return _with_bound(compute, _TapCounts(out_size, taps), x, w, bias, groups, with_bound)
