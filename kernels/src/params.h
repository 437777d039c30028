// Slots of the int32 parameter array every kernel body reads (`params`).
//
// 1-D and 2-D problems are passed as 3-D ones with leading size-1 spatial dimensions (kernel 1,
// stride 1, padding 0, dilation 1), so one body and one compiled library serve every case.
// kernels/plan.py reads the KC_P_* slots from this file: it is the one definition of the layout.
#define KC_P_N 0          // batch
#define KC_P_CIN 1        // input channels
#define KC_P_COUT 2       // output channels
#define KC_P_GROUPS 3     // groups (divides both channel counts)
#define KC_P_HAS_BIAS 4   // 1: read bias[co]; 0: bias is a dummy and never read
#define KC_P_TOTAL 6      // threads that do work: positions x groups x tiles per group
#define KC_P_S 8          // input spatial size, 3 slots
#define KC_P_K 11         // kernel size, 3 slots
#define KC_P_O 14         // output spatial size, 3 slots
#define KC_P_STRIDE 17    // 3 slots
#define KC_P_PAD 20       // padding (both sides), 3 slots
#define KC_P_DIL 23       // kernel dilation, 3 slots
#define KC_P_TSTEP 26     // conv_transpose: stride / gcd(stride, dilation), 3 slots
#define KC_P_COUNT 32     // length of the array
