// Metal prelude: the `header` of mx.fast.metal_kernel. MLX compiles its own utils (metal_stdlib,
// `using namespace metal;`, bfloat16_t = bfloat) first, then this, then
// `template <typename T> [[kernel]] void ...(const device T* x [[buffer(0)]], ...) {`.
// Metal's float -> half and float -> bfloat conversions round to nearest even.
// Contract: see prelude_host.h.

#define KC_FN inline

KC_FN float kc_to_float(float v) { return v; }
KC_FN float kc_to_float(half v) { return static_cast<float>(v); }
KC_FN float kc_to_float(bfloat16_t v) { return static_cast<float>(v); }

template <typename T>
KC_FN T kc_from_float(float v) { return static_cast<T>(v); }
