"""The scheduler: invocations from creation to commit, and what they teach the profiles.

An invocation is created when its task is submitted. It gets a speculative plan at once
(target and configuration with what is known then) and waits until its inputs are
ready. Ready invocations are committed when their backend has free slots, deepest op
first, then oldest; at commit the target and configuration are computed again with fresh
state (late commit), and the invocation may move to another backend. A finished
invocation releases its slots and corrects the profiles; when a group (one video) ends,
the edge rates of its fan-out and branches are learned.

This first version commits in priority order without batching, quotas or duplication.
The class is pure: no threads, no Prefect. Callers serialize access to it.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

import networkx as nx

from llama_prefect.core.clock import Clock, RealClock
from llama_prefect.core.optimizer import (
    Candidate,
    Objective,
    choose,
    price_candidates,
)
from llama_prefect.core.pipeline import Configuration, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.targets import StageEstimate, Target, invocation_target
from llama_prefect.errors import ConfigurationError

logger = logging.getLogger(__name__)


class State(enum.Enum):
    """Where an invocation is in its life."""

    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class BackendSlots:
    """A backend as the scheduler sees it.

    Attributes:
        name: Backend name.
        capacity: Slots it has (vCPUs, GPUs, concurrent functions).
        startup_s: Delay before an invocation starts running on it, in seconds.
    """

    name: str
    capacity: int
    startup_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """One decision for one invocation.

    Attributes:
        target_s: The invocation's latency target.
        time_left_s: Seconds to the deadline when it was decided.
        path: The path that set the target.
        config: The chosen configuration.
        predicted_s: Its predicted latency.
        cost_usd: Its predicted cost.
        accuracy: Its accuracy against the reference configuration.
        predicted_miss: True when even the chosen one is predicted to miss.
        below_floor: True when no configuration met the accuracy floor.
        considered: Configurations priced.
    """

    target_s: float
    time_left_s: float
    path: tuple[str, ...]
    config: Configuration
    predicted_s: float
    cost_usd: float
    accuracy: float
    predicted_miss: bool
    below_floor: bool
    considered: int


@dataclass
class Invocation:
    """One run of one op on one piece of input."""

    id: str
    op: str
    group: str
    units: float
    created_s: float
    state: State = State.WAITING
    speculative: Plan | None = None
    plan: Plan | None = None
    started_s: float | None = None
    finished_s: float | None = None
    observed_s: float | None = None
    cost_usd: float | None = None
    error: str | None = None


@dataclass
class _Group:
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unfinished: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    done: bool = False


@dataclass(frozen=True)
class Settings:
    """What a run asks of the scheduler.

    Attributes:
        deadline_s: Clock time by which the run should be done.
        objective: ``cost``, ``latency``, ``cheapest`` or a callable.
        accuracy_floor: Configurations less accurate than this are never chosen.
        weight_basis: Which configuration estimates an op's work: ``chosen`` (the
            one last committed for the op; before any, as ``fastest``) or
            ``fastest`` (the one that clears the op's work soonest at its backend's
            parallelism, among those meeting the accuracy floor).
        late_commit: Decide again at commit (True) or keep the speculative plan.
        feedback: Correct profiles with observed latencies.
    """

    deadline_s: float
    objective: Objective = "cost"
    accuracy_floor: float = 0.0
    weight_basis: str = "chosen"
    late_commit: bool = True
    feedback: bool = True


class Scheduler:
    """Plans, commits and learns from the invocations of one pipeline run.

    Args:
        pipeline: The pipeline.
        store: Profiles to plan from; corrected as invocations finish.
        prices: The price catalog.
        backends: The backends that can take work in this run.
        settings: Deadline, objective and switches.
        clock: Source of time (real by default).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        store: ProfileStore,
        prices: PriceCatalog,
        backends: Mapping[str, BackendSlots],
        settings: Settings,
        clock: Clock | None = None,
    ) -> None:
        if settings.weight_basis not in ("chosen", "fastest"):
            raise ConfigurationError(
                "weight_basis must be 'chosen' or 'fastest', but got "
                f"{settings.weight_basis!r}"
            )
        self.pipeline = pipeline
        self.store = store
        self.prices = prices
        self.backends = dict(backends)
        self.settings = settings
        self.clock = clock or RealClock()
        self.invocations: dict[str, Invocation] = {}
        self._groups: dict[str, _Group] = defaultdict(_Group)
        self._used: dict[str, int] = {name: 0 for name in self.backends}
        self._running: dict[str, Invocation] = {}
        self._last_config: dict[str, Configuration] = {}
        self._depth = {op: pipeline.depth(op) for op in pipeline.ops}

    # -- life of an invocation ---------------------------------------------------------

    def add(self, inv_id: str, op: str, units: float, group: str | None) -> Invocation:
        """Creates an invocation and gives it a speculative plan."""
        if op not in self.pipeline.ops:
            raise ConfigurationError(
                f"pipeline {self.pipeline.name!r} has no op {op!r}; known ops are "
                f"{sorted(self.pipeline.ops)}"
            )
        inv = Invocation(inv_id, op, group or "", max(units, 1e-9), self.clock.now())
        self.invocations[inv_id] = inv
        grp = self._groups[inv.group]
        grp.created[op] += 1
        grp.unfinished[op] += 1
        inv.speculative = self.plan(inv)
        return inv

    def mark_ready(self, inv_id: str) -> None:
        """Marks an invocation's inputs as ready, so it may be committed."""
        inv = self.invocations[inv_id]
        if inv.state is State.WAITING:
            inv.state = State.READY

    def commit_ready(self) -> list[Invocation]:
        """Commits ready invocations, deepest op first, while their slots are free.

        An invocation whose chosen configuration needs more slots than are free holds
        its backend: nothing else is committed there this round, so it is not starved
        by smaller ones, and the invocations after it choose among the other
        backends. Its plan counted the wait for those slots.

        Returns:
            The invocations committed now, each with its commit-time plan, in order.
        """
        ready = sorted(
            (i for i in self.invocations.values() if i.state is State.READY),
            key=lambda i: (-self._depth[i.op], i.created_s),
        )
        committed: list[Invocation] = []
        held: set[str] = set()
        for inv in ready:
            open_backends = [
                n
                for n in self._allowed_backends(inv.op)
                if n not in held and self._free(n) > 0
            ]
            if not open_backends:
                continue
            plan = self._commit_plan(inv, held)
            if plan is None:
                continue
            backend = plan.config.backend
            if plan.config.slots > self._free(backend):
                held.add(backend)
                continue
            inv.plan, inv.state, inv.started_s = plan, State.RUNNING, self.clock.now()
            self._used[backend] += plan.config.slots
            self._running[inv.id] = inv
            self._last_config[inv.op] = plan.config
            committed.append(inv)
        return committed

    def _free(self, backend: str) -> int:
        return self.backends[backend].capacity - self._used[backend]

    def finish(self, inv_id: str, *, ok: bool, error: str | None = None) -> Invocation:
        """Records the end of a committed invocation and learns from it."""
        inv = self.invocations[inv_id]
        now = self.clock.now()
        inv.finished_s, inv.error = now, error
        inv.state = State.DONE if ok else State.FAILED
        grp = self._groups[inv.group]
        grp.unfinished[inv.op] -= 1
        self._running.pop(inv.id, None)
        if inv.plan is not None and inv.started_s is not None:
            self._used[inv.plan.config.backend] -= inv.plan.config.slots
            inv.observed_s = now - inv.started_s
            inv.cost_usd = self.prices.cost_usd(
                inv.plan.config.backend, inv.observed_s, inv.plan.config.slots
            )
            if ok and self.settings.feedback:
                # The profile holds run time per unit; the start-up delay is added
                # back at prediction, so it must not be learned as work.
                startup_s = self.backends[inv.plan.config.backend].startup_s
                run_s = max(inv.observed_s - startup_s, 0.0)
                self.store.observe(inv.op, inv.plan.config, inv.units, run_s)
        if self.pipeline.ops[inv.op].gather and ok:
            self._close_group(inv.group)
        return inv

    def cancel(self, inv_id: str, error: str) -> Invocation:
        """Ends an invocation that never ran (its upstream failed)."""
        inv = self.invocations[inv_id]
        if inv.state in (State.WAITING, State.READY):
            inv.state, inv.error = State.FAILED, error
            inv.finished_s = self.clock.now()
            self._groups[inv.group].unfinished[inv.op] -= 1
        return inv

    # -- planning ----------------------------------------------------------------------

    def plan(self, inv: Invocation, exclude: Collection[str] = ()) -> Plan:
        """Target and configuration for `inv` now, on backends not in `exclude`.

        Each candidate's predicted latency includes the wait until its backend has
        the slots it needs free, so holding out for a wider configuration is chosen
        only when it still pays.
        """
        backends = self._allowed_backends(inv.op)
        pool = [
            c
            for c in self.store.configurations(inv.op)
            if c.backend in backends
            and c.backend not in exclude
            and c.slots <= self.backends[c.backend].capacity
        ]
        cands = [
            replace(c, predicted_s=c.predicted_s + self._slot_wait_s(c.config))
            for c in self._price(inv.op, inv.units, pool)
        ]
        target = self._target(inv, cands)
        choice = choose(
            cands,
            target.target_s,
            objective=self.settings.objective,
            accuracy_floor=self.settings.accuracy_floor,
            miss_key=self._stage_finish_key(inv.op),
        )
        c = choice.candidate
        return Plan(
            target_s=target.target_s,
            time_left_s=target.time_left_s,
            path=target.path,
            config=c.config,
            predicted_s=c.predicted_s,
            cost_usd=c.cost_usd,
            accuracy=c.accuracy,
            predicted_miss=choice.predicted_miss,
            below_floor=choice.below_floor,
            considered=choice.considered,
        )

    def _stage_finish_key(self, op: str) -> Callable[[Candidate], float]:
        """Seconds the op's remaining work takes if every invocation used a candidate.

        When no configuration meets an invocation's target, the published method takes
        the fastest invocation. While more invocations of the op wait than its backend
        has slots, that is the wrong one: a configuration holding two slots to run 1.7x
        faster finishes the op's work later and costs more. This key keeps the fastest
        invocation where the op's invocations are fewer than the slots, and prefers the
        fewest slot-seconds where they are more.
        """
        remaining = max(1.0, self.remaining_invocations().get(op, 1.0))

        def key(c: Candidate) -> float:
            width = self.backends[c.config.backend].capacity / c.config.slots
            return remaining * c.predicted_s / max(1.0, min(width, remaining))

        return key

    def _allowed_backends(self, op: str) -> list[str]:
        """Backends of this run that the op declares it may run on."""
        return [n for n in self.pipeline.ops[op].backends if n in self.backends]

    def _commit_plan(self, inv: Invocation, held: Collection[str]) -> Plan | None:
        """The plan to commit `inv` with, or None when only held backends could."""
        if not self.settings.late_commit and inv.speculative is not None:
            spec = inv.speculative
            return None if spec.config.backend in held else spec
        open_backends = set(self._allowed_backends(inv.op)) - set(held)
        if not any(
            c.backend in open_backends for c in self.store.configurations(inv.op)
        ):
            return None
        return self.plan(inv, exclude=held)

    def _slot_wait_s(self, config: Configuration) -> float:
        """Predicted seconds until `config.slots` slots are free on its backend."""
        backend = config.backend
        free = self._free(backend)
        if config.slots <= free:
            return 0.0
        now = self.clock.now()
        ends = sorted(
            (i.started_s or now) + (i.plan.predicted_s if i.plan else 0.0)
            for i in self._running.values()
            if i.plan is not None and i.plan.config.backend == backend
            for _ in range(i.plan.config.slots)
        )
        needed = config.slots - free
        if needed > len(ends):
            return float("inf")
        return max(0.0, ends[needed - 1] - now)

    def _price(
        self, op: str, units: float, pool: list[Configuration]
    ) -> list[Candidate]:
        startup = {n: b.startup_s for n, b in self.backends.items()}
        return price_candidates(
            self.store,
            self.prices,
            op,
            units,
            backends=self.backends,
            startup_s=startup,
            configs=pool,
        )

    def _target(self, inv: Invocation, cands: list[Candidate]) -> Target:
        basis = self._basis(inv.op, cands)
        own_s = basis.predicted_s if basis else 0.0
        time_left_s = self.settings.deadline_s - self.clock.now()
        return invocation_target(
            self.pipeline, inv.op, own_s, time_left_s, self.stage_estimates()
        )

    def _basis(self, op: str, cands: list[Candidate]) -> Candidate | None:
        """The candidate that stands for the op when weighing work."""
        if not cands:
            return None
        weight = self._weight_config(op)
        for c in cands:
            if c.config == weight:
                return c
        eligible = [c for c in cands if c.accuracy >= self.settings.accuracy_floor]
        return min(eligible or cands, key=lambda c: c.predicted_s)

    def stage_estimates(self) -> dict[str, StageEstimate]:
        """Remaining work of every op in the run, at its current configuration."""
        remaining = self.remaining_invocations()
        out = {}
        for op in self.pipeline.ops:
            config = self._weight_config(op)
            if config is None:
                continue
            units = self.store.units_per_invocation(op)
            backend = self.backends[config.backend]
            invocation_s = (
                self.store.predict_s_per_unit(op, config) * units + backend.startup_s
            )
            parallelism = max(1.0, backend.capacity / config.slots)
            out[op] = StageEstimate(invocation_s, remaining.get(op, 0.0), parallelism)
        return out

    def _weight_config(self, op: str) -> Configuration | None:
        last = self._last_config.get(op)
        if self.settings.weight_basis == "chosen" and last is not None:
            return last
        allowed = self._allowed_backends(op)
        configs = [
            c
            for c in self.store.configurations(op)
            if c.backend in allowed
            and self.store.profile(op, c).accuracy >= self.settings.accuracy_floor
        ] or [c for c in self.store.configurations(op) if c.backend in allowed]
        if not configs:
            return None

        # The configuration that clears the op's work soonest at its backend's
        # parallelism, not the fastest single invocation: a configuration holding
        # every slot would make the op's work look parallel-free and its weight jump.
        def clearing_key(c: Configuration) -> tuple[float, float]:
            per_unit = self.store.predict_s_per_unit(op, c)
            capacity = max(1, self.backends[c.backend].capacity)
            return per_unit * c.slots / capacity, per_unit

        return min(configs, key=clearing_key)

    def remaining_invocations(self) -> dict[str, float]:
        """Invocations of each op still expected in the run (see `core.targets`)."""
        counts = self.pipeline.expected_counts(self.store.edge_rates)
        sources = set(self.pipeline.sources())
        total: dict[str, float] = defaultdict(float)
        for grp in self._groups.values():
            if grp.done:
                continue
            if any(grp.unfinished[s] > 0 for s in sources):
                for op, n in counts.items():
                    total[op] += n
                continue
            for op in self.pipeline.ops:
                total[op] += self._expected_in_group(grp, op, counts)
        return dict(total)

    def _expected_in_group(
        self, grp: _Group, op: str, counts: Mapping[str, float]
    ) -> float:
        spec = self.pipeline.ops[op]
        if spec.gather:
            return float(grp.unfinished[op]) if grp.created[op] else 1.0
        expected = float(grp.unfinished[op])
        for upstream in self._ancestors(op):
            if self.pipeline.ops[upstream].gather or counts[upstream] <= 0:
                continue
            expected += grp.unfinished[upstream] * counts[op] / counts[upstream]
        return expected

    def _ancestors(self, op: str) -> set[str]:
        return nx.ancestors(self.pipeline.graph, op)

    def _close_group(self, group: str) -> None:
        grp = self._groups[group]
        grp.done = True
        if not self.settings.feedback:
            return
        for upstream, downstream in self.pipeline.graph.edges:
            if self.pipeline.ops[downstream].gather or not grp.created[upstream]:
                continue
            rate = grp.created[downstream] / grp.created[upstream]
            self.store.observe_edge(upstream, downstream, rate)

    # -- views -------------------------------------------------------------------------

    def used_slots(self) -> dict[str, int]:
        """Slots held now on each backend."""
        return dict(self._used)
