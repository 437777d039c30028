"""ONNX Runtime adapters: ``onnxruntime-cpu`` (CPU execution provider) and ``onnxruntime-cuda``.

Each case becomes a one-node ONNX model, built with the ``onnx`` package and run the way a
deployed model runs: input ``X`` is the graph's input, weight ``W`` and bias ``B`` are
initializers (so ONNX Runtime may pre-pack them and rewrite the layout, as it does for real
models), at ONNX Runtime's default graph optimization level.

* ``conv*d`` -> ``Conv``; ``conv_transpose*d`` -> ``ConvTranspose`` (with ``output_padding``);
  attributes ``kernel_shape``, ``strides``, ``pads`` (all begins, then all ends), ``dilations``
  and ``group``; ``auto_pad`` stays ``NOTSET``, except for the ``psame`` / ``pvalid`` cases,
  which give ``auto_pad`` ``SAME_UPPER`` / ``VALID`` and no ``pads``.
* Layout is ONNX's channels-first, translated once: ``X`` ``(N, C_in, *S)``, ``W`` as in PyTorch
  (:func:`~conformance.backends.base.channels_first_weight`), ``Y`` back to ``(N, *S, C_out)``.
* float32 and float16: ``X`` and ``Y`` are graph tensors of the case dtype, as in a float16
  model. bfloat16, which NumPy cannot hand to ONNX Runtime: ``X`` enters as float32 and is cast
  in the graph (exact: the values are exact in bfloat16), ``Y`` is cast back to float32. (Not
  for float16: on CPU, ONNX Runtime runs float16 Conv in float32 between inserted casts and then
  drops the model's own float32->float16->float32 cast pair, so the output would never be
  rounded to float16.) ``W`` and ``B`` are initializers of the case dtype. The model uses opset
  :data:`OPSET`, the first whose ``Conv``/``ConvTranspose`` admit bfloat16.
* A dtype and op for which the execution provider has no kernel (ONNX Runtime answers
  ``NOT_IMPLEMENTED`` when the session is built) is ``unsupported``, with ONNX Runtime's own
  message; it is probed once per (op type, dtype, provider) on a tiny valid model.

Invalid cases are rejected the way ONNX Runtime rejects them: while building the session (shape
inference, attribute checks) or while running it. ``onnxruntime-cuda`` runs float32 with
``use_tf32=0`` unless ``--tf32``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from conformance.backends.base import (
    Availability,
    Backend,
    channels_first,
    channels_first_weight,
    channels_last,
)
from conformance.case import Case
from conformance.inputs import Inputs
from reference.params import PADDING_MODES

#: ONNX opset of the models: 22 is the first whose Conv and ConvTranspose take bfloat16.
OPSET = 22
#: IR version of the models: the oldest that carries opset 22 (ONNX Runtime reads older IR
#: versions than the ``onnx`` package writes by default).
IR_VERSION = 10

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _onnx_dtype(dtype: str) -> int:
    from onnx import TensorProto

    return {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "bfloat16": TensorProto.BFLOAT16,
    }[dtype]


def _numpy_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes  # a dependency of onnx

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


#: ``auto_pad`` for a case's padding mode: ``same`` pads the odd one at the end, as PyTorch and
#: JAX do (``SAME_UPPER``).
AUTO_PAD = {"same": "SAME_UPPER", "valid": "VALID"}


def node_attributes(case: Case) -> dict[str, list[int] | int | str]:
    """The Conv/ConvTranspose attributes of ``case``, passed as they are (invalid ones too)."""
    attrs: dict[str, list[int] | int | str] = {
        "kernel_shape": list(case.kernel),
        "strides": list(case.stride),
        "pads": list(case.padding) * 2,  # begins, then ends
        "dilations": list(case.dilation),
        "group": case.groups,
    }
    if case.moded:  # ONNX's own string mode instead of pads (the odd one at the end: UPPER)
        del attrs["pads"]
        attrs["auto_pad"] = AUTO_PAD[case.padding_mode]
    if case.transposed:
        attrs["output_padding"] = list(case.output_padding)
    return attrs


def cast_io(dtype: str) -> bool:
    """Whether the model takes and returns float32 and casts to ``dtype`` inside (bfloat16)."""
    return dtype == "bfloat16"


def io_dtype(dtype: str):
    """The NumPy dtype of ``X`` and ``Y`` for a case of ``dtype``."""
    return np.dtype(np.float32) if cast_io(dtype) else np.dtype(dtype)


def build_model(case: Case, w: np.ndarray, bias: np.ndarray | None):
    """The one-node model of ``case``: input ``X`` (channels-first), initializers ``W``
    (channels-first weight) and ``B`` in the case dtype, output ``Y``; ``X`` and ``Y`` are of
    :func:`io_dtype`, with casts around the node for bfloat16."""
    from onnx import TensorProto, helper, numpy_helper

    dt = _onnx_dtype(case.dtype)
    ndt = _numpy_dtype(case.dtype)
    io = TensorProto.FLOAT if cast_io(case.dtype) else dt
    nodes = []
    x_name, y_name = "X", "Y"
    if cast_io(case.dtype):
        nodes.append(helper.make_node("Cast", ["X"], ["X_cast"], to=dt))
        x_name, y_name = "X_cast", "Y_cast"
    conv_inputs = [x_name, "W"]
    initializers = [numpy_helper.from_array(np.asarray(w).astype(ndt), "W")]
    if bias is not None:
        conv_inputs.append("B")
        initializers.append(numpy_helper.from_array(np.asarray(bias).astype(ndt), "B"))
    op_type = "ConvTranspose" if case.transposed else "Conv"
    nodes.append(helper.make_node(op_type, conv_inputs, [y_name], **node_attributes(case)))
    if cast_io(case.dtype):
        nodes.append(helper.make_node("Cast", ["Y_cast"], ["Y"], to=TensorProto.FLOAT))
    x_shape = [case.batch, case.in_channels, *case.spatial]
    graph = helper.make_graph(
        nodes,
        case.id,
        [helper.make_tensor_value_info("X", io, x_shape)],
        # Y's rank only: its sizes are ONNX Runtime's to infer (and to refuse).
        [helper.make_tensor_value_info("Y", io, [None] * len(x_shape))],
        initializer=initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="convcheck",
    )


class OnnxRuntimeBackend(Backend):
    ops_note = "ONNX Conv has no input dilation or kernel flip"
    layout_note = "ONNX Runtime copies its inputs into contiguous tensors of its own"
    padding_modes = PADDING_MODES

    def __init__(self, device: str, *, allow_tf32: bool = False) -> None:
        if device not in PROVIDERS:
            raise ValueError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
        self.device = device
        self.provider = PROVIDERS[device]
        self.allow_tf32 = allow_tf32 and device == "cuda"
        self.name = f"onnxruntime-{device}"
        self.description = f"ONNX Runtime, one Conv/ConvTranspose node on {self.provider}" + (
            ", TF32 allowed" if self.allow_tf32 else ""
        )

    def probe(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return Availability(False, f"ONNX Runtime is not installed ({exc})")
        versions = {"onnxruntime": ort.__version__}
        try:
            import onnx
        except ImportError as exc:
            return Availability(
                False, f"the onnx package (needed to build models) is not installed ({exc})"
            )
        versions["onnx"] = onnx.__version__
        providers = ort.get_available_providers()
        if self.provider not in providers:
            return Availability(
                False,
                f"ONNX Runtime has no {self.provider} here (providers: {', '.join(providers)})",
                versions,
            )
        return Availability(True, f"{self.provider}, opset {OPSET}", versions)

    def _providers(self) -> list:
        if self.device == "cuda":
            return [(self.provider, {"use_tf32": "1" if self.allow_tf32 else "0"})]
        return [self.provider]

    def session(self, model):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ONNX Runtime warns about unused things
        return ort.InferenceSession(model.SerializeToString(), options, providers=self._providers())

    def unsupported_reason(self, case: Case) -> str | None:
        return _missing_kernel(self, "ConvTranspose" if case.transposed else "Conv", case.dtype)

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        w = channels_first_weight(case, inputs.w)
        model = build_model(case, w, inputs.bias)
        x = channels_first(np.asarray(inputs.x).astype(io_dtype(case.dtype)))
        (y,) = self.session(model).run(["Y"], {"X": x})
        return channels_last(np.asarray(y, dtype=np.float32))


@cache
def _missing_kernel(backend: OnnxRuntimeBackend, op_type: str, dtype: str) -> str | None:
    """ONNX Runtime's message when ``backend``'s provider has no ``op_type`` kernel for
    ``dtype`` (probed on a tiny valid 2-D model), else None."""
    probe = Case(
        op="conv_transpose2d" if op_type == "ConvTranspose" else "conv2d",
        batch=1,
        in_channels=1,
        out_channels=1,
        spatial=(3, 3),
        kernel=(1, 1),
        dtype=dtype,
    )
    w = np.ones((1, 1, 1, 1), dtype=np.float32)
    try:
        backend.session(build_model(probe, w, None))
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
            return f"ONNX Runtime has no {dtype} {op_type} kernel on {backend.provider}: {text}"
    # Any other error: the case runs and its own error is recorded.
    return None
