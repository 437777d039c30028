// KC_LOAD4, KC_STORE4 and KC_ALIGNED16 (contract: prelude_host.h) as four scalar accesses, for
// the dialects without vector types here: appended after prelude_host.h and prelude_metal.h
// (kernels.source.header). Macros, not functions: on Metal, x and w may be in the device or the
// constant address space. The host compiler vectorises what it can.
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
