// CUDA prelude: the `header` of mx.fast.cuda_kernel. MLX puts it after its own default header
// (mlx/backend/cuda/device/utils.cuh, which brings cuda_fp16.h and cuda_bf16.h, and
// cooperative_groups.h) and before `namespace mlx::core::cu { __global__ void ...(...) {`.
// The element type T is the kernel's template argument (`using T = __half;` in the function).
// Contract: see prelude_host.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define KC_FN __device__ __forceinline__

KC_FN float kc_to_float(float v) { return v; }
KC_FN float kc_to_float(__half v) { return __half2float(v); }
KC_FN float kc_to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
KC_FN T kc_from_float(float v);
template <>
KC_FN float kc_from_float<float>(float v) { return v; }
template <>
KC_FN __half kc_from_float<__half>(float v) { return __float2half_rn(v); }
template <>
KC_FN __nv_bfloat16 kc_from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
