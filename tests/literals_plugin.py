"""A plugin module full of integer literals, as a kernel author's module is.

Hypothesis mixes the integer constants of every loaded non-site-packages module into its draws;
the CLI's case list must not change when this module is loaded (tests/test_generate.py).
"""

from __future__ import annotations

from conformance.backends.numpy_ref import NumpyReference

TILE_SIZES = (7, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89)
MAGIC = (
    1009,
    2017,
    4099,
    8191,
    65537,
    131071,
    524287,
    6700417,
    2147483647,
    -1,
    -2,
    -3,
    -17,
    9999,
    10000,
    12345,
    54321,
    99991,
    3,
    5,
    9,
    11,
    4096,
    8192,
    16384,
    32768,
    1 << 40,
)


class LiteralHeavy(NumpyReference):
    """The reference under another name: passes every case."""

    name = "literal-heavy"
    description = "numpy-ref under another name, from a module full of integer literals"


BACKENDS = [LiteralHeavy]
