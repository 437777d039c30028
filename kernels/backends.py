"""Harness adapters for the kernels: ``kernels-host``, ``kernels-cuda``, ``kernels-metal``.

They are built-in backends (:func:`conformance.backends.builtin_backends`); loading them again
as a plugin is an error (a plugin's names must be new). All three run the same bodies (see
:mod:`kernels.source`); they differ only in how those are compiled and launched. Invalid cases
are rejected in :meth:`run` with the reference's own ``ValueError`` (a "both rejected" verdict);
:meth:`unsupported_reason` names only what the kernels cannot do.

Directions: ``fwd``; ``bwd_d`` through the same bodies: the input gradient of a conv is the
transposed conv of ``dy`` with the regrouped weight, and the other way round
(:func:`conformance.directions.adjoint`); ``bwd_w`` through one body of its own,
``conv_weight_grad`` (a convolution's weight gradient, summed over batch and positions in float),
for every op:

* conv: the body on ``x`` and ``dy``;
* conv_transpose: the body for the adjoint convolution (``adjoint(case).case``: channels' roles
  swapped, its input the transposed op's output) on ``dy`` and ``x``, its gradient regrouped
  back (``adjoint(case).weight``): ``dW[g*Cout_g + co, k, ci] = sum dy[n, i*st - p + k*d, co']
  x[n, i, g*Cin_g + ci]`` is the adjoint's weight gradient with the channels' roles swapped;
* the bias (when the case has one): the body for a 1x1 convolution of an all-ones input with one
  channel, whose weight gradient is ``sum_{n, o} dy[n, o, co]`` (products by 1 are exact).

A ``bwd_w`` run returns ``grad_weight`` or ``(grad_weight, grad_bias)``
(:func:`conformance.directions.output_names`).
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.directions import adjoint
from conformance.inputs import Inputs, check_case
from kernels import plan as planning


class _KernelsBackend(Backend):
    ops_note = "the kernels' bodies take symmetric padding, no input dilation or kernel flip"
    layout_note = "the kernels read contiguous buffers (the launch copies a view into one)"
    padding_mode_note = "the kernels take explicit symmetric padding numbers"
    dialect = ""
    directions = ("fwd", "bwd_d", "bwd_w")

    def unsupported_reason(self, case: Case) -> str | None:
        return planning.unsupported_reason(case)

    def run(self, case: Case, inputs: Inputs) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if case.direction == "fwd":
            return self._launch(case, inputs)
        check_case(case)  # an invalid case is rejected as the forward op would
        assert inputs.dy is not None
        if case.direction == "bwd_d":
            adj = adjoint(case)
            grad = Inputs(inputs.dy, adj.weight(inputs.w, case.groups), None)
            return adj.crop(self._launch(adj.case, grad))
        return self.weight_and_bias_grads(case, inputs.x, inputs.dy)

    def weight_and_bias_grads(
        self, case: Case, x: np.ndarray, dy: np.ndarray
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``bwd_w`` of a valid ``case``: its weight gradient, and its bias gradient when it has
        a bias (see the module docstring), all from the ``conv_weight_grad`` body."""
        if case.transposed:
            adj = adjoint(case)
            grad_w = adj.weight(self._weight_grad(adj.case, dy, x), case.groups)
        else:
            grad_w = self._weight_grad(case, x, dy)
        if not case.bias:
            return grad_w
        nd = case.ndim
        n, *positions, c_out = dy.shape
        unit = Case(f"conv{nd}d", n, 1, c_out, tuple(positions), (1,) * nd, dtype=case.dtype)
        ones = np.ones((*dy.shape[:-1], 1), np.float32)
        grad_b = self._weight_grad(unit, ones, dy)
        return grad_w, grad_b.reshape(-1)

    def _launch(self, case: Case, inputs: Inputs) -> np.ndarray:
        raise NotImplementedError

    def _weight_grad(self, conv: Case, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """The weight gradient of convolution ``conv`` for input ``x`` and cotangent ``dy``."""
        raise NotImplementedError

    def _plan(self, case: Case, inputs: Inputs) -> planning.Plan:
        return planning.make_plan(
            case,
            inputs.x.shape,
            inputs.w.shape,
            None if inputs.bias is None else inputs.bias.shape,
            dialect=self.dialect,
        )


class KernelsHost(_KernelsBackend):
    name = "kernels-host"
    description = "convcheck kernels, host dialect: the bodies compiled by g++ -O3 (OpenMP)"
    dialect = "host"

    def probe(self) -> Availability:
        from kernels import host

        if host.compiler() is None:
            return Availability(False, "no C++ compiler (g++ not on PATH)")
        try:
            lib = host.load()
        except host.HostBuildError as exc:
            return Availability(False, str(exc))
        threads = "OpenMP" if lib.openmp else "serial (no OpenMP)"
        return Availability(
            True,
            f"host CPU, {threads}; library {lib.path}",
            {"compiler": host.compiler_identity(host.compiler() or "g++")},
        )

    def _launch(self, case: Case, inputs: Inputs) -> np.ndarray:
        from kernels import host

        p = self._plan(case, inputs)
        return host.run(p, case.dtype, inputs.x, inputs.w, inputs.bias)

    def _weight_grad(self, conv: Case, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        from kernels import host

        p = planning.make_weight_grad_plan(conv, x.shape, dy.shape, dialect=self.dialect)
        return host.run_weight_grad(p, conv.dtype, x, dy)


class _MLXKernelsBackend(_KernelsBackend):
    def probe(self) -> Availability:
        try:
            from kernels.mlx_launch import import_mlx

            mx = import_mlx()
        except ImportError as exc:
            return Availability(False, f"MLX is not installed ({exc})")
        versions = {"mlx": mx.__version__}
        module = getattr(mx, self.dialect, None)
        if module is None or not module.is_available():
            return Availability(
                False,
                f"MLX has no {self.dialect.upper()} backend here "
                f"(mx.{self.dialect}.is_available() is False)",
                versions,
            )
        return Availability(True, f"MLX {self.dialect.upper()} via mx.fast", versions)

    def _launch(self, case: Case, inputs: Inputs) -> np.ndarray:
        from kernels import mlx_launch

        p = self._plan(case, inputs)
        return mlx_launch.run(self.dialect, p, case.dtype, inputs.x, inputs.w, inputs.bias)

    def _weight_grad(self, conv: Case, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        from kernels import mlx_launch

        p = planning.make_weight_grad_plan(conv, x.shape, dy.shape, dialect=self.dialect)
        return mlx_launch.run_weight_grad(self.dialect, p, conv.dtype, x, dy)


class KernelsCuda(_MLXKernelsBackend):
    name = "kernels-cuda"
    description = "convcheck kernels, CUDA dialect through mx.fast.cuda_kernel"
    dialect = "cuda"


class KernelsMetal(_MLXKernelsBackend):
    name = "kernels-metal"
    description = "convcheck kernels, Metal dialect through mx.fast.metal_kernel"
    dialect = "metal"


BACKENDS: list[Backend] = [KernelsHost(), KernelsCuda(), KernelsMetal()]
