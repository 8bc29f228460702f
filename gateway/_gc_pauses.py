"""How long the cyclic garbage collector stops the process: a histogram, for ``/metrics``.

A collection runs inside whatever allocation triggered it, so its pause delays every session's
events. ``gc.callbacks`` brackets each collection; the durations are measured with
``time.perf_counter`` (a measurement, not logic: nothing waits on it).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Final

from ._counters import Histogram

BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # seconds


class GcPauses:
    """Counts collections by duration once :meth:`install`-ed; :meth:`remove` stops it."""

    def __init__(self) -> None:
        self.pauses = Histogram(BUCKETS)
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
        self.pauses.observe(pause)
        self.longest = max(self.longest, pause)
