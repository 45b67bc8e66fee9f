"""Random streams keyed by what they are for, never by call order.

A redelivered decision, a second worker or a replay must draw exactly what the first
execution drew, so every stream is seeded from a hash of its key (seed, purpose, trajectory,
step, attempt...) rather than taken from a shared generator.
"""

import hashlib
import random

from services.sim.spec import Dist


def stream(*key: str | int) -> random.Random:
    """A generator determined by ``key`` alone (blake2b of its repr)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def draw(rng: random.Random, dist: Dist) -> float:
    """Gamma with the distribution's mean and coefficient of variation: non-negative,
    right-skewed like token counts and latencies."""
    if dist.spread == 0.0 or dist.mean == 0.0:
        return dist.mean
    shape = 1.0 / dist.spread**2
    return rng.gammavariate(shape, dist.mean / shape)
