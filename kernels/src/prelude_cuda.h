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

// One vector load of 4 elements (16 bytes of float, 8 of half/bfloat16). Callers check
// KC_ALIGNED16 and keep offsets a multiple of 4 elements.
KC_FN void kc_load4(const float* p, float* v) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}
KC_FN void kc_load4(const __half* p, float* v) {
  const uint2 q = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&q.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&q.y));
  v[0] = a.x;
  v[1] = a.y;
  v[2] = b.x;
  v[3] = b.y;
}
KC_FN void kc_load4(const __nv_bfloat16* p, float* v) {
  const uint2 q = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&q.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&q.y));
  v[0] = a.x;
  v[1] = a.y;
  v[2] = b.x;
  v[3] = b.y;
}
KC_FN void kc_store4(float* p, const float* v) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
KC_FN void kc_store4(__half* p, const float* v) {
  __half2 q[2] = {__floats2half2_rn(v[0], v[1]), __floats2half2_rn(v[2], v[3])};
  *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(q);
}
KC_FN void kc_store4(__nv_bfloat16* p, const float* v) {
  __nv_bfloat162 q[2] = {__floats2bfloat162_rn(v[0], v[1]), __floats2bfloat162_rn(v[2], v[3])};
  *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(q);
}
#define KC_LOAD4(v, p) kc_load4((p), (v))
#define KC_STORE4(p, v) kc_store4((p), (v))
#define KC_ALIGNED16(p) ((reinterpret_cast<unsigned long long>(p) & 15ull) == 0)
