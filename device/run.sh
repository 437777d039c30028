#!/usr/bin/env bash
# The one prepared GPU run (conformance and speed of our kernels on CUDA), in one call:
#
#   bash device/run.sh OUTDIR
#
# from anywhere; it runs the project from its tree (PYTHONPATH), installs nothing and needs no
# network. On a CUDA machine with torch (and MLX's CUDA build: ../shared/gpu/prepare-mlx-cuda.sh,
# then `source .gpu-b/install.sh` in the same shell) it runs, each stage under its own time limit:
#
#   env      nvidia-smi, versions, `python -m conformance backends`
#   smoke    one small case replayed on every GPU backend (compiles our kernels, shows errors early)
#   release  the release conformance run (float64 too) on numpy-ref, torch-cuda, torch-cuda-cl,
#            torch-cuda-nn, mlx-gpu, mlx-gpu-nn, kernels-cuda, TF32 off: OUTDIR/results.json,
#            OUTDIR/report.html
#   tf32     the same backends of torch with --tf32 on the real-network corpus and a few generated
#            cases: OUTDIR/tf32.json, OUTDIR/tf32.html (expected to show TF32's larger errors)
#   bench    python -m benchmarks.gpu: kernels-cuda (each tile) vs mlx-gpu vs cuDNN strict float32
#            and TF32 on the real-network layers: OUTDIR/bench.md, OUTDIR/bench.json
#
# Every stage's output goes to OUTDIR/<stage>.log and one line per stage to OUTDIR/summary.txt
# (exit status, seconds, command). A stage that fails or runs out of time does not stop the next.
# Without a GPU the same command is a dry run: the CUDA backends are reported unavailable with
# their reason, the release run checks numpy-ref alone, the bench times nothing (tested in CI:
# tests/test_device_run.py).
#
# Exit status: the release run's (0 pass or known failures only, 1 new failures, 2 error,
# 124 out of time), else 3 if another stage failed, else 0. The tf32 stage's exit 1 (failures
# found with TF32 on) is its expected outcome, not a failure of this script.
#
# Worker processes run without a memory limit (--worker-memory-mb 0): the CUDA and MLX runtimes'
# mappings are the GPU driver's business, and the device has memory to spare.
#
# Knobs (environment): DEVICE_STAGES (all five: "env smoke release tf32 bench"), DEVICE_BACKENDS
# (the GPU backends of smoke and release:
# torch-cuda,torch-cuda-cl,torch-cuda-nn,mlx-gpu,mlx-gpu-nn,kernels-cuda),
# PYTHON (python3), DEVICE_EXAMPLES (400: --max-examples of the release
# run), DEVICE_WORKERS (8: its -n), DEVICE_TF32_EXAMPLES (20), DEVICE_BENCH_BUDGET (60 seconds of
# timing), DEVICE_RELEASE_LIMIT (220), DEVICE_TF32_LIMIT (60), DEVICE_BENCH_LIMIT (100) seconds.
# The limits add up to 470 s (30 + 60 + 220 + 60 + 100): the whole run stays under 8 minutes.
set -uo pipefail

out=${1:?usage: bash device/run.sh OUTDIR}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLX_CUDA_CONV_CACHE_SIZE=${MLX_CUDA_CONV_CACHE_SIZE:-1000000}
PY=${PYTHON:-python3}
examples=${DEVICE_EXAMPLES:-400}
workers=${DEVICE_WORKERS:-8}
gpu_backends=${DEVICE_BACKENDS:-torch-cuda,torch-cuda-cl,torch-cuda-nn,mlx-gpu,mlx-gpu-nn,kernels-cuda}
stages=" ${DEVICE_STAGES:-env smoke release tf32 bench} "
real_networks=dcgan,unet2d,unet3d,vae3d,hifigan,depthwise,speech_conv1d

summary="$out/summary.txt"
: >"$summary"
declare -A rcs

# stage NAME LIMIT_SECONDS COMMAND...: run it under `timeout`, log it, record its exit status
# (a stage left out of DEVICE_STAGES is skipped and counts as exit 0).
stage() {
    local name=$1 limit=$2
    shift 2
    rcs[$name]=0
    if [[ $stages != *" ${name%-report} "* ]]; then
        echo "$name: skipped (not in DEVICE_STAGES)" >>"$summary"
        return
    fi
    local start=$SECONDS
    echo "== $name (limit ${limit} s): $*"
    timeout --signal=INT --kill-after=30 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    rcs[$name]=$rc
    echo "$name: exit $rc in $((SECONDS - start)) s (limit $limit s): $*" >>"$summary"
    tail -n 30 "$out/$name.log"
    echo "== $name: exit $rc in $((SECONDS - start)) s"
}

env_report() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    else
        echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
    fi
    "$PY" -c 'import platform, sys; print("python", sys.version.split()[0], platform.platform())'
    "$PY" -m conformance backends
}

export -f env_report
export PY
stage env 30 bash -c env_report
stage smoke 60 "$PY" -m conformance replay conv2d-n2-c8x12-s7x6-k3-p1-g2-bias-f32 \
    --backends "numpy-ref,$gpu_backends"
stage release "${DEVICE_RELEASE_LIMIT:-220}" "$PY" -m conformance run -q \
    --max-examples "$examples" -n "$workers" --worker-memory-mb 0 \
    --dtypes float32,float16,bfloat16,float64 --backends "numpy-ref,$gpu_backends" \
    --json "$out/results.json" --report "$out/report.html"
if [ ! -f "$out/results.json" ] && [ -s "$out/results.jsonl" ]; then
    # Stopped at its time limit: the stream holds every case finished; report those.
    stage release-report 60 "$PY" -m conformance report "$out/results.jsonl" \
        -o "$out/report.html"
fi
stage tf32 "${DEVICE_TF32_LIMIT:-60}" "$PY" -m conformance run -q --tf32 \
    --max-examples "${DEVICE_TF32_EXAMPLES:-20}" --dtypes float32 -n "$workers" \
    --worker-memory-mb 0 \
    --corpus "$real_networks" --backends numpy-ref,torch-cuda,torch-cuda-cl \
    --json "$out/tf32.json" --report "$out/tf32.html"
stage bench "${DEVICE_BENCH_LIMIT:-100}" "$PY" -m benchmarks.gpu --out "$out" \
    --budget "${DEVICE_BENCH_BUDGET:-60}"

echo
cat "$summary"
if [ "${rcs[release]}" -ne 0 ]; then
    exit "${rcs[release]}"
fi
for name in env smoke bench; do
    if [ "${rcs[$name]}" -ne 0 ]; then
        exit 3
    fi
done
if [ "${rcs[tf32]}" -ne 0 ] && [ "${rcs[tf32]}" -ne 1 ]; then
    exit 3
fi
exit 0
