"""The case model: one frozen :class:`Case` and its compact, round-tripping id.

Id grammar (fixed field order, ``-`` between fields, ``x`` between dimensions)::

    OP-nN-cCINxCOUT-sS-kK[-stS][-pP|-psame|-pvalid][-phP][-dD][-idI][-opP][-gG][-flip][-bias]-DTYPE[-fFILL]
      [-DIR][-LAYOUT][-seedR]

* ``OP`` is one of :data:`ALL_OPS` (the six ops of :data:`OPS` and the general convolutions
  ``conv_general1d/2d/3d``); it fixes the number of spatial dimensions.
* ``s`` spatial size, ``k`` kernel, ``st`` stride, ``p`` padding, ``d`` dilation, ``op`` output
  padding (transposed ops only), ``g`` groups. A list whose entries are all equal is written once
  (``k3`` is 3x3x3 in 3-D).
* The general convolution's own (``conv_general*`` only, MLX's ``conv_general``): ``p`` is then
  the low padding and ``ph`` the high one (written only where it differs from ``p``), ``id``
  the input dilation, ``flip`` a flipped kernel (convolution, not cross-correlation).
* ``psame`` / ``pvalid`` in the place of ``p`` (``conv1d/2d/3d`` only): the padding is given to
  the API as the string ``'same'`` / ``'valid'``; its numbers follow from the sizes
  (:func:`reference.params.mode_padding`).
* Defaults (``st1 p0 d1 id1 op0 g1``, ``ph`` equal to ``p``, no flip, no bias, seed 0, the
  uniform fill, direction ``fwd``, the contiguous layout) are
  never written, so every case has exactly one printed spelling and ``format_id(parse_id(s)) ==
  s`` for every printed id.
  The parser also takes uncollapsed lists and explicit defaults (``k3x3x3``, ``st1``,
  ``funiform``) and prints them canonically.
* Negative numbers (only invalid cases have them) are written ``m1`` for -1.
* ``DTYPE`` is ``f32``, ``f16``, ``bf16`` or ``f64`` (:data:`conformance.dtypes.ALL_DTYPES`).
* ``FILL`` is how the inputs are drawn from the seed, one of :data:`FILLS` after an ``f``:
  ``fint``, ``fsparse``, ``fwide``, ``fspecial`` (see :func:`conformance.inputs.make_inputs`).
  The default, ``uniform``, is never written, so ids without a fill token are the ids of
  uniform cases. A fill token is ``f`` and letters, a dtype ``f`` or ``bf`` and digits: they
  cannot be confused.
* ``DIR`` is the direction (:data:`DIRECTIONS`): ``bwd_d`` (the input's gradient) or ``bwd_w``
  (the weight's and bias's); forward cases have none, so ``pytest -k "conv2d and bwd_d"``
  selects the backward-data cases of conv2d.
* ``LAYOUT`` is how the input reaches the backend (:data:`LAYOUTS`, :mod:`conformance.layouts`):
  ``strided``, ``permuted``, ``expanded`` or ``unbatched``; contiguous cases have none.

Ids use only ``[a-z0-9_x-]``: they are valid pytest ids and ``pytest -k conv_transpose3d`` selects
by op (no op name is a substring of another, nor of any other token).

Examples: ``conv_transpose3d-n2-c8x16-s5-k3-st2x1x2-p1-op1-f32``,
``conv2d-n1-c16x8-s9-k3-bias-f16-fint-seed4``, ``conv1d-n2-c4x8-s9-k3-st2-bias-f32-bwd_w``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from conformance.dtypes import FROM_SHORT, SHORT, check_dtype
from conformance.layouts import LAYOUTS, check_layout
from reference.params import (  # OPS: op name -> (spatial dims, transposed)
    GENERAL_OPS,
    OPS,
    PADDING_MODES,
    conv_transpose_output_shape,
    general_output_shape,
    mode_padding,
)

#: Every op a case can name: the six ops of the public APIs (:data:`OPS`) and the general forward
#: convolutions (:data:`GENERAL_OPS`, MLX's ``conv_general``), op name -> (spatial dims,
#: transposed).
ALL_OPS: dict[str, tuple[int, bool]] = {**OPS, **GENERAL_OPS}

#: How :func:`conformance.inputs.make_inputs` draws a case's inputs from its seed; the first is
#: the default (never written in ids).
FILLS: tuple[str, ...] = ("uniform", "int", "sparse", "wide", "special")

#: What a case computes (benchdnn's ``--dir``): ``fwd`` the output (the default, never written in
#: ids); ``bwd_d`` the gradient with respect to the input (data), ``bwd_w`` those with respect to
#: the weight and, with a bias, the bias, both from a cotangent drawn from the case seed
#: (:mod:`conformance.directions`).
DIRECTIONS: tuple[str, ...] = ("fwd", "bwd_d", "bwd_w")


def _tuple(name: str, value: object, ndim: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * ndim
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"Case.{name} must be an int or {ndim} ints, got {value!r}") from None
    if len(items) != ndim or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ValueError(f"Case.{name} must be an int or {ndim} ints, got {value!r}")
    return items


@dataclass(frozen=True)
class Case:
    """One conformance case: an op, its shapes and parameters, a dtype, an input seed and an
    input fill (:data:`FILLS`; last, so positional construction of the other fields is as it was).

    Numeric parameters are not range-checked here, so invalid cases (stride 0, output padding too
    large, ...) can be represented and sent to every backend; the reference decides validity.
    """

    op: str
    batch: int
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...] = field(default=())
    padding: tuple[int, ...] = field(default=())
    dilation: tuple[int, ...] = field(default=())
    output_padding: tuple[int, ...] = field(default=())
    groups: int = 1
    dtype: str = "float32"
    bias: bool = False
    seed: int = 0
    fill: str = "uniform"
    direction: str = "fwd"
    layout: str = "contiguous"
    #: The general convolution's (``conv_general*`` ops only): high padding (default: the same
    #: as ``padding``, then the low one), input dilation, kernel flip.
    padding_hi: tuple[int, ...] = field(default=())
    input_dilation: tuple[int, ...] = field(default=())
    flip: bool = False
    #: How the user's API is given the padding (:data:`PADDING_MODES`, forward ``conv1d/2d/3d``
    #: only): ``explicit`` numbers, or the string ``same`` / ``valid``, whose numbers
    #: (:func:`reference.params.mode_padding`) the case derives into ``padding`` (the low side)
    #: and ``padding_hi`` (the high side) from its sizes: values given for those two are
    #: replaced, so ``replace(case, spatial=...)`` keeps the mode's meaning.
    padding_mode: str = "explicit"

    def __post_init__(self) -> None:
        if self.op not in ALL_OPS:
            raise ValueError(f"Case.op must be one of {', '.join(ALL_OPS)}, got {self.op!r}")
        nd = self.ndim
        defaults = {"stride": 1, "padding": 0, "dilation": 1, "output_padding": 0}
        for name in ("spatial", "kernel", "stride", "padding", "dilation", "output_padding"):
            value = getattr(self, name)
            if value == ():
                value = defaults[name]
            object.__setattr__(self, name, _tuple(name, value, nd))
        if not isinstance(self.flip, bool):
            raise ValueError(f"Case.flip must be a bool, got {self.flip!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(
                f"Case.padding_mode must be one of {', '.join(PADDING_MODES)}, "
                f"got {self.padding_mode!r}"
            )
        if self.moded:
            if self.op not in OPS or self.transposed:
                raise ValueError(
                    f"Case.padding_mode {self.padding_mode!r} applies to conv1d/2d/3d only, not "
                    f"{self.op}"
                )
            lo, hi = mode_padding(
                self.padding_mode, self.spatial, self.kernel, self.stride, self.dilation
            )
            object.__setattr__(self, "padding", lo)
            object.__setattr__(self, "padding_hi", hi)
        general = {"padding_hi": self.padding, "input_dilation": (1,) * nd}
        for name, default in general.items():
            if self.moded and name == "padding_hi":
                continue  # derived above
            value = getattr(self, name)
            value = default if value == () else _tuple(name, value, nd)
            if not self.general and value != default:
                raise ValueError(f"Case.{name} applies only to the conv_general ops, not {self.op}")
            # Stored only for a general op: a plain op's case has (), so replace() of its
            # padding leaves nothing stale behind.
            object.__setattr__(self, name, value if self.general else ())
        if self.flip and not self.general:
            raise ValueError(f"Case.flip applies only to the conv_general ops, not {self.op}")
        if self.general and self.direction != "fwd":
            raise ValueError(
                f"Case.direction of a {self.op} case must be 'fwd', got {self.direction!r}: the "
                "reference's gradients are those of the six ops"
            )
        for name in ("batch", "in_channels", "out_channels", "groups", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"Case.{name} must be an int, got {value!r}")
        if not self.transposed and any(self.output_padding):
            raise ValueError(f"Case.output_padding applies only to transposed ops, not {self.op}")
        if self.seed < 0:
            raise ValueError(f"Case.seed must be >= 0, got {self.seed}")
        check_dtype(self.dtype)
        if not isinstance(self.bias, bool):
            raise ValueError(f"Case.bias must be a bool, got {self.bias!r}")
        if self.fill not in FILLS:
            raise ValueError(f"Case.fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"Case.direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}"
            )
        if self.direction != "fwd" and self.fill == "special":
            raise ValueError(
                f"Case.fill 'special' needs direction 'fwd', got {self.direction!r}: the "
                "reference defines IEEE special values for the forward output only"
            )
        check_layout(self.layout, self.batch)

    @property
    def ndim(self) -> int:
        return ALL_OPS[self.op][0]

    @property
    def transposed(self) -> bool:
        return ALL_OPS[self.op][1]

    @property
    def moded(self) -> bool:
        """Whether the padding is given as a string mode (``same`` / ``valid``)."""
        return self.padding_mode != PADDING_MODES[0]

    @property
    def general(self) -> bool:
        """Whether the op is a general convolution (``conv_general*``)."""
        return self.op in GENERAL_OPS

    @property
    def id(self) -> str:
        return format_id(self)

    def __str__(self) -> str:
        return self.id

    def output_spatial(self) -> tuple[int, ...] | None:
        """The spatial output size, or None for a case that has none (an invalid case)."""
        try:
            if self.transposed:
                return conv_transpose_output_shape(
                    self.spatial,
                    self.kernel,
                    self.stride,
                    self.padding,
                    self.dilation,
                    self.output_padding,
                )
            return general_output_shape(
                self.spatial,
                self.kernel,
                self.stride,
                self.padding,
                self.padding_hi or self.padding,  # a moded case's derived high side too
                self.dilation,
                self.input_dilation or (1,) * self.ndim,
            )
        except (ValueError, ArithmeticError):  # stride 0 divides by zero
            return None

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Input shape, MLX layout: (N, *spatial, C_in)."""
        return (self.batch, *self.spatial, self.in_channels)

    @property
    def w_shape(self) -> tuple[int, ...]:
        """Weight shape, MLX layout: (C_out, *kernel, C_in / groups).

        When ``groups`` does not divide the input channels (an invalid case) the last dimension
        is ``C_in // groups``, which is what a user's mistaken weight would look like.
        """
        c_in_g = self.in_channels // self.groups if self.groups >= 1 else self.in_channels
        return (self.out_channels, *self.kernel, c_in_g)

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.out_channels,) if self.bias else None

    def params(self) -> dict[str, object]:
        """Keyword arguments of the reference op (and of MLX/PyTorch, modulo layout): numbers
        only, a moded case's padding as its derived low ``padding`` and, where it differs, its
        high ``padding_hi`` (see :meth:`api_params` for what the user's API is given)."""
        kw: dict[str, object] = {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }
        if self.transposed:
            kw["output_padding"] = self.output_padding
        if self.general:
            kw |= {
                "padding_hi": self.padding_hi,
                "input_dilation": self.input_dilation,
                "flip": self.flip,
            }
        if self.moded and self.padding_hi != self.padding:
            kw["padding_hi"] = self.padding_hi
        return kw

    def api_params(self) -> dict[str, object]:
        """:meth:`params` as PyTorch's functional ops and modules take them: a moded case's
        padding as its string, ``'same'`` or ``'valid'``."""
        kw = self.params()
        if self.moded:
            kw.pop("padding_hi", None)
            kw["padding"] = self.padding_mode
        return kw

    def to_dict(self) -> dict[str, object]:
        """Plain JSON; ``fill``, ``direction`` and ``layout`` only when they are not the
        default (so records and files of uniform, forward, contiguous cases are as they were,
        and :meth:`from_dict` reads them unchanged)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        if d["fill"] == FILLS[0]:
            del d["fill"]
        if d["direction"] == DIRECTIONS[0]:
            del d["direction"]
        if d["layout"] == LAYOUTS[0]:
            del d["layout"]
        if not self.moded:
            del d["padding_mode"]
        if not self.general:
            for name in ("padding_hi", "input_dilation", "flip"):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Case:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Case: unknown field(s) {', '.join(sorted(unknown))}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValueError(f"Case: {exc}") from None


# --- id formatting and parsing ------------------------------------------------------------------

_TOKEN_ORDER = ("n", "c", "s", "k", "st", "p", "ph", "d", "id", "op", "g")
_DEFAULTS = {"st": 1, "p": 0, "d": 1, "id": 1, "op": 0, "g": 1}
_NUM = r"m?\d+"
_TOKEN_RE = re.compile(rf"^(st|op|ph|id|seed|n|c|s|k|p|d|g)({_NUM}(?:x{_NUM})*)$")
#: A padding given as a string mode, in the place of the ``p`` token.
_MODE_TOKENS = tuple("p" + mode for mode in PADDING_MODES[1:])
#: ``f`` and letters: a fill (a dtype token is ``f`` or ``bf`` and digits).
_FILL_RE = re.compile(r"^f([a-z_]+)$")


def _fmt_int(v: int) -> str:
    return f"m{-v}" if v < 0 else str(v)


def _fmt_list(values: tuple[int, ...], collapse: bool = True) -> str:
    if collapse and len(set(values)) == 1:
        return _fmt_int(values[0])
    return "x".join(_fmt_int(v) for v in values)


def format_id(case: Case) -> str:
    fields = {
        "n": (case.batch,),
        "c": (case.in_channels, case.out_channels),
        "s": case.spatial,
        "k": case.kernel,
        "st": case.stride,
        "p": case.padding,
        "ph": case.padding_hi,
        "d": case.dilation,
        "id": case.input_dilation,
        "op": case.output_padding,
        "g": (case.groups,),
    }
    parts = [case.op]
    for name in _TOKEN_ORDER:
        values = fields[name]
        if name == "p" and case.moded:
            parts.append("p" + case.padding_mode)  # its numbers are derived
            continue
        if name in _DEFAULTS and all(v == _DEFAULTS[name] for v in values):
            continue
        if name in ("ph", "id") and (not case.general or name == "ph" and values == case.padding):
            continue
        parts.append(name + _fmt_list(values, collapse=name != "c"))
    if case.flip:
        parts.append("flip")
    if case.bias:
        parts.append("bias")
    parts.append(SHORT[case.dtype])
    if case.fill != FILLS[0]:
        parts.append("f" + case.fill)
    if case.direction != DIRECTIONS[0]:
        parts.append(case.direction)
    if case.layout != LAYOUTS[0]:
        parts.append(case.layout)
    if case.seed:
        parts.append(f"seed{case.seed}")
    return "-".join(parts)


def _parse_ints(text: str) -> tuple[int, ...]:
    return tuple(-int(t[1:]) if t.startswith("m") else int(t) for t in text.split("x"))


def parse_id(text: str) -> Case:
    """Parse a case id; raise ``ValueError`` naming the offending token."""
    parts = text.strip().split("-")
    op = parts[0]
    if op not in ALL_OPS:
        raise ValueError(
            f"case id {text!r}: unknown op {op!r} (expected one of {', '.join(ALL_OPS)})"
        )
    nd = ALL_OPS[op][0]
    values: dict[str, tuple[int, ...]] = {}
    bias = flip = False
    dtype = None
    fill = FILLS[0]
    direction = DIRECTIONS[0]
    layout = LAYOUTS[0]
    padding_mode = PADDING_MODES[0]
    seed = 0
    # Every token has a rank; ranks must strictly increase (fixed order, nothing twice).
    rank = {
        name: i
        for i, name in enumerate(
            (*_TOKEN_ORDER, "flip", "bias", "dtype", "fill", "direction", "layout", "seed")
        )
    }
    last_rank, last_tok = -1, op
    for tok in parts[1:]:
        m = _TOKEN_RE.match(tok)
        if tok in FROM_SHORT:
            kind = "dtype"
        elif tok in _MODE_TOKENS:
            kind = "p"
        elif tok in ("bias", "flip"):
            kind = tok
        elif tok in DIRECTIONS:  # before fills: "fwd" is no fill "wd"
            kind = "direction"
        elif tok in LAYOUTS:
            kind = "layout"
        elif _FILL_RE.match(tok):
            kind = "fill"
        elif m:
            kind = m.group(1)
        else:
            raise ValueError(f"case id {text!r}: cannot parse token {tok!r}")
        what = f"field {kind!r}" if kind in _TOKEN_ORDER else kind
        if rank[kind] == last_rank:
            raise ValueError(f"case id {text!r}: {what} given twice ({last_tok!r}, {tok!r})")
        if rank[kind] < last_rank:
            if kind in _TOKEN_ORDER and last_rank >= rank["flip"]:
                raise ValueError(f"case id {text!r}: token {tok!r} must come before bias and dtype")
            raise ValueError(f"case id {text!r}: {what} out of order (after {last_tok!r})")
        last_rank, last_tok = rank[kind], tok
        if kind == "dtype":
            dtype = FROM_SHORT[tok]
        elif kind == "bias":
            bias = True
        elif kind == "flip":
            flip = True
        elif kind == "fill":
            fill = tok[1:]
            if fill not in FILLS:
                raise ValueError(
                    f"case id {text!r}: unknown fill {fill!r} in token {tok!r} "
                    f"(field 'fill': one of {', '.join(FILLS)}, written f<name>)"
                )
        elif kind == "direction":
            direction = tok
        elif kind == "layout":
            layout = tok
        elif tok in _MODE_TOKENS:
            padding_mode = tok[1:]
        elif kind == "seed":
            nums = _parse_ints(m.group(2))
            if len(nums) != 1:
                raise ValueError(f"case id {text!r}: seed takes one value, got {tok!r}")
            seed = nums[0]
        else:
            values[kind] = _parse_ints(m.group(2))
    missing = [n for n in ("n", "c", "s", "k") if n not in values]
    if missing:
        raise ValueError(f"case id {text!r}: missing field(s) {', '.join(missing)}")
    if dtype is None:
        raise ValueError(f"case id {text!r}: missing dtype (f32, f16, bf16 or f64)")
    if len(values["c"]) != 2:
        raise ValueError(f"case id {text!r}: channels must be written cINxOUT")
    if "op" in values and not ALL_OPS[op][1]:
        raise ValueError(f"case id {text!r}: output padding (op) only applies to transposed ops")

    def dims(name: str, default: int) -> tuple[int, ...]:
        v = values.get(name, (default,))
        if len(v) == 1:
            return v * nd
        if len(v) != nd:
            raise ValueError(f"case id {text!r}: {name} needs 1 or {nd} values, got {len(v)}")
        return v

    for single in ("n", "g"):
        if single in values and len(values[single]) != 1:
            raise ValueError(f"case id {text!r}: {single} takes one value")
    case = Case(
        op=op,
        batch=values["n"][0],
        in_channels=values["c"][0],
        out_channels=values["c"][1],
        spatial=dims("s", 1),
        kernel=dims("k", 1),
        stride=dims("st", 1),
        padding=dims("p", 0),
        padding_hi=dims("ph", 0) if "ph" in values else (),
        input_dilation=dims("id", 1),
        dilation=dims("d", 1),
        output_padding=dims("op", 0),
        groups=values.get("g", (1,))[0],
        dtype=dtype,
        bias=bias,
        seed=seed,
        fill=fill,
        direction=direction,
        layout=layout,
        flip=flip,
        padding_mode=padding_mode,
    )
    return case
