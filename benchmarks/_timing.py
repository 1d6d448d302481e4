"""The peer harness's timing protocol, shared by the ``time_*.py`` scripts: warm-ups, then the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], warmup: int = 2, iters: int = 10) -> float:
    """Run ``fn`` ``warmup`` times untimed, then ``iters`` times; the median wall time in seconds."""
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
