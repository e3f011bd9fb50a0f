"""Simulated backends: their start-up delays, limits and bills.

* `LambdaModel`: concurrency up to the account limit (the scheduler's capacity);
  an invocation that finds no idle warm execution environment of its memory size
  cold-starts; an environment stays warm for a while after its last invocation.
  Billed per millisecond of duration (start-up included) times memory, plus the
  request fee. A running invocation cannot be stopped: a cancelled duplicate runs
  to its end and is billed.
* `GpuPoolModel`: a pool of GPU tasks (one slot each). A call that finds no idle
  running task starts one (start-up delay); a task idle for long is stopped. Billed
  per second while a task runs, busy or idle, with a one-minute minimum per start.
  `always_on` keeps every task up for the whole run (a fixed GPU pool).
* `FixedPoolModel`: a pool of vCPUs up for the whole run, billed for all of it.

Prices come from the dated price file (`llama_prefect/data/prices.json`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.errors import ConfigurationError


class LambdaModel:
    """Lambda: cold starts, warm environments per memory size, per-ms billing.

    Args:
        prices: The price catalog (its ``lambda`` entry).
        cold_start_s: Start-up of a new execution environment.
        keep_warm_s: How long an idle environment stays warm.
    """

    name = "lambda"

    def __init__(self, prices: PriceCatalog, cold_start_s: float, keep_warm_s: float):
        self.price = prices.price("lambda")
        if self.price.usd_per_gb_s is None:
            raise ConfigurationError(
                "the price file's lambda entry has no usd_per_gb_s; add it to bill "
                "Lambda by memory and duration"
            )
        self._gb_s = self.price.usd_per_gb_s
        self.cold_start_s = cold_start_s
        self.keep_warm_s = keep_warm_s
        self._idle: dict[float, deque[float]] = {}
        self.cost_usd = 0.0
        self.cold_starts = 0
        self.invocations = 0

    def startup_hint_s(self, now: float) -> float:
        """The start-up the next invocation is likely to see (for the scheduler)."""
        for idle in self._idle.values():
            self._expire(idle, now)
            if idle:
                return 0.0
        return self.cold_start_s

    def start(self, now: float, memory_mb: float) -> float:
        """Starts an invocation; returns its start-up delay."""
        idle = self._idle.setdefault(memory_mb, deque())
        self._expire(idle, now)
        self.invocations += 1
        if idle:
            idle.pop()
            return 0.0
        self.cold_starts += 1
        return self.cold_start_s

    def end(self, now: float, memory_mb: float, duration_s: float) -> float:
        """Ends an invocation that ran `duration_s` (start-up in); returns its bill."""
        self._idle.setdefault(memory_mb, deque()).append(now)
        usd = (
            self.price.billed_s(duration_s) * memory_mb / 1024.0 * self._gb_s
            + self.price.usd_per_invocation
        )
        self.cost_usd += usd
        return usd

    def _expire(self, idle: deque[float], now: float) -> None:
        while idle and idle[0] < now - self.keep_warm_s:
            idle.popleft()


@dataclass
class _Task:
    up_since: float | None = None
    busy: bool = False
    idle_since: float = 0.0
    token: int = 0


class GpuPoolModel:
    """An ECS GPU pool: tasks start on demand, stop when idle, bill while up.

    Args:
        prices: The price catalog (its ``ecs-gpu`` entry).
        slots: GPU tasks the pool may run at once.
        start_s: Start-up of a task.
        idle_stop_s: An idle task is stopped after this long.
        always_on: Keep every task up for the whole run (no start-up, no stop).
    """

    name = "ecs-gpu"

    def __init__(
        self,
        prices: PriceCatalog,
        slots: int,
        start_s: float,
        idle_stop_s: float,
        *,
        always_on: bool = False,
    ):
        self.price = prices.price("ecs-gpu")
        self.start_s = start_s
        self.idle_stop_s = idle_stop_s
        self.always_on = always_on
        self.tasks = [_Task(up_since=0.0 if always_on else None) for _ in range(slots)]
        self.cost_usd = 0.0
        self.starts = 0

    def startup_hint_s(self, now: float) -> float:
        """0 when an idle task is up, else the start-up of a new one."""
        cold = False
        for t in self.tasks:
            if t.up_since is None:
                cold = True
            elif not t.busy:
                return 0.0  # an idle task is up
        return self.start_s if cold else 0.0

    def start(self, now: float) -> tuple[int, float]:
        """Takes a task for a call; returns its index and the start-up delay."""
        for i, task in enumerate(self.tasks):
            if task.up_since is not None and not task.busy:
                task.busy = True
                return i, 0.0
        for i, task in enumerate(self.tasks):
            if task.up_since is None:
                task.up_since, task.busy = now, True
                self.starts += 1
                return i, self.start_s
        raise AssertionError("the scheduler committed more calls than GPU tasks")

    def end(self, now: float, index: int) -> float | None:
        """Frees a task; returns when to check whether to stop it (None: never)."""
        task = self.tasks[index]
        task.busy, task.idle_since = False, now
        task.token += 1
        return None if self.always_on else now + self.idle_stop_s

    def check_stop(self, now: float, index: int) -> None:
        """Stops a task idle for `idle_stop_s` and bills its time up."""
        task = self.tasks[index]
        if task.busy or task.up_since is None:
            return
        stop_s = task.idle_since + self.idle_stop_s
        if stop_s <= now + 1e-9:
            self.cost_usd += self.price.instance_usd(stop_s - task.up_since)
            task.up_since = None

    def close(self, now: float) -> None:
        """Bills every task still up at the end of the run (idle ones until stopped)."""
        for task in self.tasks:
            if task.up_since is not None:
                idle = not (task.busy or self.always_on)
                end = task.idle_since + self.idle_stop_s if idle else now
                self.cost_usd += self.price.instance_usd(end - task.up_since)
                task.up_since = None


class FixedPoolModel:
    """A pool of vCPUs up from the first arrival to the end of the run.

    Args:
        prices: The price catalog (its ``vm-cpu`` entry).
        slots: vCPUs of the pool.
    """

    name = "vm-cpu"

    def __init__(self, prices: PriceCatalog, slots: int):
        self.price = prices.price("vm-cpu")
        self.slots = slots
        self.cost_usd = 0.0

    def close(self, now: float) -> None:
        """Bills every vCPU for the whole run."""
        self.cost_usd = self.price.instance_usd(now, self.slots)
