"""How many tasks a pool backend should keep up, from the scheduler's own choices.

A pool that starts its tasks on demand (an ECS GPU pool whose tasks stay up while
busy and stop once idle) has a start-up of tens of seconds. An invocation planned
while it is cold sees that start-up and goes elsewhere, so the pool is never used
however much it would save: no single invocation can pay for warming it.

`PoolDemand` breaks that circle. The scheduler tells it the slot-seconds each call
committed on a pool takes, and, for a sample of the invocations planned elsewhere
while the pool was cold or full, the slot-seconds they would have taken there had
it been warm and free (the invocation's plan made again as if it were). Over the
last `WINDOW_S` seconds that is a rate of work the pool would be given; the pool
should keep up enough tasks to run it at `UTILISATION`. Tasks are only ever asked
for: a pool stops idle tasks by itself.

Constants *(ours)*: a 30 s window is a few times the start-up of a GPU task and
short against an archive; 0.8 leaves room for bursts, as a pool run near full has
long queues.
"""

from __future__ import annotations

import math
from collections import deque

#: Seconds of choices the demand is counted over (ours).
WINDOW_S = 30.0
#: Share of its tasks' time a pool is sized to be busy (ours).
UTILISATION = 0.8


class PoolDemand:
    """Slot-seconds asked of each pool backend over a sliding window.

    Args:
        window_s: Seconds counted.
        utilisation: Busy share the wanted task count is sized for.
    """

    def __init__(self, window_s: float = WINDOW_S, utilisation: float = UTILISATION):
        self.window_s = window_s
        self.utilisation = utilisation
        self._asked: dict[str, deque[tuple[float, float]]] = {}
        self._total: dict[str, float] = {}

    def add(self, backend: str, now_s: float, slot_s: float) -> None:
        """Counts `slot_s` slot-seconds asked of `backend` at `now_s`.

        What left the window is dropped here too, so the count stays small when
        nobody reads it (the runner, or a pool that is always on).
        """
        asked = self._asked.get(backend)
        if asked is None:
            asked = self._asked[backend] = deque()
            self._total[backend] = 0.0
        asked.append((now_s, slot_s))
        self._total[backend] += slot_s
        self._drop_old(backend, asked, now_s)

    def rate(self, backend: str, now_s: float) -> float:
        """Slot-seconds per second asked of `backend` over the window."""
        asked = self._asked.get(backend)
        if not asked:
            return 0.0
        self._drop_old(backend, asked, now_s)
        return max(0.0, self._total[backend]) / self.window_s

    def _drop_old(
        self, backend: str, asked: deque[tuple[float, float]], now_s: float
    ) -> None:
        total = self._total[backend]
        while asked and asked[0][0] < now_s - self.window_s:
            total -= asked.popleft()[1]
        self._total[backend] = total if asked else 0.0

    def wanted(self, backend: str, now_s: float, capacity: int) -> int:
        """Tasks `backend` should keep up now: its rate at `utilisation`, capped."""
        rate = self.rate(backend, now_s)
        if rate <= 0.0:
            return 0
        return min(capacity, math.floor(rate / self.utilisation + 1e-9))
