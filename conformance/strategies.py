"""The case space: valid and invalid cases, one op at a time, and their Hypothesis strategies.

The space is written once, against :class:`~conformance.draw.Draw`: :func:`draw_valid_case` and
:func:`draw_invalid_case` build a case from a sequence of choices. :func:`valid_cases` and
:func:`invalid_cases` are the Hypothesis strategies over them (pytest, shrinking); the CLI draws
the same space from a seeded generator (:mod:`conformance.generate`).

The space is wide: batch 1-4; up to 256 input and output channels; groups 1-8, and depthwise
(groups = in_channels, up to 64, with a channel multiplier); kernels 1-7 on every axis in 1-D,
2-D and 3-D (odd and even; 1 and 3 twice as often as the others); stride up to 4/3/3 and
dilation up to 3/3/2 (1-D/2-D/3-D); padding up to 3. A case is held to a *work budget* instead
of small caps on each parameter: :data:`BUDGET` bounds its products (output elements x
in_channels/groups x kernel taps, see :func:`work`) at 2^18 and the float32 bytes of its input,
weight, bias and output at 2 MiB.

Choices come in order, structure first (the kind of case, its groups, per axis kernel, stride,
dilation and a forward op's padding), then sizes (batch, channels, per axis the input size and a
transposed op's output padding and padding). Each value is drawn, then fitted: lowered to the
largest value that keeps the case within the budget with every later choice at its lowest
(:meth:`_Plan.fit`), so every case is valid and within budget by construction; nothing is
filtered. Sizes are drawn log-uniformly (:func:`sized`: each power-of-two band above the range's
low end equally likely), so most cases are small while some fill the budget. Draws depend
neither on the budget nor on the kind of case, and the low end of every range is the simple
value: Hypothesis shrinks a case to batch 1, one channel, kernel 1, the smallest input, groups
1, float32, the uniform fill, and a value that must pass a threshold (64 channels, batch 3) to
the threshold. The input fill (:data:`FILL_CHOICES`) comes after the sizes: uniform in 5 of 9
cases, small integers, sparse, wide and special values in 1 of 9 each; then the direction and the
layout where the caller allows more than one, and last a forward op's padding mode
(:data:`PADDING_MODE_CHOICES`: ``same`` / ``valid`` in a quarter of the cases each, half the
``same`` ones with stride 1).

The kind of a case (:data:`KINDS`): dense (groups 1; half the cases), grouped (2-8 groups),
depthwise, and long: groups 1 and at least :data:`LONG_REDUCTION` products per output element
(enough input channels for its kernel, and on its last axis a kernel that MAX_CHANNELS can
fill), where summation order and accumulation precision show. Over 2,000 draws per op: 13-31%
of the cases are reductions of at least 1024 products per element (dense 3-D kernels make many
more than the long kind's 12.5%), 30-35% have batch >= 3, 24% are depthwise; the median case
has 3,840 products in conv1d and 115,200 in conv3d (42,000 over all ops), and 14-48% of the
cases have more than half the budget.

The budget was picked by timing the release run (README, "The same cases twice"): up to 2^18
products a case costs a backend little more than its per-call overhead, and 2^20 cost about
twice as much extra run time over the old, tiny space as 2^18.

Invalid cases start from a valid one drawn within :data:`INVALID_BUDGET` (they test validation,
and the output_size rule grows a kernel axis past the padded input) and break exactly one rule,
named in :data:`INVALID_RULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from hypothesis import strategies as st

from conformance.case import ALL_OPS, DIRECTIONS, FILLS, GENERAL_OPS, Case
from conformance.draw import Draw, HypothesisDraw
from conformance.dtypes import DTYPES
from conformance.layouts import LAYOUTS
from reference.params import general_output_shape, mode_padding


@dataclass(frozen=True)
class Budget:
    """The most work one case may take."""

    #: output elements x (in_channels / groups) x kernel taps
    products: int
    #: float32 bytes of input, weight, bias and output
    bytes: int


#: The budget of a generated valid case (measured: see the module docstring and README).
BUDGET = Budget(products=2**18, bytes=2**21)
#: The budget of the valid case an invalid one starts from: small, since no backend should compute
#: it, and the output_size rule grows a kernel axis to the padded input's size.
INVALID_BUDGET = Budget(products=2**14, bytes=2**16)

MAX_BATCH = 4
#: Input and output channels (a 1-D reduction of LONG_REDUCTION products with a kernel of 7
#: needs 147 input channels per group).
MAX_CHANNELS = 256
#: Groups of a grouped case; a depthwise case has groups = in_channels up to MAX_DEPTHWISE.
MAX_GROUPS = 8
MAX_DEPTHWISE = 64
#: Kernel sizes per axis, drawn uniformly from this tuple: 1 (pointwise, a fast path in many
#: libraries) and 3 (the commonest layer) twice as often as the others.
KERNEL_SIZES = (1, 1, 2, 3, 3, 4, 5, 6, 7)
MAX_KERNEL = max(KERNEL_SIZES)
#: spatial dims -> max stride, max dilation
MAX_STRIDE = {1: 4, 2: 3, 3: 3}
MAX_DILATION = {1: 3, 2: 3, 3: 2}
MAX_PADDING = 3
#: spatial dims -> most input positions per axis beyond the fewest the case needs (the budget
#: usually binds first)
MAX_EXTRA = {1: 64, 2: 24, 3: 12}
#: Products per output element of a long-reduction case (the coverage table's threshold).
LONG_REDUCTION = 1024

#: The kinds of case, drawn uniformly from this tuple (repeats weigh; Hypothesis shrinks toward
#: the first).
KINDS = ("dense", "dense", "dense", "dense", "grouped", "grouped", "depthwise", "long")

#: Input fills drawn (conformance.inputs.make_inputs): uniform in 5 of 9 cases (first: the
#: simple end Hypothesis shrinks to), each other fill in 1 of 9.
FILL_CHOICES: tuple[str, ...] = ("uniform",) * 5 + tuple(f for f in FILLS if f != "uniform")
#: Directions drawn, after the fill: forward in half the cases (the first: Hypothesis shrinks to
#: it), input and weight gradients in a quarter each; only those a caller allows, and forward
#: for the special fill (whose IEEE values the reference defines for the forward output only).
DIRECTION_CHOICES: tuple[str, ...] = ("fwd", "fwd", "bwd_d", "bwd_w")
#: Input layouts drawn, after the direction (:mod:`conformance.layouts`): contiguous (the first:
#: Hypothesis shrinks to it) in half the cases, the others sharing the rest; only those a caller
#: allows and the case's batch admits (``unbatched`` needs batch 1, ``expanded`` a batch to
#: expand, more than 1).
LAYOUT_CHOICES: tuple[str, ...] = tuple(LAYOUTS)

#: Padding modes drawn for a forward ``conv1d/2d/3d`` case, last: the explicit numbers (the
#: first: Hypothesis shrinks to it) in half the cases, ``same`` and ``valid`` (given to the API
#: as strings, :data:`reference.params.PADDING_MODES`) in a quarter each; half the ``same``
#: cases get stride 1 (:func:`_padding_mode`).
PADDING_MODE_CHOICES: tuple[str, ...] = ("explicit", "explicit", "same", "valid")

#: The general convolutions' input dilations per axis, by spatial dims (1 first: Hypothesis
#: shrinks to it).
INPUT_DILATIONS = {1: (1, 1, 2, 3), 2: (1, 1, 2, 3), 3: (1, 1, 2)}

#: The rules an invalid case breaks (one each; output_padding for the transposed ops only,
#: input_dilation for the general ones only).
INVALID_RULES = (
    "stride",
    "dilation",
    "padding",
    "output_padding",
    "groups",
    "output_size",
    "input_dilation",
)


def sized(pick: Draw, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi]``, log-uniform above ``lo``: the excess over ``lo`` falls in
    0, 1, 2-3, 4-7, ... (the power-of-two bands up to ``hi - lo``) with each band equally
    likely, and evenly inside a band, so small values are common and the top of the range still
    appears. One integer is drawn and mapped onto the value by an increasing function (each band
    gets the same number of draws, at least as many as it has values): Hypothesis shrinks it as
    it shrinks an integer, to ``lo``, and a value that must pass a threshold to the threshold."""
    span = hi - lo
    if span <= 0:
        return lo
    top = span.bit_length()  # bands 0 (excess 0), 1 (excess 1), ..., top
    width = 1 << (top - 1)  # draws per band: the widest band's values
    u = pick.integer(0, (top + 1) * width - 1)
    band, r = divmod(u, width)
    if band == 0:
        return lo
    first = 1 << (band - 1)
    values = min(span, (1 << band) - 1) - first + 1
    return lo + first + r * values // width


def _out_size(transposed: bool, n: int, k: int, s: int, p: int, d: int, o: int) -> int:
    if transposed:
        return (n - 1) * s - 2 * p + d * (k - 1) + o + 1
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _work(
    transposed: bool,
    batch: int,
    c_in: int,
    c_out: int,
    groups: int,
    spatial: tuple[int, ...] | list[int],
    kernel: tuple[int, ...] | list[int],
    stride: tuple[int, ...] | list[int],
    padding: tuple[int, ...] | list[int],
    dilation: tuple[int, ...] | list[int],
    output_padding: tuple[int, ...] | list[int],
) -> tuple[int, int]:
    out = [
        max(0, _out_size(transposed, *axis))
        for axis in zip(spatial, kernel, stride, padding, dilation, output_padding)
    ]
    return _totals(batch, c_in, c_out, groups, spatial, kernel, out)


def _totals(
    batch: int,
    c_in: int,
    c_out: int,
    groups: int,
    spatial: tuple[int, ...] | list[int],
    kernel: tuple[int, ...] | list[int],
    out_spatial: tuple[int, ...] | list[int],
) -> tuple[int, int]:
    """(products, bytes) of a case with these sizes and this output size."""
    out = batch * c_out * math.prod(out_spatial)
    taps = math.prod(kernel)
    c_in_g = c_in // groups
    products = out * c_in_g * taps
    elements = batch * math.prod(spatial) * c_in + c_out * taps * c_in_g + c_out + out
    return products, 4 * elements


def work(case: Case) -> tuple[int, int]:
    """(products, bytes) of a valid case: output elements x (in_channels / groups) x kernel
    taps (every product of the dense formulation; for a transposed op, of its forward form, as
    :func:`conformance.inputs.reduction_terms` counts them), and the float32 bytes of input,
    weight, bias (counted whether or not the case has one) and output. The output size is the
    case's own (:meth:`~conformance.case.Case.output_spatial`: high padding, input dilation and
    padding modes included)."""
    out = case.output_spatial() or (0,)
    return _totals(
        case.batch,
        case.in_channels,
        case.out_channels,
        case.groups,
        case.spatial,
        case.kernel,
        out,
    )


class _Plan:
    """A valid case being drawn: the choices made so far (None: not yet), the lower bound of each
    choice not made yet, and the work of the case so far with every later choice at its lower
    bound."""

    def __init__(self, op: str, kind: str, groups: int | None, budget: Budget) -> None:
        self.nd, self.transposed = ALL_OPS[op]
        self.kind, self.budget = kind, budget
        self.groups = groups  # None: depthwise, groups = in_channels (drawn with the sizes)
        none: list[int | None] = [None] * self.nd
        self.kernel, self.stride, self.dilation = list(none), list(none), list(none)
        self.padding, self.output_padding, self.spatial = list(none), list(none), list(none)
        self.batch: int | None = None
        self.depthwise_channels: int | None = None
        self.c_in_g: int | None = None
        self.c_out_g: int | None = None

    # -- lower bounds ------------------------------------------------------------------------

    def kernel_lo(self, axis: int, before: list[int]) -> int:
        """1; the last axis of a long case: what reaches LONG_REDUCTION with MAX_CHANNELS."""
        if self.kind != "long" or axis != self.nd - 1:
            return 1
        return -(-LONG_REDUCTION // (MAX_CHANNELS * math.prod(before)))

    def c_in_g_lo(self, taps: int) -> int:
        if self.kind != "long":
            return 1
        return min(MAX_CHANNELS, -(-LONG_REDUCTION // taps))

    def spatial_lo(self, k: int, p: int, d: int) -> int:
        return 1 if self.transposed else max(1, d * (k - 1) + 1 - 2 * p)

    # -- the case so far, completed with lower bounds ----------------------------------------

    def complete(self) -> dict:
        kernel: list[int] = []
        for axis, k in enumerate(self.kernel):
            kernel.append(self.kernel_lo(axis, kernel) if k is None else k)
        stride = [1 if s is None else s for s in self.stride]
        dilation = [1 if d is None else d for d in self.dilation]
        padding = [0 if p is None else p for p in self.padding]
        output_padding = [0 if o is None else o for o in self.output_padding]
        spatial = [
            self.spatial_lo(k, p, d) if n is None else n
            for n, k, p, d in zip(self.spatial, kernel, padding, dilation)
        ]
        groups = self.groups
        if groups is None:
            groups = 2 if self.depthwise_channels is None else self.depthwise_channels
        c_in_g = self.c_in_g_lo(math.prod(kernel)) if self.c_in_g is None else self.c_in_g
        c_out_g = 1 if self.c_out_g is None else self.c_out_g
        return dict(
            batch=1 if self.batch is None else self.batch,
            in_channels=groups * c_in_g,
            out_channels=groups * c_out_g,
            groups=groups,
            spatial=tuple(spatial),
            kernel=tuple(kernel),
            stride=tuple(stride),
            padding=tuple(padding),
            dilation=tuple(dilation),
            output_padding=tuple(output_padding),
        )

    def work(self) -> tuple[int, int]:
        """(products, bytes) of the case so far, every later choice at its lower bound."""
        f = self.complete()
        return _work(
            self.transposed,
            f["batch"],
            f["in_channels"],
            f["out_channels"],
            f["groups"],
            f["spatial"],
            f["kernel"],
            f["stride"],
            f["padding"],
            f["dilation"],
            f["output_padding"],
        )

    def fits(self) -> bool:
        products, nbytes = self.work()
        return products <= self.budget.products and nbytes <= self.budget.bytes

    # -- drawing -----------------------------------------------------------------------------

    def choose(
        self,
        pick: Draw,
        assign: Callable[[int | None], None],
        lo: int,
        hi: int,
        *,
        log: bool = False,
        shape: str = "prefix",
        least: int | None = None,
    ) -> int:
        """Draw a value for one choice from ``[lo, hi]`` (:func:`sized` where ``log``), raise it
        to ``least`` (default ``lo``; higher for a long case's last kernel axis) and
        :meth:`fit` it to the budget."""
        least = lo if least is None else least
        drawn = sized(pick, lo, hi) if log else pick.integer(lo, hi)
        return self.fit(assign, max(drawn, least), least=least, shape=shape)

    def fit(
        self, assign: Callable[[int | None], None], want: int, *, least: int, shape: str
    ) -> int:
        """Set ``want`` (through ``assign``), lowered to ``top``: the largest value such that
        every value from ``least`` to it fits the budget (``least`` always does: the previous
        choice was fitted with it). The value set.

        Values are drawn first and fitted after, so a draw depends neither on the budget nor on
        the kind of case: when Hypothesis shrinks an earlier choice (less work, so a higher
        ``top``; a simpler kind) the later values stay as they were.

        ``shape`` says how the work depends on the value, and so how ``top`` is found:
        "affine" (batch, channels: solved from two values), "prefix" (the values that fit are
        those up to some point: the work grows with the value, or falls then grows, as with a
        forward op's padding; bisected) or "scan" (neither: value by value)."""
        top = self._top(assign, least, want, shape) if want > least else least
        assert top >= least, "the case space's lower bounds exceed its budget"
        value = min(want, top)
        assign(value)
        return value

    def _top(self, assign: Callable[[int | None], None], lo: int, hi: int, shape: str) -> int:
        if shape == "affine":
            assign(lo)
            base = self.work()
            assign(lo + 1)
            step = self.work()
            top = hi
            for limit, at_lo, at_next in zip((self.budget.products, self.budget.bytes), base, step):
                if at_next > at_lo:
                    top = min(top, lo + (limit - at_lo) // (at_next - at_lo))
        elif shape == "scan":
            top = lo
            for value in range(lo + 1, hi + 1):
                assign(value)
                if not self.fits():
                    break
                top = value
        else:
            assign(hi)
            if self.fits():
                top = hi
            else:
                top, high = lo, hi - 1
                while top < high:
                    mid = (top + high + 1) // 2
                    assign(mid)
                    if self.fits():
                        top = mid
                    else:
                        high = mid - 1
        assign(None)
        return top


def _setter(values: list[int | None], axis: int) -> Callable[[int | None], None]:
    def assign(value: int | None) -> None:
        values[axis] = value

    return assign


def _attr(plan: _Plan, name: str) -> Callable[[int | None], None]:
    return lambda value: setattr(plan, name, value)


def draw_valid_case(
    pick: Draw,
    op: str,
    dtypes: tuple[str, ...] = DTYPES,
    bias: bool | None = None,
    budget: Budget = BUDGET,
    directions: tuple[str, ...] = ("fwd",),
    layouts: tuple[str, ...] = ("contiguous",),
    padding_modes: bool = True,
) -> Case:
    """A valid case for ``op`` within ``budget``; ``bias`` None means drawn; the direction is
    drawn from :data:`DIRECTION_CHOICES` among ``directions`` (forward only by default), then
    the input layout among ``layouts`` (:func:`_layout`; contiguous only by default), then
    with ``padding_modes`` a forward op's padding mode (:func:`_padding_mode`)."""
    nd, transposed = ALL_OPS[op]
    general = op in GENERAL_OPS
    kind = pick.choice(KINDS)
    # Drawn for every kind (used by a grouped case), so the kinds' choice sequences line up.
    groups_drawn = pick.integer(2, MAX_GROUPS)
    groups = {"grouped": groups_drawn, "depthwise": None}.get(kind, 1)
    plan = _Plan(op, kind, groups, budget)

    # Structure, per axis: kernel, stride, dilation (and a forward op's padding).
    for axis in range(nd):
        k_lo = plan.kernel_lo(axis, plan.kernel[:axis])  # type: ignore[arg-type]
        # A long case's kernel changes the input channels it needs: scanned.
        k_shape = "scan" if kind == "long" else "prefix"
        k = max(pick.choice(KERNEL_SIZES), k_lo)
        plan.fit(_setter(plan.kernel, axis), k, least=k_lo, shape=k_shape)
        plan.choose(pick, _setter(plan.stride, axis), 1, MAX_STRIDE[nd])
        plan.choose(pick, _setter(plan.dilation, axis), 1, MAX_DILATION[nd])
        if not transposed:
            plan.choose(pick, _setter(plan.padding, axis), 0, MAX_PADDING)

    # Sizes: batch, channels, then per axis the input size (and a transposed op's output
    # padding and padding, which depend on it).
    plan.choose(pick, _attr(plan, "batch"), 1, MAX_BATCH, log=True, shape="affine")
    # Channels are drawn as totals for every kind (a grouped case keeps the multiple of its
    # groups at or below the total), so a simpler kind keeps about the same channel counts.
    c_in = sized(pick, 1, MAX_CHANNELS)
    c_out = sized(pick, 1, MAX_CHANNELS)
    if kind == "depthwise":
        plan.c_in_g = 1
        dw = _attr(plan, "depthwise_channels")
        plan.fit(dw, min(max(c_in, 2), MAX_DEPTHWISE), least=2, shape="affine")
        groups = plan.depthwise_channels
    else:
        assert groups is not None
        least = plan.c_in_g_lo(math.prod(plan.kernel))  # type: ignore[arg-type]
        plan.fit(_attr(plan, "c_in_g"), max(c_in // groups, least), least=least, shape="affine")
    assert groups is not None
    plan.fit(_attr(plan, "c_out_g"), max(c_out // groups, 1), least=1, shape="affine")
    for axis in range(nd):
        k, s, d = plan.kernel[axis], plan.stride[axis], plan.dilation[axis]
        assert k is not None and s is not None and d is not None
        if transposed:
            n = plan.choose(pick, _setter(plan.spatial, axis), 1, 1 + MAX_EXTRA[nd] // 2, log=True)
            o = plan.choose(pick, _setter(plan.output_padding, axis), 0, max(s, d) - 1)
            full = (n - 1) * s + d * (k - 1) + 1 + o
            plan.choose(pick, _setter(plan.padding, axis), 0, min(MAX_PADDING, (full - 1) // 2))
        else:
            p = plan.padding[axis]
            assert p is not None
            need = plan.spatial_lo(k, p, d)
            plan.choose(pick, _setter(plan.spatial, axis), need, need + MAX_EXTRA[nd], log=True)

    fields = plan.complete()
    if general:
        if "fwd" not in directions:
            raise ValueError(f"{op} cases are forward only: directions must include fwd")
        fields |= _general_fields(pick, fields, budget)
    dtype = pick.choice(dtypes)
    has_bias = pick.boolean() if bias is None else bias
    seed = pick.integer(0, 9999)
    fill = pick.choice(FILL_CHOICES)
    if fill == "special" and "fwd" not in directions:
        fill = "uniform"  # special values are defined for the forward output only
    # The general convolutions are checked forward only (see Case).
    direction = _direction(pick, ("fwd",) if general else directions, fill)
    case = Case(
        op=op,
        **fields,
        dtype=dtype,
        bias=has_bias,
        seed=seed,
        fill=fill,
        direction=direction,
        layout=_layout(pick, layouts, fields["batch"]),
    )
    if op in GENERAL_OPS or transposed or not padding_modes:
        return case
    return replace(case, **_padding_mode(pick, fields, budget))


def _padding_mode(pick: Draw, fields: dict, budget: Budget) -> dict[str, object]:
    """A forward op's padding mode (:data:`PADDING_MODE_CHOICES`), drawn after everything else
    (its numbers replace the drawn padding), as the fields to change: ``valid`` only where the
    unpadded input holds the dilated kernel on every axis; ``same`` only where its padding keeps
    the case within ``budget``, and then in half the draws with the stride set to 1 where that
    fits too (PyTorch's ``'same'`` takes stride 1 only; JAX's and ONNX's any). Explicit where the
    drawn mode is not admitted."""
    mode = pick.choice(PADDING_MODE_CHOICES)
    if mode == "explicit":
        return {}
    extents = [d * (k - 1) + 1 for k, d in zip(fields["kernel"], fields["dilation"])]
    if mode == "valid" and any(n < e for n, e in zip(fields["spatial"], extents)):
        return {}
    unit = mode == "same" and pick.boolean()
    for stride in ((1,) * len(extents), fields["stride"]) if unit else (fields["stride"],):
        args = (fields["spatial"], fields["kernel"], stride, fields["dilation"])
        lo, hi = mode_padding(mode, *args)
        if _fits({**fields, "stride": stride, "padding": lo}, [1] * len(lo), list(hi), budget):
            return {"padding_mode": mode, "stride": stride}
    return {}


def _direction(pick: Draw, directions: tuple[str, ...], fill: str) -> str:
    """The last choice of a case, drawn only where there is one (so a forward-only run draws
    exactly what it drew before directions existed); forward for the special fill."""
    choices = [d for d in DIRECTION_CHOICES if d in directions]
    if not choices:
        raise ValueError(
            f"directions must name at least one of {', '.join(DIRECTIONS)}, got {directions!r}"
        )
    direction = choices[0] if len(set(choices)) == 1 else pick.choice(choices)
    return "fwd" if fill == "special" else direction


def _general_fields(pick: Draw, fields: dict, budget: Budget) -> dict:
    """The general convolution's own fields, drawn on a plain forward case's: per axis an input
    dilation (:data:`INPUT_DILATIONS`) and a high padding (kept at the low one where a smaller
    one leaves no output), then the kernel flip. Where the dilated input's output takes the case
    over ``budget``, the last axes fall back to no input dilation until it fits."""
    nd = len(fields["spatial"])
    input_dilation, padding_hi = [], []
    for axis in range(nd):
        i = pick.choice(INPUT_DILATIONS[nd])
        hi = pick.integer(0, MAX_PADDING)
        lo, n = fields["padding"][axis], fields["spatial"][axis]
        extent = fields["dilation"][axis] * (fields["kernel"][axis] - 1) + 1
        if (n - 1) * i + 1 + lo + hi < extent:
            hi = lo
        input_dilation.append(i)
        padding_hi.append(hi)
    for axis in reversed(range(nd)):
        if _fits(fields, input_dilation, padding_hi, budget):
            break
        input_dilation[axis], padding_hi[axis] = 1, fields["padding"][axis]
    return {
        "input_dilation": tuple(input_dilation),
        "padding_hi": tuple(padding_hi),
        "flip": pick.boolean(),
    }


def _fits(fields: dict, input_dilation: list[int], padding_hi: list[int], budget: Budget) -> bool:
    """Whether a general case of ``fields`` with these extras is within ``budget``."""
    out = general_output_shape(
        fields["spatial"],
        fields["kernel"],
        fields["stride"],
        fields["padding"],
        padding_hi,
        fields["dilation"],
        input_dilation,
    )
    n, c_in, c_out = fields["batch"], fields["in_channels"], fields["out_channels"]
    c_in_g, taps = c_in // fields["groups"], math.prod(fields["kernel"])
    outputs = n * math.prod(out) * c_out
    floats = n * math.prod(fields["spatial"]) * c_in + c_out * taps * c_in_g + c_out + outputs
    return outputs * c_in_g * taps <= budget.products and 4 * floats <= budget.bytes


def _layout(pick: Draw, layouts: tuple[str, ...], batch: int) -> str:
    """The input layout, drawn last and only where there is a choice (so a contiguous-only run
    draws exactly what it drew before layouts existed): contiguous in half the draws when
    allowed, each other allowed layout the batch admits sharing the rest."""
    unknown = [lay for lay in layouts if lay not in LAYOUTS]
    if unknown or not layouts:
        raise ValueError(f"layouts must name some of {', '.join(LAYOUTS)}, got {layouts!r}")
    admitted = [
        lay
        for lay in LAYOUT_CHOICES[1:]
        if lay in layouts
        and (lay != "unbatched" or batch == 1)
        and (lay != "expanded" or batch > 1)
    ]
    choices = (["contiguous"] * max(len(admitted), 1) if "contiguous" in layouts else []) + admitted
    if not choices:
        return "contiguous"  # nothing the caller allows fits this batch: the default layout
    return choices[0] if len(set(choices)) == 1 else pick.choice(choices)


def _set(values: tuple[int, ...], axis: int, value: int) -> tuple[int, ...]:
    return values[:axis] + (value,) + values[axis + 1 :]


def draw_invalid_case(pick: Draw, op: str, dtypes: tuple[str, ...] = DTYPES) -> Case:
    """A case for ``op`` that breaks exactly one rule of :data:`INVALID_RULES`, built from a valid
    case within :data:`INVALID_BUDGET`."""
    # Explicit padding: a mode's padding follows the sizes, so no rule below could break it.
    case = draw_valid_case(pick, op, dtypes, budget=INVALID_BUDGET, padding_modes=False)
    transposed = ALL_OPS[op][1]
    rules = [
        r
        for r in INVALID_RULES
        if (transposed or r != "output_padding") and (case.general or r != "input_dilation")
    ]
    rule = pick.choice(rules)
    axis = pick.integer(0, case.ndim - 1)
    if rule == "stride":
        bad = pick.integer(-1, 0)
        # Keep output padding legal for the remaining max(stride, dilation).
        return replace(case, stride=_set(case.stride, axis, bad), output_padding=(0,) * case.ndim)
    if rule == "dilation":
        bad = pick.integer(-1, 0)
        return replace(
            case, dilation=_set(case.dilation, axis, bad), output_padding=(0,) * case.ndim
        )
    if rule == "padding":
        bad = pick.integer(1, 2)
        # Grow the input by what the padding no longer adds and what the negative padding crops,
        # so only the padding rule breaks.
        grown = _set(case.spatial, axis, case.spatial[axis] + 2 * (case.padding[axis] + bad))
        return replace(case, padding=_set(case.padding, axis, -bad), spatial=grown)
    if rule == "input_dilation":
        return replace(case, input_dilation=_set(case.input_dilation, axis, pick.integer(-1, 0)))
    if rule == "output_padding":
        limit = max(case.stride[axis], case.dilation[axis])
        bad = limit + pick.integer(0, 1)
        return replace(case, output_padding=_set(case.output_padding, axis, bad))
    if rule == "groups":
        # More groups than input channels never divides them; 0 groups is never legal.
        bad = pick.choice([0, case.in_channels + 1])
        return replace(case, groups=bad)
    # output_size: make the kernel's extent exceed the (padded) input, or pad the transposed
    # output away entirely.
    if transposed:
        full = (
            (case.spatial[axis] - 1) * case.stride[axis]
            + case.dilation[axis] * (case.kernel[axis] - 1)
            + 1
            + case.output_padding[axis]
        )
        return replace(case, padding=_set(case.padding, axis, full // 2 + 1))
    lo = case.padding[axis]
    hi = case.padding_hi[axis] if case.general else lo
    dilated = (case.spatial[axis] - 1) * (case.input_dilation[axis] if case.general else 1) + 1
    k = dilated + lo + hi + 1
    return replace(
        case,
        kernel=_set(case.kernel, axis, k),
        dilation=_set(case.dilation, axis, 1),
    )


def valid_cases(
    op: str,
    dtypes: tuple[str, ...] = DTYPES,
    bias: bool | None = None,
    directions: tuple[str, ...] = ("fwd",),
    layouts: tuple[str, ...] = ("contiguous",),
    padding_modes: bool = True,
) -> st.SearchStrategy[Case]:
    """Hypothesis strategy: valid cases for ``op`` (see :func:`draw_valid_case`; without
    ``padding_modes``, explicit padding only, for code that takes no string modes)."""
    return st.composite(
        lambda draw: draw_valid_case(
            HypothesisDraw(draw),
            op,
            dtypes,
            bias,
            directions=directions,
            layouts=layouts,
            padding_modes=padding_modes,
        )
    )()


def invalid_cases(op: str, dtypes: tuple[str, ...] = DTYPES) -> st.SearchStrategy[Case]:
    """Hypothesis strategy: cases for ``op`` that break one rule (see :func:`draw_invalid_case`)."""
    return st.composite(lambda draw: draw_invalid_case(HypothesisDraw(draw), op, dtypes))()
