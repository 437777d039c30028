"""Harness adapters for the kernels: ``kernels-host``, ``kernels-cuda``, ``kernels-metal``.

They are built-in backends (:func:`conformance.backends.builtin_backends`); loading them again
as a plugin is an error (a plugin's names must be new). All three run the same bodies (see
:mod:`kernels.source`); they differ only in how those are compiled and launched. Invalid cases
are rejected in :meth:`run` with the reference's own ``ValueError`` (a "both rejected" verdict);
:meth:`unsupported_reason` names only what the kernels cannot do.

Directions: ``fwd``, and ``bwd_d`` through the same bodies: the input gradient of a conv is the
transposed conv of ``dy`` with the regrouped weight, and the other way round
(:func:`conformance.directions.adjoint`). ``bwd_w`` needs a body of its own (not written yet).
"""

from __future__ import annotations

import numpy as np

from conformance.backends.base import Availability, Backend
from conformance.case import Case
from conformance.directions import adjoint
from conformance.inputs import Inputs, check_case
from kernels import plan as planning


class _KernelsBackend(Backend):
    dialect = ""
    directions = ("fwd", "bwd_d")

    def unsupported_reason(self, case: Case) -> str | None:
        return planning.unsupported_reason(case)

    def run(self, case: Case, inputs: Inputs) -> np.ndarray:
        if case.direction == "bwd_d":
            check_case(case)  # an invalid case is rejected as the forward op would
            adj = adjoint(case)
            assert inputs.dy is not None
            grad = Inputs(inputs.dy, adj.weight(inputs.w, case.groups), None)
            return adj.crop(self._launch(adj.case, grad))
        return self._launch(case, inputs)

    def _launch(self, case: Case, inputs: Inputs) -> np.ndarray:
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


class KernelsCuda(_MLXKernelsBackend):
    name = "kernels-cuda"
    description = "convcheck kernels, CUDA dialect through mx.fast.cuda_kernel"
    dialect = "cuda"


class KernelsMetal(_MLXKernelsBackend):
    name = "kernels-metal"
    description = "convcheck kernels, Metal dialect through mx.fast.metal_kernel"
    dialect = "metal"


BACKENDS: list[Backend] = [KernelsHost(), KernelsCuda(), KernelsMetal()]
