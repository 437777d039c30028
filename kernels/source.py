"""Assemble the kernels' source for each dialect from the one body per op.

Every kernel is a *body* (``src/<op>.body``) written once: the code of one thread, which computes
``KC_TILE`` consecutive output channels at one output position (register tiling: each input
element it loads serves ``KC_TILE`` products). Each body is compiled once per tile size in
:data:`TILES`, as its own kernel; :mod:`kernels.plan` picks one per case. A dialect adds only a
thin *prelude* (``src/prelude_<dialect>.h``: function qualifier, ``kc_to_float`` /
``kc_from_float<T>`` for the element types) and an *entry line* that names this thread ``kc_tid``:

============  =======================================  ========================================
dialect       entry line                               the body is pasted into
============  =======================================  ========================================
``cuda``      ``blockIdx.x * blockDim.x + threadIdx.x``  MLX's ``__global__`` function
                                                       (``mx.fast.cuda_kernel``)
``metal``     ``thread_position_in_grid.x``            MLX's ``[[kernel]]`` function
                                                       (``mx.fast.metal_kernel``)
``host``      a function argument                      a C++ function the host calls once per
                                                       output element (OpenMP loop)
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

#: The kernels, by the name of their body file.
OPS: tuple[str, ...] = ("conv", "conv_transpose")
DIALECTS: tuple[str, ...] = ("host", "cuda", "metal")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
#: Output channels per thread: every body is compiled once per tile size.
TILES: tuple[int, ...] = (1, 4, 8, 16, 32)

#: Kernel argument names, in order (MLX builds the signature from them).
INPUT_NAMES: tuple[str, ...] = ("x", "w", "bias", "params")
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


def body(op: str) -> str:
    if op not in OPS:
        raise ValueError(f"unknown kernel {op!r}; known: {', '.join(OPS)}")
    return read(f"{op}.body")


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
static inline void kc_{op}_thread(const int kc_tid, const T* x, const T* w, const T* bias,
                                  const int32_t* params, T* out) {{
{body}
}}
"""

_HOST_ENTRY = """
extern "C" void kc_{op}_t{tile}_{dtype}(const void* x, const void* w, const void* bias,
                                const int32_t* params, void* out) {{
  using T = {type};
  const int total = params[KC_P_TOTAL];
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int t = 0; t < total; ++t) {{
    kc_{op}_thread<T, {tile}>(t, static_cast<const T*>(x), static_cast<const T*>(w),
                      static_cast<const T*>(bias), params, static_cast<T*>(out));
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
    thread, over every thread."""
    return f"kc_{op}_t{check_tile(tile)}_{dtype}"


def host_translation_unit() -> str:
    """The one C++ file of the host library: every op in every dtype."""
    parts = ["// Generated by kernels.source for the host (g++). Do not edit.\n", header("host")]
    for op in OPS:
        parts.append(_HOST_THREAD.format(op=op, body=body(op)))
        for tile in TILES:
            for dtype in DTYPES:
                t = ELEMENT_TYPE["host"][dtype]
                parts.append(_HOST_ENTRY.format(op=op, tile=tile, dtype=dtype, type=t))
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

    Inputs x, w, bias have the case dtype and params is int32; the body names none of
    ``<input>_shape``, ``_strides`` or ``_ndim``, so MLX adds no shape arguments.
    """
    t = ELEMENT_TYPE["cuda"][dtype]
    name = f"custom_kernel_{kernel_name(op, tile)}_{MLX_TYPE_STRING[dtype]}"  # template hash: _<T>
    args = [
        f"    const {t}* x,",
        f"    const {t}* w,",
        f"    const {t}* bias,",
        "    const int32_t* params,",
        f"    {t}* out) {{",
    ]
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
    (one element) when the case has none. x and w are assumed to have 8 elements or more.
    """
    t = ELEMENT_TYPE["metal"][dtype]
    ts = MLX_TYPE_STRING[dtype]
    # name, "_" + template hash ("_T"), then each input's and output's type ("c": constant).
    name = f"custom_kernel_{kernel_name(op, tile)}__{ts}_{ts}_{ts}_{ts}{'' if has_bias else 'c'}"
    name += f"_int32_t_{ts}"
    bias_space = "device" if has_bias else "constant"
    src = (
        header("metal")
        + "template <typename T>\n"
        + f"[[kernel]] void {name}(\n"
        + f"  const device {t}* x [[buffer(0)]],\n"
        + f"  const device {t}* w [[buffer(1)]],\n"
        + f"  const {bias_space} {t}* bias [[buffer(2)]],\n"
        + "  const device int32_t* params [[buffer(3)]],\n"
        + f"  device {t}* out [[buffer(4)]],\n"
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
