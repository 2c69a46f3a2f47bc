"""Per-component random streams derived from the scenario seed.

Every random draw in the simulator comes from a Generator returned by :func:`stream`. Streams are keyed
by component name (hashed into the SeedSequence's spawn key), so adding a component or drawing more from
one never shifts another's numbers: the arrival times of a scenario stay identical when only the policy
changes, which is what makes policies comparable on identical workloads.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key(name: str) -> tuple[int, ...]:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def stream(seed: int, name: str) -> np.random.Generator:
    """The Generator of component ``name`` (e.g. ``"arrivals"``, ``"pool"``, ``"predictor"``)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=_key(name))))
