"""Backends with planted bugs, for the harness's own tests (``--plugin tests.planted:BACKENDS``).

Each is the reference with one classic conv_transpose mistake, so the harness must catch it.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.dtypes import round_to
from conformance.inputs import Inputs
from reference.core import conv_general, conv_transpose_general
from reference.ops import run_op
from reference.params import PADDING_MODES


class _Planted(Backend):
    def probe(self) -> Availability:
        return Availability(True, "planted bug (test only)")

    def unsupported_reason(self, case: Case) -> str | None:
        return None if case.transposed else "planted backends only do conv_transpose"

    def reference(self, case: Case, inputs: Inputs, **overrides) -> np.ndarray:
        params = {**case.params(), **overrides}
        return run_op(case.op, case.ndim, True, inputs.x, inputs.w, inputs.bias, **params)


class OutputPaddingOnWrongSide(_Planted):
    """Adds the output_padding rows at the low end of each axis instead of the high end."""

    name = "planted-op-low"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        # The unpadded output (possibly empty along an axis), with the padding rows prepended.
        out = conv_transpose_general(
            inputs.x,
            inputs.w,
            stride=case.stride,
            padding_lo=case.padding,
            padding_hi=case.padding,
            dilation=case.dilation,
            output_padding=(0,) * case.ndim,
            groups=case.groups,
        ).out
        widths = [(0, 0)] + [(o, 0) for o in case.output_padding] + [(0, 0)]
        padded = np.pad(out, widths)
        if inputs.bias is not None:
            padded = padded + inputs.bias
        return round_to(padded, case.dtype)


class UnflippedWeight(_Planted):
    """Lowers conv_transpose to a conv over the input-dilated input but forgets to flip the
    kernel (a correct lowering flips it)."""

    name = "planted-unflipped"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        k_ext = [d * (k - 1) for d, k in zip(case.dilation, case.kernel)]
        res = conv_general(
            inputs.x,
            inputs.w,
            stride=(1,) * case.ndim,
            padding_lo=[e - p for e, p in zip(k_ext, case.padding)],
            padding_hi=[e - p + o for e, p, o in zip(k_ext, case.padding, case.output_padding)],
            kernel_dilation=case.dilation,
            input_dilation=case.stride,
            groups=case.groups,
            flip=False,
        )
        out = res.out + (0 if inputs.bias is None else inputs.bias)
        return round_to(out, case.dtype)


class WrongGroups(_Planted):
    """Reads every group's input channels from the first group (a wrong group offset); right
    for groups = 1. Not in :data:`BACKENDS`: load it as ``tests.planted:WrongGroups``."""

    name = "planted-wrong-groups"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        x = inputs.x
        if case.groups > 1 and case.in_channels % case.groups == 0:
            per_group = case.in_channels // case.groups
            x = np.concatenate([x[..., :per_group]] * case.groups, axis=-1)
        return round_to(self.reference(case, Inputs(x, inputs.w, inputs.bias)), case.dtype)


class Crashes(_Planted):
    """Segfaults on cases with stride 3 in the first axis, after printing a line to stdout at
    the file-descriptor level, as native libraries do (OpenBLAS's xerbla); the reference
    otherwise."""

    name = "planted-crash"
    last_words = b"planted-crash: parameter number 13 had an illegal value\n"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if case.stride[0] == 3:
            os.write(1, self.last_words)
            os.kill(os.getpid(), signal.SIGSEGV)
        return round_to(self.reference(case, inputs), case.dtype)


class Hangs(_Planted):
    """Sleeps far past any timeout on cases with batch 2; the reference otherwise."""

    name = "planted-hang"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if case.batch == 2:
            time.sleep(3600)
        return round_to(self.reference(case, inputs), case.dtype)


class RunsOutOfMemory(_Planted):
    """Allocates 100 MB arrays, keeping them alive, until allocation fails, on cases with dilation
    2 in the first axis; the reference otherwise. Run it in a worker with a memory limit
    (``--worker-memory-mb``): past :data:`SAFETY_CAP_BYTES` it gives up with a RuntimeError, so
    a missing limit fails a test instead of exhausting the machine."""

    name = "planted-oom"
    CHUNK_BYTES = 100 * 2**20
    SAFETY_CAP_BYTES = 8 * 2**30

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if case.dilation[0] == 2:
            kept = []
            while len(kept) * self.CHUNK_BYTES < self.SAFETY_CAP_BYTES:
                kept.append(np.ones(self.CHUNK_BYTES // 8))  # touched: real memory
            raise RuntimeError(
                f"allocated {len(kept) * self.CHUNK_BYTES >> 20} MiB without hitting a memory "
                "limit (none set?)"
            )
        return round_to(self.reference(case, inputs), case.dtype)


class StickyDeviceFault(_Planted):
    """Behaves like a GPU backend after a kernel fault: a case with stride 3 in the first axis
    raises CUDA's "an illegal instruction was encountered", and from then on every call in this
    process fails with the sticky error, as a CUDA context does; the reference otherwise."""

    name = "planted-sticky-fault"
    faulted = False

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if StickyDeviceFault.faulted:
            raise RuntimeError(
                "cudaGraphAddKernelNode(&node, graph_, NULL, 0, &params) failed: an illegal "
                "instruction was encountered"
            )
        if case.stride[0] == 3:
            StickyDeviceFault.faulted = True
            raise RuntimeError("cudaGetLastError() failed: an illegal instruction was encountered")
        return round_to(self.reference(case, inputs), case.dtype)


class Slow(_Planted):
    """The reference, after sleeping 50 ms per case (a run that is long enough to interrupt)."""

    name = "planted-slow"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        time.sleep(0.05)
        return round_to(self.reference(case, inputs), case.dtype)


BACKENDS = [
    OutputPaddingOnWrongSide,
    UnflippedWeight,
    Crashes,
    Hangs,
    RunsOutOfMemory,
    StickyDeviceFault,
    Slow,
]


# --- backends for the audit of bad inputs and faults (tests/test_audit.py) -----------------------


class MutatesInput(_Planted):
    """Computes the right output, then zeroes its input ``x`` in place through the raw pointer,
    as a C extension could whatever the array's writeable flag says."""

    name = "planted-mutate"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        import ctypes

        out = round_to(self.reference(case, inputs), case.dtype)
        if inputs.x.size:
            ctypes.memset(inputs.x.ctypes.data, 0, inputs.x.nbytes)
        return out


class HugeMessage(_Planted):
    """Raises a RuntimeError with a message of about 1 MB (head, a million x's, tail)."""

    name = "planted-huge-message"
    FILLER = 2**20

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        raise RuntimeError("HEAD of the message " + "x" * self.FILLER + " TAIL of the message")


#: Not in :data:`BACKENDS`, so runs that load every planted backend stay as they are.
AUDIT_BACKENDS = [MutatesInput, HugeMessage]


# --- a bug that depends on the parity of an output length (tests/test_shrink_parity.py) ----------


class _EveryOp(_Planted):
    """A planted bug in every op (the others do conv_transpose only), on top of the correct
    float64 result."""

    padding_modes = PADDING_MODES  # the reference's own numbers for them

    def unsupported_reason(self, case: Case) -> str | None:
        return None

    def correct(self, case: Case, inputs: Inputs) -> np.ndarray:
        """The reference's output, (N, *spatial, C_out) float64, as a copy to corrupt."""
        out = run_op(
            case.op, case.ndim, case.transposed, inputs.x, inputs.w, inputs.bias, **case.params()
        )
        return np.array(out, copy=True)


class WrongLastOddElement(_EveryOp):
    """Computes the output two elements at a time along the first spatial axis and gets the one
    left over wrong: when that axis's output length is odd (1 included), its last element is off
    by 1.0; right for every even length. Unlike the other planted backends it runs every op. Not
    in :data:`BACKENDS`: load it as ``tests.planted:WrongLastOddElement``."""

    name = "planted-odd-tail"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = self.correct(case, inputs)
        if out.shape[1] % 2 == 1:
            out[:, -1] += 1.0
        return round_to(out, case.dtype)


# --- a bug that shows only at batch index >= 2 (tests/test_case_space.py) -----------------------


class WrongForLateBatch(_EveryOp):
    """Right for the first two batch items and off by 1.0 plus 1/16 of the value everywhere in
    every later one (batch index >= 2), as a kernel whose batch loop mishandles all but its
    first two items would be: only cases with batch >= 3 show it (the relative part shows on
    wide-fill outputs too, whose values reach 2^16). Runs every op. Not in :data:`BACKENDS`:
    load it as ``tests.planted:WrongForLateBatch``."""

    name = "planted-batch3"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        out = self.correct(case, inputs)
        out[2:] += 1.0 + np.abs(out[2:]) / 16
        return round_to(out, case.dtype)


# --- padding='same' with the odd padding at the wrong end (tests/test_padding_modes.py) ---------


class SameLower(_EveryOp):
    """``padding='same'`` that puts the odd padding element at the start of an axis instead of
    the end (ONNX's ``SAME_LOWER`` where PyTorch, JAX and ``SAME_UPPER`` put it last): right for
    every odd kernel extent, off by one position for an even one. Not in :data:`BACKENDS`: load
    it as ``tests.planted:SameLower``."""

    name = "planted-same-lower"

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        params = case.params()
        if case.padding_mode == "same":
            params["padding"], params["padding_hi"] = case.padding_hi, case.padding
        out = run_op(case.op, case.ndim, False, inputs.x, inputs.w, inputs.bias, **params)
        return round_to(out, case.dtype)
