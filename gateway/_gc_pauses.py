"""How long the cyclic garbage collector stops the process: a histogram, for ``/metrics``.

A collection runs inside whatever allocation triggered it, so its pause delays every session's
events. ``gc.callbacks`` brackets each collection; the durations are measured with
``time.perf_counter`` (a measurement, not logic: nothing waits on it).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Final

BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # seconds


class GcPauses:
    """Counts collections by duration once :meth:`install`-ed; :meth:`remove` stops it."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one: longer than every bound
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self._started = 0.0

    def install(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.count += 1
        self.total += pause
        self.longest = max(self.longest, pause)
        index = next((i for i, bound in enumerate(BUCKETS) if pause <= bound), len(BUCKETS))
        self.buckets[index] += 1

    def render(self, prefix: str) -> list[str]:
        """Prometheus histogram lines (cumulative buckets) and the longest pause so far."""
        name = prefix + "gc_pause_seconds"
        lines = [
            f"# HELP {name} Pauses of the cyclic garbage collector.",
            f"# TYPE {name} histogram",
        ]
        cumulative = 0
        for bound, count in zip((*BUCKETS, "+Inf"), self.buckets, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        lines += [f"{name}_sum {self.total:.6f}", f"{name}_count {self.count}"]
        longest = prefix + "gc_pause_longest_seconds"
        lines += [
            f"# HELP {longest} The longest collector pause since start.",
            f"# TYPE {longest} gauge",
            f"{longest} {self.longest:.6f}",
        ]
        return lines
