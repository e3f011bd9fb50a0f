"""What every backend shares: a name, slots, a start-up delay and availability.

A backend knows how many invocations it can hold at once, how long an invocation waits
before it starts, and whether it can take work on this machine. It knows nothing of
targets; the scheduler decides what goes where.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_prefect.core.scheduler import BackendSlots


@dataclass(frozen=True)
class Backend:
    """A place where invocations run.

    Attributes:
        name: The name used in configurations and the price file.
        capacity: Slots it offers at once.
        startup_s: Seconds before an invocation starts running on it.
    """

    name: str
    capacity: int
    startup_s: float = 0.0

    def available(self) -> bool:
        """True when the backend can take work on this machine."""
        return self.capacity > 0

    def slots(self) -> BackendSlots:
        """The scheduler's view of this backend."""
        return BackendSlots(self.name, self.capacity, self.startup_s)
