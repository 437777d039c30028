"""Public reference ops: ``conv{1,2,3}d`` and ``conv_transpose{1,2,3}d``, each with optional bias.

Arguments follow ``mlx.core.conv*`` and ``torch.nn.functional.conv*`` (symmetric padding), in
MLX's layout (see :mod:`reference`). Every op validates its arguments first and raises
``ValueError`` naming the parameter and the rule; then it computes in float64 and returns a
float64 array, or, with ``with_bound=True``, a :class:`reference.core.ConvResult` that also holds
the per-element ``sum |x||w|`` (plus ``|bias|``) and the number of terms (plus one for bias).
"""

from __future__ import annotations

import functools

import numpy as np

from reference.core import ConvResult, conv_general, conv_transpose_general
from reference.params import IntOrSeq, check_params, check_shapes
from reference.special import finite_part, has_special_values, with_special_values


def as_real_array(op: str, name: str, value: object) -> np.ndarray:
    """``value`` as an array; ValueError naming op and argument unless it is real numeric."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{op}: {name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def run_op(
    op: str,
    ndim: int,
    transposed: bool,
    x: object,
    w: object,
    bias: object | None = None,
    *,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    with_bound: bool = False,
    formulation: str = "auto",
    compute_dtype: type = np.float64,
    padding_hi: IntOrSeq | None = None,
    input_dilation: IntOrSeq | None = None,
    flip: bool = False,
) -> np.ndarray | ConvResult:
    """Validate and run one op; the six public functions are thin names for this.
    ``formulation`` forces one of :data:`reference.core.FORMULATIONS` (benchmarks, tests);
    ``compute_dtype=np.float32`` runs it in float32 arithmetic, as a float32 kernel would
    (calibration of the diff engine; no bound). NaN and infinite inputs give IEEE's values per
    output element (:mod:`reference.special`); the bound is that of the finite terms.
    ``padding_hi``, ``input_dilation`` and ``flip`` make a forward op the general convolution
    (MLX's ``conv_general``, :data:`reference.params.GENERAL_OPS`): ``padding`` is then the low
    padding."""
    p = check_params(
        op,
        ndim,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        transposed=transposed,
        padding_hi=padding_hi,
        input_dilation=input_dilation,
        flip=flip,
    )
    xa = as_real_array(op, "input", x)
    wa = as_real_array(op, "weight", w)
    ba = None if bias is None else as_real_array(op, "bias", bias)
    check_shapes(p, xa.shape, wa.shape, None if ba is None else ba.shape)
    if transposed:
        core = functools.partial(
            conv_transpose_general,
            stride=p.stride,
            padding_lo=p.padding,
            padding_hi=p.padding,
            dilation=p.dilation,
            output_padding=p.output_padding,
            groups=p.groups,
            formulation=formulation,
        )
    else:
        core = functools.partial(
            conv_general,
            stride=p.stride,
            padding_lo=p.padding,
            padding_hi=p.high_padding,
            kernel_dilation=p.dilation,
            input_dilation=p.input_dilations,
            flip=p.flip,
            groups=p.groups,
            formulation=formulation,
        )
    special = np.dtype(compute_dtype) == np.float64 and has_special_values(xa, wa, ba)
    if special:
        # The finite terms as usual (and their bound), then IEEE's NaN and infinities on top.
        res = core(
            finite_part(xa),
            finite_part(wa),
            bias=finite_part(ba),
            with_bound=with_bound,
        )
        res = with_special_values(lambda a, b: core(a, b).out, res, xa, wa, ba)
    else:
        # NaN and infinities in a float32 computation propagate as IEEE says: no warnings.
        with np.errstate(invalid="ignore", over="ignore"):
            res = core(xa, wa, bias=ba, with_bound=with_bound, compute_dtype=compute_dtype)
    return res if with_bound else res.out


def conv1d(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, with_bound=False):
    """1-D convolution (``nn.Conv1d`` forward when ``bias`` is given). x: (N, L, C_in)."""
    return run_op(
        "conv1d",
        1,
        False,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        with_bound=with_bound,
    )


def conv2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, with_bound=False):
    """2-D convolution. x: (N, H, W, C_in), w: (C_out, KH, KW, C_in/groups)."""
    return run_op(
        "conv2d",
        2,
        False,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        with_bound=with_bound,
    )


def conv3d(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, with_bound=False):
    """3-D convolution. x: (N, D, H, W, C_in), w: (C_out, KD, KH, KW, C_in/groups)."""
    return run_op(
        "conv3d",
        3,
        False,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        with_bound=with_bound,
    )


def conv_transpose1d(
    x,
    w,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    output_padding=0,
    groups=1,
    with_bound=False,
):
    """1-D transposed convolution. x: (N, L, C_in), w: (C_out, K, C_in/groups)."""
    return run_op(
        "conv_transpose1d",
        1,
        True,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        with_bound=with_bound,
    )


def conv_transpose2d(
    x,
    w,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    output_padding=0,
    groups=1,
    with_bound=False,
):
    """2-D transposed convolution. x: (N, H, W, C_in), w: (C_out, KH, KW, C_in/groups)."""
    return run_op(
        "conv_transpose2d",
        2,
        True,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        with_bound=with_bound,
    )


def conv_transpose3d(
    x,
    w,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    output_padding=0,
    groups=1,
    with_bound=False,
):
    """3-D transposed convolution. x: (N, D, H, W, C_in), w: (C_out, KD, KH, KW, C_in/groups)."""
    return run_op(
        "conv_transpose3d",
        3,
        True,
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        groups=groups,
        with_bound=with_bound,
    )
