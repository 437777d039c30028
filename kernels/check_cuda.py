"""Compile the CUDA dialect of every kernel with nvcc, no GPU needed.

Usage: ``python -m kernels.check_cuda [--arch sm_90] [--mlx-src DIR] [--keep DIR]``.

For each kernel (:data:`kernels.source.OPS`: the forward bodies and the weight gradient), tile
size and dtype it writes the translation unit exactly as ``mx.fast.cuda_kernel`` assembles it
(MLX's default header, our header, ``namespace mlx::core::cu``, a ``__global__`` wrapper around
the entry line and body; see :func:`kernels.source.cuda_translation_unit`) and runs
``nvcc -std=c++17 -arch=<arch> -c`` on it. A syntax or type error in a body or the CUDA prelude
fails the check with nvcc's message.

MLX's device headers (``mlx/backend/cuda/device/utils.cuh``, ...) are compiled into MLX and not
installed with it. With ``--mlx-src DIR`` (an MLX source checkout; or ``$CONVCHECK_MLX_SRC``)
the real ones are used; otherwise a stand-in ``utils.cuh`` provides what MLX's does for these
kernels (``cuda_fp16.h``, ``cuda_bf16.h``, ``namespace mlx::core::cu``).

MLX itself compiles with NVRTC and ``--device-as-default-execution-space``; nvcc lacks that flag,
so it is stricter (every device function must say ``__device__``), which the prelude does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kernels import source

DEFAULT_ARCH = "sm_90"

STUB_UTILS = """// Stand-in for mlx/backend/cuda/device/utils.cuh (built into MLX, not installed).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
namespace mlx::core::cu {}
"""


@dataclass(frozen=True)
class CompileResult:
    kernel: str
    dtype: str
    path: Path
    command: list[str]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.exists() else None


def _include_dir(work: Path, mlx_src: Path | None) -> Path:
    if mlx_src is not None:
        if not (mlx_src / "mlx" / "backend" / "cuda" / "device" / "utils.cuh").exists():
            raise FileNotFoundError(f"{mlx_src} has no mlx/backend/cuda/device/utils.cuh")
        return mlx_src
    inc = work / "include"
    (inc / "mlx" / "backend" / "cuda" / "device").mkdir(parents=True, exist_ok=True)
    (inc / "mlx" / "backend" / "cuda" / "device" / "utils.cuh").write_text(STUB_UTILS)
    return inc


def check(
    arch: str = DEFAULT_ARCH,
    *,
    mlx_src: Path | None = None,
    out_dir: Path | None = None,
    jobs: int = 2,
) -> list[CompileResult]:
    """Compile every (kernel, tile, dtype); results in order. FileNotFoundError without nvcc."""
    compiler = nvcc()
    if compiler is None:
        raise FileNotFoundError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    if mlx_src is None and os.environ.get("CONVCHECK_MLX_SRC"):
        mlx_src = Path(os.environ["CONVCHECK_MLX_SRC"])
    with tempfile.TemporaryDirectory(prefix="convcheck-cuda-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        include = _include_dir(work, mlx_src)

        def one(item: tuple[str, int, str]) -> CompileResult:
            op, tile, dtype = item
            name, text = source.cuda_translation_unit(op, dtype, tile)
            cu = work / f"{name}.cu"
            cu.write_text(text)
            cmd = [
                compiler,
                "-std=c++17",
                f"-arch={arch}",
                "-I",
                str(include),
                "-c",
                str(cu),
                "-o",
                str(cu.with_suffix(".o")),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True)
            return CompileResult(
                f"{op}_t{tile}", dtype, cu, cmd, res.returncode, (res.stdout + res.stderr).strip()
            )

        items = [
            (op, tile, dtype)
            for op in source.OPS
            for tile in source.TILES
            for dtype in source.DTYPES
        ]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, items))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kernels.check_cuda",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--arch", default=DEFAULT_ARCH, help=f"nvcc -arch (default {DEFAULT_ARCH})")
    ap.add_argument(
        "--mlx-src", type=Path, default=None, help="MLX source checkout whose device headers to use"
    )
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="write the .cu files and objects here instead of a temporary dir",
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    try:
        results = check(args.arch, mlx_src=args.mlx_src, out_dir=args.keep, jobs=args.jobs)
    except FileNotFoundError as exc:
        print(f"check_cuda: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for r in results:
        status = "ok" if r.ok else f"FAILED (exit {r.returncode})"
        print(f"{r.kernel:<20} {r.dtype:<9} {status}")
        if r.output:
            print("  " + r.output.replace("\n", "\n  "))
        failed += not r.ok
    if results:
        print(f"command: {' '.join(results[0].command)}")
    print(f"{len(results) - failed}/{len(results)} translation units compiled")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
