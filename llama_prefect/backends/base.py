"""What every backend shares: a name, slots, a start-up delay and availability.

Remote backends (`RemoteBackend`) also run one invocation's op body elsewhere and say
what it cost; see `RemoteCall` and `RemoteOutcome`.

A backend knows how many invocations it can hold at once, how long an invocation waits
before it starts, and whether it can take work on this machine. It knows nothing of
targets; the scheduler decides what goes where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llama_prefect.core.pipeline import Configuration
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


@dataclass(frozen=True)
class RemoteCall:
    """One invocation's op body, sent to a remote backend.

    Attributes:
        invocation_id: The task run id (names staging objects and log lines).
        op: The pipeline op.
        function: Import path of the op body, ``module:qualname``.
        kwargs: The body's keyword arguments, upstream results resolved, knobs set.
        config: The configuration chosen for it.
        predicted_s: Its predicted latency, in seconds.
        attempt: How many times it was planned before this one.
    """

    invocation_id: str
    op: str
    function: str
    kwargs: dict[str, Any]
    config: Configuration
    predicted_s: float
    attempt: int = 0


@dataclass(frozen=True)
class RemoteOutcome:
    """What a remote backend reports of one finished invocation.

    Attributes:
        value: The op body's return value, decoded.
        cost_usd: What the invocation was billed.
        duration_s: Seconds the body ran on the remote side.
        details: Backend facts for the plan record (billed ms, memory, ...).
    """

    value: Any
    cost_usd: float
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteBackend(Backend):
    """A backend whose invocations run outside the flow process.

    The task engine stays in the flow process; a proxy body the engine calls hands
    the invocation to `run`, which blocks until the remote side answers.
    Subclasses raise `ReplanError` when the backend cannot take or finish the
    invocation (throttled, timed out, no capacity), so it is planned again
    elsewhere, and `RemoteError` (or the op's own error) when the body failed.
    """

    def run(self, call: RemoteCall) -> RemoteOutcome:
        """Runs one invocation remotely and returns its outcome."""
        raise NotImplementedError
