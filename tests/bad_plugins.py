"""Plugin attributes that break the rules, for tests/test_plugins.py (``tests.bad_plugins:X``)."""

from __future__ import annotations

import numpy as np

from conformance.backends import Availability, Backend


class Fine(Backend):
    name = "fine-plugin"

    def probe(self) -> Availability:
        return Availability(True, "test only")

    def run(self, case, inputs) -> np.ndarray:
        raise NotImplementedError


class Abstract(Backend):
    """Forgets run()."""

    name = "abstract-plugin"

    def probe(self) -> Availability:
        return Availability(True, "test only")


class Nameless(Fine):
    name = ""


class BadName(Fine):
    name = "my backend,2"


class ShadowsTorch(Fine):
    name = "torch-cpu"


class SameNameAgain(Fine):
    """Another class with Fine's name."""


class NeedsArguments(Fine):
    def __init__(self, device: str) -> None:
        self.device = device


def factory_that_raises() -> Backend:
    raise RuntimeError("no device\nfound")


def factory_of_nothing() -> None:
    return None


NOT_A_BACKEND = 42
TWICE = [Fine, SameNameAgain]
