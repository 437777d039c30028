// Host (C++) prelude: the bodies compiled by g++ for the CPU, one call per thread.
//
// Contract shared with prelude_cuda.h and prelude_metal.h (the bodies use nothing else):
//   KC_FN                    qualifier of helper functions
//   kc_to_float(v)           load one element of the case dtype as float
//   kc_from_float<T>(f)      store: round a float to T (round to nearest even)
//   KC_LOAD4(v, p)           v[0..3] = the 4 elements at p, as float (a vector load on CUDA)
//   KC_STORE4(p, v)          p[0..3] = the 4 floats v rounded to T (a vector store on CUDA)
//   KC_ALIGNED16(p)          whether KC_LOAD4/KC_STORE4 may use p (16-byte aligned where it matters)
// (the last three: scalar4.h here and on Metal)
// and, in scope where a body is pasted: kc_tid (this thread), KC_TILE (output channels per
// thread, a compile-time constant), T (the element type), x, w, bias, params, out (pointers;
// params is int32).
//
// float16 and bfloat16 travel as their 16-bit patterns, exactly as on the GPU; the conversions
// below are exact (to float) and round to nearest even (from float), subnormals, infinities and
// NaN included.
#include <cstdint>
#include <cstring>

#define KC_FN static inline

struct kc_half {
  uint16_t bits;
};
struct kc_bfloat {
  uint16_t bits;
};

KC_FN float kc_bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

KC_FN uint32_t kc_float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

KC_FN float kc_to_float(float v) { return v; }

KC_FN float kc_to_float(kc_bfloat v) { return kc_bits_float(uint32_t(v.bits) << 16); }

KC_FN float kc_half_to_float_exact(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1fu;
  const uint32_t mant = bits & 0x3ffu;
  if (exp == 0x1fu) return kc_bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  if (exp != 0) return kc_bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  const float m = float(mant) * 5.9604644775390625e-08f;  // subnormal or zero: mant * 2^-24
  return sign ? -m : m;
}

// float16 loads go through a table of all 65536 values, filled once when the library loads:
// the bit manipulation above costs more than the multiply-add it feeds (GPUs convert in one
// instruction). The table is the same exact conversion.
struct kc_half_table_t {
  float value[65536];
  kc_half_table_t() {
    for (uint32_t b = 0; b < 65536u; ++b) value[b] = kc_half_to_float_exact(uint16_t(b));
  }
};
static const kc_half_table_t kc_half_table;

KC_FN float kc_to_float(kc_half v) { return kc_half_table.value[v.bits]; }

KC_FN uint16_t kc_half_bits(float f) {
  const uint32_t u = kc_float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN, quiet
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 (or inf): inf
  if (a >= 0x38800000u) {                                // normal half: rebias, round, carry
    const uint32_t m = a - (112u << 23);
    return uint16_t(sign | ((m + 0xfffu + ((m >> 13) & 1u)) >> 13));
  }
  if (a <= 0x33000000u) return uint16_t(sign);  // <= 2^-25 (a tie goes to even 0): zero
  // Subnormal half: value * 2^24 rounded to an integer, nearest even.
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - (a >> 23);  // 14..24
  uint32_t h = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

KC_FN uint16_t kc_bfloat_bits(float f) {
  const uint32_t u = kc_float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN, quiet
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <typename T>
KC_FN T kc_from_float(float v);
template <>
inline float kc_from_float<float>(float v) { return v; }
template <>
inline kc_half kc_from_float<kc_half>(float v) { return kc_half{kc_half_bits(v)}; }
template <>
inline kc_bfloat kc_from_float<kc_bfloat>(float v) { return kc_bfloat{kc_bfloat_bits(v)}; }
