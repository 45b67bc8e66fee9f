"""Building many records at once (a policy document of a million edges).

Every allocation counts towards the cyclic garbage collector's thresholds, so building a
million records runs its full collection over the ever larger heap many times, which
doubles the time measured by ``agensbus bench snapshot``. Records hold no cycles, so
nothing is left for the collector to find: it is paused while they are built.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting goes on), and
    restore it as it was, even if the block raises."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
