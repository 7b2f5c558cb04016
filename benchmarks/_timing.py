"""Wall-clock timing shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

import statistics
import time


def timed(fn, repeats=3, reduce="median"):
    """Call ``fn`` ``repeats`` times; return ``(seconds, last result)`` with the median (or ``"min"``) time."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return (min(times) if reduce == "min" else statistics.median(times)), out
