"""Assemble the kernels' source for each dialect from the one body per kernel.

Every kernel is a *body* (``src/<op>.body``) written once: the code of one thread. The forward
bodies (``conv``, ``conv_transpose``) compute ``KC_TILE`` consecutive output channels at one
output position; the weight-gradient body (``conv_weight_grad``) computes ``KC_TILE``
consecutive output channels of the weight gradient at one (tap, input channel). Either way each
input element a thread loads serves ``KC_TILE`` products (register tiling). Each body is compiled
once per tile size in :data:`TILES`, as its own kernel; :mod:`kernels.plan` picks one per case.
A kernel's arguments are its inputs (:func:`input_names`: ``x, w, bias, params`` for the forward
bodies, ``x, dy, params`` for the weight gradient) and ``out``. A dialect adds only a thin
*prelude* (``src/prelude_<dialect>.h``: function qualifier, ``kc_to_float`` /
``kc_from_float<T>`` for the element types) and an *entry line* that names this thread ``kc_tid``:

============  =======================================  ========================================
dialect       entry line                               the body is pasted into
============  =======================================  ========================================
``cuda``      ``blockIdx.x * blockDim.x + threadIdx.x``  MLX's ``__global__`` function
                                                       (``mx.fast.cuda_kernel``)
``metal``     ``thread_position_in_grid.x``            MLX's ``[[kernel]]`` function
                                                       (``mx.fast.metal_kernel``)
``host``      a function argument                      a C++ function the host calls once per
                                                       thread (OpenMP loop)
============  =======================================  ========================================

The entry line is part of the *source* MLX receives, not of the header, because MLX adds Metal
attributes such as ``thread_position_in_grid`` to the signature only when the source names them.

:func:`cuda_translation_unit` and :func:`metal_translation_unit` reproduce what MLX assembles
around ``header`` and ``source`` (``build_kernel`` in ``mlx/backend/cuda/custom_kernel.cpp`` and
``write_signature`` in ``mlx/backend/common/metal_kernel.cpp``, MLX 0.29-0.32), so the CUDA
dialect can be compiled with ``nvcc`` where no GPU is present (:mod:`kernels.check_cuda`).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

SRC_DIR = Path(__file__).resolve().parent / "src"

#: The kernels, by the name of their body file: the forward ones, then the weight gradient.
OPS: tuple[str, ...] = ("conv", "conv_transpose", "conv_weight_grad")
DIALECTS: tuple[str, ...] = ("host", "cuda", "metal")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
#: Output channels per thread: every body is compiled once per tile size.
TILES: tuple[int, ...] = (1, 4, 8, 16, 32)

#: The forward kernels' input names, in order (MLX builds the signature from them).
INPUT_NAMES: tuple[str, ...] = ("x", "w", "bias", "params")
#: The weight gradient's: the convolution's input and the cotangent of its output.
WEIGHT_GRAD_INPUT_NAMES: tuple[str, ...] = ("x", "dy", "params")
OUTPUT_NAMES: tuple[str, ...] = ("out",)

#: How each GPU dialect names this thread's output element.
ENTRY: dict[str, str] = {
    "cuda": "const int kc_tid = int(blockIdx.x * blockDim.x + threadIdx.x);",
    "metal": "const int kc_tid = int(thread_position_in_grid.x);",
}

#: Element type of each case dtype, per dialect (CUDA/Metal: MLX's names for its dtypes).
ELEMENT_TYPE: dict[str, dict[str, str]] = {
    "host": {"float32": "float", "float16": "kc_half", "bfloat16": "kc_bfloat"},
    "cuda": {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16"},
    "metal": {"float32": "float", "float16": "float16_t", "bfloat16": "bfloat16_t"},
}

#: MLX's type string for a dtype (``get_type_string``), used in the kernel names it makes.
MLX_TYPE_STRING: dict[str, str] = {
    "float32": "float",
    "float16": "float16_t",
    "bfloat16": "bfloat16_t",
}


@cache
def read(name: str) -> str:
    """The text of ``src/<name>``."""
    return (SRC_DIR / name).read_text()


def _check_op(op: str) -> str:
    if op not in OPS:
        raise ValueError(f"unknown kernel {op!r}; known: {', '.join(OPS)}")
    return op


def body(op: str) -> str:
    return read(f"{_check_op(op)}.body")


def input_names(op: str) -> tuple[str, ...]:
    """The inputs of kernel ``op``, in order; ``params`` (int32) last, the others of type T."""
    return WEIGHT_GRAD_INPUT_NAMES if _check_op(op) == "conv_weight_grad" else INPUT_NAMES


@cache
def param_slots() -> dict[str, int]:
    """``KC_P_*`` slots of the parameter array, read from ``src/params.h``."""
    slots = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^#define KC_P_(\w+) (\d+)", read("params.h"), re.M)
    }
    if "COUNT" not in slots:
        raise RuntimeError("src/params.h defines no KC_P_COUNT")
    return slots


#: Dialects whose prelude leaves the 4-wide accesses (KC_LOAD4, ...) to ``src/scalar4.h``.
SCALAR_ACCESS: tuple[str, ...] = ("host", "metal")


def header(dialect: str) -> str:
    """Everything a dialect needs before the kernel function: parameter slots and prelude (and
    the scalar 4-wide accesses where the prelude has no vector ones)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    parts = [read("params.h"), read(f"prelude_{dialect}.h")]
    if dialect in SCALAR_ACCESS:
        parts.append(read("scalar4.h"))
    return "\n".join(parts)


def check_tile(tile: int) -> int:
    if tile not in TILES:
        raise ValueError(f"tile must be one of {TILES} (output channels per thread), got {tile!r}")
    return tile


def kernel_source(dialect: str, op: str, tile: int) -> str:
    """The ``source`` given to ``mx.fast.{cuda,metal}_kernel``: entry line, tile size, body."""
    if dialect not in ENTRY:
        raise ValueError(f"dialect {dialect!r} has no MLX kernel source (use cuda or metal)")
    return f"{ENTRY[dialect]}\nconstexpr int KC_TILE = {check_tile(tile)};\n{body(op)}"


def kernel_name(op: str, tile: int) -> str:
    """The ``name`` given to ``mx.fast.*_kernel``."""
    return f"convcheck_{op}_t{check_tile(tile)}"


# --- host -----------------------------------------------------------------------------------------

_HOST_THREAD = """
template <typename T, int KC_TILE>
static inline void kc_{op}_thread(const int kc_tid, {params}, T* out) {{
{body}
}}
"""

_HOST_ENTRY = """
extern "C" void kc_{op}_t{tile}_{dtype}({params}, void* out) {{
  using T = {type};
  const int total = params[KC_P_TOTAL];
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int t = 0; t < total; ++t) {{
    kc_{op}_thread<T, {tile}>(t, {args}, static_cast<T*>(out));
  }}
}}
"""

_HOST_SUPPORT = """
// Library facts and the 16-bit conversions, for the Python side and its tests.
extern "C" int kc_param_count(void) { return KC_P_COUNT; }

extern "C" int kc_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

extern "C" void kc_float_to_half(const float* in, uint16_t* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = kc_half_bits(in[i]);
}

extern "C" void kc_float_to_bfloat(const float* in, uint16_t* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = kc_bfloat_bits(in[i]);
}

extern "C" void kc_half_to_float(const uint16_t* in, float* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = kc_to_float(kc_half{in[i]});
}

extern "C" void kc_bfloat_to_float(const uint16_t* in, float* out, long n) {
  for (long i = 0; i < n; ++i) out[i] = kc_to_float(kc_bfloat{in[i]});
}
"""


def host_symbol(op: str, dtype: str, tile: int) -> str:
    """The exported C function that runs ``op`` in ``dtype`` with ``tile`` output channels per
    thread, over every thread. Its arguments: ``op``'s inputs (:func:`input_names`), then out."""
    return f"kc_{op}_t{check_tile(tile)}_{dtype}"


def _host_params(names: tuple[str, ...], element: str) -> str:
    return ", ".join(
        "const int32_t* params" if name == "params" else f"const {element}* {name}"
        for name in names
    )


def host_translation_unit() -> str:
    """The one C++ file of the host library: every op in every dtype."""
    parts = ["// Generated by kernels.source for the host (g++). Do not edit.\n", header("host")]
    for op in OPS:
        names = input_names(op)
        parts.append(_HOST_THREAD.format(op=op, params=_host_params(names, "T"), body=body(op)))
        args = ", ".join(
            name if name == "params" else f"static_cast<const T*>({name})" for name in names
        )
        for tile in TILES:
            for dtype in DTYPES:
                t = ELEMENT_TYPE["host"][dtype]
                parts.append(
                    _HOST_ENTRY.format(
                        op=op,
                        tile=tile,
                        dtype=dtype,
                        type=t,
                        params=_host_params(names, "void"),
                        args=args,
                    )
                )
    parts.append(_HOST_SUPPORT)
    return "".join(parts)


# --- what MLX assembles ---------------------------------------------------------------------------

#: MLX's default CUDA header (custom_kernel.cpp), put before ``header``.
MLX_CUDA_DEFAULT_HEADER = """
#include "mlx/backend/cuda/device/utils.cuh"

#include <cooperative_groups.h>

"""


def cuda_translation_unit(op: str, dtype: str, tile: int) -> tuple[str, str]:
    """``(kernel name, .cu source)`` as ``mx.fast.cuda_kernel`` builds them for one dtype.

    The inputs (:func:`input_names`) have the case dtype and params is int32; the body names
    none of ``<input>_shape``, ``_strides`` or ``_ndim``, so MLX adds no shape arguments.
    """
    t = ELEMENT_TYPE["cuda"][dtype]
    name = f"custom_kernel_{kernel_name(op, tile)}_{MLX_TYPE_STRING[dtype]}"  # template hash: _<T>
    args = [
        "    const int32_t* params," if n == "params" else f"    const {t}* {n},"
        for n in input_names(op)
    ]
    args.append(f"    {t}* out) {{")
    src = (
        MLX_CUDA_DEFAULT_HEADER
        + header("cuda")
        + "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
        + f"__global__ void {name}(\n"
        + "\n".join(args)
        + f"\n  using T = {t};\n\n"
        + kernel_source("cuda", op, tile)
        + "\n}\n\n} // namespace mlx::core::cu\n"
    )
    return name, src


def metal_translation_unit(
    op: str, dtype: str, tile: int, *, has_bias: bool = True
) -> tuple[str, str]:
    """``(kernel name, .metal source)`` as ``mx.fast.metal_kernel`` builds them (MLX prepends
    its Metal utils, which define ``bfloat16_t``). For reading and review: nothing here runs it.

    MLX passes arrays of fewer than 8 elements in the ``constant`` address space: the dummy bias
    (one element) when the case has none (``has_bias``; forward kernels only). The other arrays
    are assumed to have 8 elements or more.
    """
    t = ELEMENT_TYPE["metal"][dtype]
    ts = MLX_TYPE_STRING[dtype]
    names = input_names(op)
    constant = set() if has_bias else {"bias"}
    # name, "_" + template hash ("_T"), then each input's and output's type ("c": constant).
    types = ["int32_t" if n == "params" else ts + ("c" if n in constant else "") for n in names]
    name = f"custom_kernel_{kernel_name(op, tile)}__{ts}_" + "_".join([*types, ts])
    args = [
        f"  const {'constant' if n in constant else 'device'} "
        f"{'int32_t' if n == 'params' else t}* {n} [[buffer({i})]],\n"
        for i, n in enumerate(names)
    ]
    src = (
        header("metal")
        + "template <typename T>\n"
        + f"[[kernel]] void {name}(\n"
        + "".join(args)
        + f"  device {t}* out [[buffer({len(names)})]],\n"
        + "  uint3 thread_position_in_grid [[thread_position_in_grid]]) {\n"
        + kernel_source("metal", op, tile)
        + "\n}\n"
        + f'\ntemplate [[host_name("{name}")]] [[kernel]] decltype({name}<{t}>) {name}<{t}>;\n'
    )
    return name, src


def digest(*texts: str) -> str:
    """A short, stable hash of some source texts (cache keys)."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]
