"""Simulated backends: their start-up delays, limits and bills.

* `LambdaModel`: concurrency up to the account limit (the scheduler's capacity);
  an invocation that finds no idle warm execution environment of its memory size
  cold-starts; an environment stays warm for a while after its last invocation.
  Billed per millisecond of duration (start-up included) times memory, plus the
  request fee. A running invocation cannot be stopped: a cancelled duplicate runs
  to its end and is billed.
* `GpuPoolModel`: a pool of GPU tasks (one slot each). A call that finds no idle
  running task takes one that is starting, or starts one (start-up delay); the
  scheduler may also ask for tasks ahead of any call (`warm`). A task idle for long
  is stopped. Billed per second while a task is up (starting, busy or idle), with a
  one-minute minimum per start. `always_on` keeps every task up for the whole run
  (a fixed GPU pool).
* `FixedPoolModel`: a pool of vCPUs up for the whole run, billed for all of it.

Prices come from the dated price file (`llama_prefect/data/prices.json`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.errors import ConfigurationError

INF = float("inf")


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
    ready_s: float = 0.0  # when its start-up ends


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
        """The start-up the next call sees: a new task's, unless one is up for it.

        0 when an idle task is up, and also when every task is up and busy: the
        call then waits for one of them to free (the scheduler predicts that wait
        from the calls it holds), and a task that frees needs no start. What is
        left of its start-up when an idle task is still starting.
        """
        cold = False
        starting = INF
        for t in self.tasks:
            if t.up_since is None:
                cold = True
            elif not t.busy:
                if t.ready_s <= now:
                    return 0.0  # an idle task is up
                starting = min(starting, t.ready_s - now)
        if starting < INF:
            return starting
        return self.start_s if cold else 0.0

    def up(self) -> int:
        """Tasks up, starting ones included."""
        return sum(1 for t in self.tasks if t.up_since is not None)

    def ready(self, now: float) -> int:
        """Tasks up and past their start-up."""
        return sum(1 for t in self.tasks if t.up_since is not None and t.ready_s <= now)

    def warm(self, now: float) -> tuple[int, float] | None:
        """Starts a task ahead of any call.

        Returns its index and when to check whether to stop it, or None when
        every task is up.
        """
        for i, task in enumerate(self.tasks):
            if task.up_since is None:
                task.up_since, task.busy = now, False
                task.ready_s = task.idle_since = now + self.start_s
                task.token += 1
                self.starts += 1
                return i, task.ready_s + self.idle_stop_s
        return None

    def start(self, now: float) -> tuple[int, float]:
        """Takes a task for a call; returns its index and the start-up delay.

        An idle task that is up first, then the one starting that is ready
        soonest (what is left of its start-up), then a new one.
        """
        soonest, found = INF, -1
        for i, task in enumerate(self.tasks):
            if task.up_since is not None and not task.busy:
                if task.ready_s <= now:
                    task.busy = True
                    return i, 0.0
                if task.ready_s < soonest:
                    soonest, found = task.ready_s, i
        if found >= 0:
            self.tasks[found].busy = True
            return found, soonest - now
        for i, task in enumerate(self.tasks):
            if task.up_since is None:
                task.up_since, task.busy = now, True
                task.ready_s = now + self.start_s
                self.starts += 1
                return i, self.start_s
        raise AssertionError("the scheduler committed more calls than GPU tasks")

    def end(self, now: float, index: int) -> float | None:
        """Frees a task; returns when to check whether to stop it (None: never)."""
        task = self.tasks[index]
        task.busy, task.idle_since = False, now
        task.token += 1
        return None if self.always_on else now + self.idle_stop_s

    def check_stop(self, now: float, index: int, keep: int = 0) -> float | None:
        """Stops a task idle for `idle_stop_s` and bills its time up.

        While no more than `keep` tasks are up (the scheduler wants them), an idle
        task stays up instead; returns when to check it again (None: no need).
        """
        task = self.tasks[index]
        if task.busy or task.up_since is None:
            return None
        stop_s = task.idle_since + self.idle_stop_s
        if stop_s > now + 1e-9:
            return None
        if self.up() <= keep:
            task.idle_since = now  # kept: it may stop after another idle spell
            return now + self.idle_stop_s
        self.cost_usd += self.price.instance_usd(stop_s - task.up_since)
        task.up_since = None
        return None

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
