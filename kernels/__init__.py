"""convcheck's own accelerated kernels: conv and conv_transpose, 1-D to 3-D, one body per op,
and one weight-gradient body for every op's ``bwd_w`` (``bwd_d`` runs the forward bodies).

* :mod:`kernels.source`: assembles each body with a thin per-dialect prelude (host, cuda, metal).
* :mod:`kernels.plan`: validates a case and packs its parameters into an int32 array.
* :mod:`kernels.host`: builds the host dialect with g++, loads it with ctypes, runs it.
* :mod:`kernels.mlx_launch`: launches the cuda/metal dialects through ``mx.fast``.
* :mod:`kernels.backends`: the harness adapters ``kernels-host``, ``kernels-cuda``,
  ``kernels-metal`` (built-in backends: listed by ``python -m conformance backends``).
* :mod:`kernels.check_cuda`: compiles the CUDA dialect with nvcc (no GPU needed).
"""
