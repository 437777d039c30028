"""Where the case space's choices come from: Hypothesis, or our own seeded generator.

The case space (:mod:`conformance.strategies`) is written once against :class:`Draw`, three
kinds of choice: an integer in a closed range, an item of a sequence, a boolean. Two sources
implement it:

* :class:`HypothesisDraw` wraps a Hypothesis ``draw`` function: pytest explores and shrinks the
  space with Hypothesis, as before.
* :class:`SeededDraw` is a SplitMix64 stream: the CLI's case list (``python -m conformance run``
  and ``cases``). Hypothesis mixes integer literals from every loaded non-site-packages module
  into its draws and changes its choice sequence between releases, so the same seed gave
  different cases when a plugin was loaded or Hypothesis was upgraded. SplitMix64 is plain
  integer arithmetic: the same seed gives the same cases whatever is imported, on every
  platform and Python version. ``tests/golden/`` holds the first ids of the default seed, so a
  change of the list is a test failure, never a surprise.

SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA
2014): the state advances by the golden-ratio constant and each output is a bijective mix of it.
Ranges are drawn without bias by rejection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15


class Draw(Protocol):
    """The choices a case is built from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (both included)."""

    def choice(self, items: Sequence[T]) -> T:
        """One of ``items``."""

    def boolean(self) -> bool: ...


class HypothesisDraw:
    """:class:`Draw` over a Hypothesis ``draw`` function (inside ``st.composite``)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[T]], T]) -> None:
        self._draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def choice(self, items: Sequence[T]) -> T:
        return self._draw(st.sampled_from(items))

    def boolean(self) -> bool:
        return self._draw(st.booleans())


def stream_seed(*parts: object) -> int:
    """A 64-bit seed from a tuple of labels (e.g. ``(seed, "conv2d", "valid")``): independent
    streams per op and kind, so ``--ops conv2d`` draws the same conv2d cases as a full run."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


class SeededDraw:
    """:class:`Draw` from a SplitMix64 stream; deterministic for a given seed."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"SeededDraw seed must be an int, got {seed!r}")
        self._state = seed & _MASK

    def next_u64(self) -> int:
        self._state = (self._state + _GAMMA) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def integer(self, lo: int, hi: int) -> int:
        if hi < lo:
            raise ValueError(f"empty range [{lo}, {hi}]")
        span = hi - lo + 1
        if span > 1 << 64:
            raise ValueError(f"range [{lo}, {hi}] wider than 2**64")
        # Rejection: accept draws below the largest multiple of span, so every value is equally
        # likely.
        limit = ((1 << 64) // span) * span
        while True:
            r = self.next_u64()
            if r < limit:
                return lo + r % span

    def choice(self, items: Sequence[T]) -> T:
        if not items:
            raise ValueError("choice from an empty sequence")
        return items[self.integer(0, len(items) - 1)]

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1
