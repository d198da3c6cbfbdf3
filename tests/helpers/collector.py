"""The garbage collector as `helpline serve` sets it, for a test that runs the service in the
test process and times its media.

`helpline serve` collects rarely (pbx/collector.py: `tune`) and moves what start-up built to the
oldest generation (`settle`). The test process keeps CPython's defaults, and by the time a test
runs, the suite before it has left a large heap: a full collection over it holds the event loop
for 100 ms or more (a 127 ms gap in the caller's RTP, with no wait for a CPU, failed CI), a pause
the service itself is configured never to take.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from pbx import collector


@contextmanager
def as_served() -> Iterator[None]:
    """``collector.tune()`` and ``settle()`` for the block, the test process's thresholds after."""
    before = gc.get_threshold()
    collector.tune()
    collector.settle()
    try:
        yield
    finally:
        gc.set_threshold(*before)
