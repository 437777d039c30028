"""Hypothesis profiles: ``ci`` (deterministic, bounded), ``dev`` (quick, random), ``release``.

Registered on import. pytest picks one with ``--hypothesis-profile NAME``; without it the
profile named by ``CONVCHECK_PROFILE`` is loaded, or ``dev``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = ("ci", "dev", "release")
_quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_quiet,
)
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_quiet)
settings.register_profile(
    "release", max_examples=300, deadline=None, print_blob=True, suppress_health_check=_quiet
)


def load_default() -> str:
    name = os.environ.get("CONVCHECK_PROFILE", "dev")
    if name not in PROFILES:
        raise ValueError(f"CONVCHECK_PROFILE must be one of {', '.join(PROFILES)}, got {name!r}")
    settings.load_profile(name)
    return name
