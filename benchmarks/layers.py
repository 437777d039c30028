"""Layer shapes the benchmarks time, from the real-network corpus (``cases/*.toml``).

Batch sizes are as the kernels issue names them (the 3-D U-Net decoder at 2x16x32x32, 64 -> 32
channels, kernel 2, stride 2), not the reduced ones of the conformance corpus.
"""

from __future__ import annotations

import math

from conformance.case import Case, parse_id

#: The real-network corpus files under ``cases/`` (``edge_cases`` is not a network).
REAL_NETWORK_CORPORA = (
    "dcgan",
    "unet2d",
    "unet3d",
    "vae3d",
    "hifigan",
    "depthwise",
    "speech_conv1d",
)

#: name -> case id
LAYERS: dict[str, str] = {
    "dcgan-g3": "conv_transpose2d-n8-c256x128-s8-k4-st2-p1-f32",
    "unet2d-up2": "conv_transpose2d-n1-c256x128-s32-k2-st2-f32",
    "unet3d-up": "conv_transpose3d-n2-c64x32-s16x32x32-k2-st2-f32",
    "vae3d-up": "conv_transpose3d-n1-c128x128-s4x16x16-k3x4x4-st1x2x2-p1-f32",
    "hifigan-up1": "conv_transpose1d-n4-c512x256-s32-k16-st8-p4-bias-f32",
    "whisper-conv2": "conv1d-n1-c384x384-s300-k3-st2-p1-bias-f32",
}


def layer(name: str) -> Case:
    return parse_id(LAYERS[name])


def flops(case: Case) -> int:
    """Multiply-adds x 2 of the dense op (taps that land on padding counted for conv, none for
    conv_transpose's scatter): what TFLOP/s figures conventionally use."""
    k = math.prod(case.kernel)
    if case.transposed:
        inputs = case.batch * math.prod(case.spatial) * case.in_channels
        return 2 * inputs * (case.out_channels // case.groups) * k
    from reference.params import conv_output_shape

    out = conv_output_shape(case.spatial, case.kernel, case.stride, case.padding, case.dilation)
    outputs = case.batch * math.prod(out) * case.out_channels
    return 2 * outputs * (case.in_channels // case.groups) * k
