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

// Four scalar loads (a macro: x and w may be in the device or the constant address space).
#define KC_LOAD4(v, p)                \
  {                                   \
    (v)[0] = kc_to_float((p)[0]);     \
    (v)[1] = kc_to_float((p)[1]);     \
    (v)[2] = kc_to_float((p)[2]);     \
    (v)[3] = kc_to_float((p)[3]);     \
  }
#define KC_STORE4(p, v)                            \
  {                                                \
    (p)[0] = kc_from_float<T>((v)[0]);             \
    (p)[1] = kc_from_float<T>((v)[1]);             \
    (p)[2] = kc_from_float<T>((v)[2]);             \
    (p)[3] = kc_from_float<T>((v)[3]);             \
  }
#define KC_ALIGNED16(p) true
