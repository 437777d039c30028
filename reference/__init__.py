"""Float64 NumPy reference (the oracle) for convolution and transposed convolution.

Layout is MLX's throughout:

* input ``x``: channels-last, ``(N, *spatial, C_in)``
* weight ``w`` for every op, forward and transposed: ``(C_out, *kernel, C_in // groups)``
* output: ``(N, *out_spatial, C_out)``
* bias: ``(C_out,)``

For a transposed convolution the weight layout is the same as MLX's ``conv_transpose*``:
``w[co, *k, ci]`` is PyTorch's ``weight[g * C_in_g + ci, co_local, *k]`` of
``torch.nn.functional.conv_transpose*``.
"""

from reference.core import ConvResult, conv_general, conv_transpose_general
from reference.ops import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from reference.params import conv_output_shape, conv_transpose_output_shape

__all__ = [
    "ConvResult",
    "conv_general",
    "conv_transpose_general",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_output_shape",
    "conv_transpose_output_shape",
]
