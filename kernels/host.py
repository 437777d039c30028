"""The host dialect: the kernel bodies compiled as C++ with the system ``g++``, loaded by ctypes.

The library is built on first use from :func:`kernels.source.host_translation_unit` and cached
outside the repository, under ``$CONVCHECK_CACHE_DIR`` or the user cache directory
(``$XDG_CACHE_HOME/convcheck``, ``~/.cache/convcheck``; ``~/Library/Caches/convcheck`` on macOS),
in ``kernels/host-<hash>.so`` where the hash covers the source, the compiler's identity and the
flags. One library serves every case: shapes and parameters travel in an int32 array.

Each exported ``kc_<op>_t<tile>_<dtype>`` runs the body once per thread in a loop, parallelised
with OpenMP when ``g++ -fopenmp`` works (``OMP_NUM_THREADS`` applies); otherwise serially.
:func:`run` runs a forward plan, :func:`run_weight_grad` a weight-gradient one.
float16/bfloat16 data crosses as uint16 bit patterns and is converted by the body's own loads and
stores, as on a GPU.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from kernels import source
from kernels.plan import Plan

#: Compiler flags; the first set that builds wins (OpenMP is optional).
FLAG_SETS: tuple[tuple[str, ...], ...] = (
    ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp"),
    ("-O3", "-std=c++17", "-fPIC", "-shared"),
)


class HostBuildError(RuntimeError):
    """The host library could not be built (no compiler, or it rejected the source)."""


def cache_dir() -> Path:
    env = os.environ.get("CONVCHECK_CACHE_DIR")
    if env:
        root = Path(env)
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "convcheck"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convcheck"
    return root / "kernels"


def compiler() -> str | None:
    """Path of the C++ compiler (``$CONVCHECK_CXX`` or ``g++``), or None."""
    return shutil.which(os.environ.get("CONVCHECK_CXX", "g++"))


@cache
def compiler_identity(cxx: str) -> str:
    try:
        res = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostBuildError(f"{cxx} --version failed: {exc}") from None
    return res.stdout.splitlines()[0] if res.stdout else cxx


def build(force: bool = False) -> Path:
    """Build the library if the cache lacks it; return its path. Raises HostBuildError."""
    cxx = compiler()
    if cxx is None:
        raise HostBuildError(
            f"no C++ compiler: {os.environ.get('CONVCHECK_CXX', 'g++')} is not on PATH"
        )
    tu = source.host_translation_unit()
    key = source.digest(tu, compiler_identity(cxx), repr(FLAG_SETS))
    target = cache_dir() / f"host-{key}.so"
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        cpp = Path(tmp) / "kernels_host.cpp"
        cpp.write_text(tu)
        for flags in FLAG_SETS:
            so = Path(tmp) / "kernels_host.so"
            cmd = [cxx, *flags, str(cpp), "-o", str(so)]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{' '.join(cmd)}: {exc}")
                continue
            if res.returncode == 0:
                os.replace(so, target)  # atomic: concurrent builders race harmlessly
                return target
            errors.append(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr.strip()}")
    raise HostBuildError("host kernel library did not build:\n" + "\n\n".join(errors))


@dataclass(frozen=True)
class HostLibrary:
    path: Path
    lib: ctypes.CDLL

    @property
    def openmp(self) -> bool:
        return bool(self.lib.kc_openmp())

    def function(self, op: str, dtype: str, tile: int):
        """The C function of ``op``: its inputs (:func:`kernels.source.input_names`), then out."""
        fn = getattr(self.lib, source.host_symbol(op, dtype, tile))
        fn.argtypes = [ctypes.c_void_p] * (len(source.input_names(op)) + 1)
        fn.restype = None
        return fn

    def _convert(self, name: str, arr: np.ndarray, out_dtype: type) -> np.ndarray:
        fn = getattr(self.lib, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        fn.restype = None
        out = np.empty(arr.shape, out_dtype)
        fn(arr.ctypes.data, out.ctypes.data, arr.size)
        return out

    def to_bits(self, values: np.ndarray, dtype: str) -> np.ndarray:
        """float32 -> uint16 patterns of float16/bfloat16, rounded by the kernels' own code."""
        arr = np.ascontiguousarray(values, np.float32)
        name = {"float16": "kc_float_to_half", "bfloat16": "kc_float_to_bfloat"}[dtype]
        return self._convert(name, arr, np.uint16)

    def from_bits(self, bits: np.ndarray, dtype: str) -> np.ndarray:
        """uint16 patterns of float16/bfloat16 -> float32, by the kernels' own loads."""
        arr = np.ascontiguousarray(bits, np.uint16)
        name = {"float16": "kc_half_to_float", "bfloat16": "kc_bfloat_to_float"}[dtype]
        return self._convert(name, arr, np.float32)


@lru_cache(maxsize=1)
def load() -> HostLibrary:
    """Build (if needed) and load the library once per process. Raises HostBuildError."""
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise HostBuildError(f"cannot load {path}: {exc}") from None
    expected = source.param_slots()["COUNT"]
    if lib.kc_param_count() != expected:
        raise HostBuildError(f"{path} has a different parameter layout; delete it")
    return HostLibrary(path, lib)


def to_device_layout(values: np.ndarray, dtype: str) -> np.ndarray:
    """The array the kernel reads: float32, or the exact uint16 pattern of a 16-bit value.

    Input values are exact in ``dtype`` (the harness guarantees it), so this is exact; it is done
    in NumPy, independently of the kernels' conversion code.
    """
    arr = np.ascontiguousarray(values, np.float32)
    if dtype == "float32":
        return arr
    if dtype == "float16":
        return arr.astype(np.float16).view(np.uint16)
    return (arr.view(np.uint32) >> 16).astype(np.uint16)


def from_device_layout(out: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values of the kernel's output (exact)."""
    if dtype == "float32":
        return out
    if dtype == "float16":
        return out.view(np.float16).astype(np.float32)
    return (out.astype(np.uint32) << 16).view(np.float32)


def run(
    plan: Plan, dtype: str, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """Run one planned forward case on the host; returns float32 values of ``dtype``, MLX
    layout."""
    if plan.total == 0:
        return np.zeros(plan.out_shape, np.float32)
    storage = np.float32 if dtype == "float32" else np.uint16
    bd = to_device_layout(bias, dtype) if bias is not None else np.zeros(1, storage)
    return _launch(plan, dtype, [to_device_layout(x, dtype), to_device_layout(w, dtype), bd])


def run_weight_grad(plan: Plan, dtype: str, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Run one planned weight gradient (:func:`kernels.plan.make_weight_grad_plan`) of input
    ``x`` and cotangent ``dy`` on the host; returns float32 values of ``dtype``."""
    if plan.total == 0 or x.size == 0 or dy.size == 0:  # an empty sum
        return np.zeros(plan.out_shape, np.float32)
    return _launch(plan, dtype, [to_device_layout(x, dtype), to_device_layout(dy, dtype)])


def _launch(plan: Plan, dtype: str, arrays: list[np.ndarray]) -> np.ndarray:
    """Call ``plan``'s kernel on ``arrays`` (device layout; its inputs but params, in order)."""
    lib = load()
    storage = np.float32 if dtype == "float32" else np.uint16
    params = np.ascontiguousarray(plan.params, np.int32)
    out = np.empty(plan.out_shape, storage)
    lib.function(plan.op, dtype, plan.tile)(
        *(a.ctypes.data for a in arrays), params.ctypes.data, out.ctypes.data
    )
    return from_device_layout(out, dtype)
