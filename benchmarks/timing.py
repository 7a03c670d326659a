"""The benchmarks' one way to time a call, in a module of its own: speed.py imports torch, not every benchmark may."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(function: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls, after one warm-up call (the call must wait for its own results)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
