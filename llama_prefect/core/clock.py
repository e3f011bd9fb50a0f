"""Real and simulated time behind one interface.

The scheduler asks a clock for the time and never calls `time` itself, so the runner
(real time) and the simulator (simulated time) drive the same code.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the time in seconds."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...


class RealClock:
    """Wall time from `time.monotonic`."""

    def now(self) -> float:
        """Seconds since an arbitrary fixed point."""
        return time.monotonic()


class SimClock:
    """Simulated time that moves only when told to.

    Args:
        start_s: The time it shows at first.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now(self) -> float:
        """The simulated time in seconds."""
        return self._now_s

    def advance(self, seconds: float) -> None:
        """Moves time forward by `seconds` (never backward)."""
        if seconds < 0:
            raise ValueError(f"time moves forward only, but got {seconds} s")
        self._now_s += seconds
