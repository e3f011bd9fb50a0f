"""The scheduler: invocations from creation to their one delivered result.

An invocation is created when its task is submitted. It gets a speculative plan at once
(target and configuration from what is known then) and waits for its inputs. A ready
invocation sits in the queue of the backend its plan chose. When a backend has free
slots, a commit round takes invocations from the queues and plans each again with fresh
state (late commit): it may change configuration or move to another backend, and it is
committed only where its slots are free, so no backend ever holds more than its
concurrency. Each commit starts an *attempt*; the first attempt of an invocation to
succeed delivers its result, and every other attempt of it is cancelled.

Mechanisms, each behind a switch in `Settings` for ablations:

* **Priority commit** (`priority_commit`): deeper ops first, then the op with the
  strongest affinity for the backend (how much more its cheapest configuration costs
  on its next best backend), then the oldest; each op gets a quota per round (its
  share of the backend's free slots) until every op with work had its turn.
* **Safe delayed batching** (`batching`): a configuration with a ``call_batch`` knob
  runs several invocations in one call. When fewer are ready than it takes, it waits
  only if running upstream work is predicted to make enough of them soon and the wait
  plus the call still fits the target; otherwise it runs what is ready, or another
  configuration wins. An invocation waits for a batch at most once.
* **Straggler duplication** (`duplication`): an attempt running past
  ``straggler_factor`` (ours: 2) times its predicted latency, or past the last moment
  at which a fresh attempt could still meet its target (never before
  ``straggler_floor`` times its prediction), gets a duplicate that is planned and
  committed again.
* **Retry through re-planning** (`retries`): a failed attempt with no other attempt
  alive is planned and committed again, unless its failure is deterministic.
* **Injection**: attempts can be marked to fail or to straggle at given rates; the
  caller (runner or simulator) makes them do so.

The published method's weak spots are fixed behind switches (`Settings.published()`
restores the published behaviour): feedback shared across an op's configurations on
a backend plus an occasional re-try of abandoned ones (`shared_feedback`,
`retry_abandoned`); tail quantiles that grow with the width of the fan-out
(`fanout_quantile`), pooled along a path rather than added stage by stage
(`tail_pooling`); and a work weight taken from the configurations a path can
afford, starting from the ones that clear each op's work soonest across backends and
giving up speed where it is dearest while the path still fits
(`weight_basis="priced"`), not from the one last chosen.

The class is pure: no threads, no Prefect, no wall time except its clock. Callers
serialize access to it and tell it when attempts end (`finish`), when an invocation's
inputs are ready (`mark_ready`), and call `poll` at `next_event_s()` for stragglers
and delayed batches.
"""

from __future__ import annotations

import bisect
import collections
import enum
import heapq
import itertools
import logging
import math
import random
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import networkx as nx

from llama_prefect.core.clock import Clock, RealClock
from llama_prefect.core.optimizer import OBJECTIVES, Candidate, Objective, choose
from llama_prefect.core.options import Option, build_options
from llama_prefect.core.pipeline import Configuration, Pipeline
from llama_prefect.core.pools import PoolDemand
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.targets import StageEstimate
from llama_prefect.errors import ConfigurationError

logger = logging.getLogger(__name__)

INF = float("inf")
#: Attempts of one invocation alive at once (the original and one duplicate; ours).
MAX_LIVE_ATTEMPTS = 2
#: An op's menu, weights, affinity and tail margins are read again from its profiles
#: after this many observations of it (ours; predictions themselves are always live).
MENU_REFRESH = 16
#: Other backends' queue heads a free backend examines per round (ours).
STEALS_PER_ROUND = 4
#: Seconds over which an op's rate of invocations becoming ready is counted (ours).
RATE_WINDOW_S = 10.0
#: Commit decisions of an op between two plans made again as if a cold pool were
#: warm; the latest stands for the ones in between (ours: it doubles the pricing).
WARMUP_SAMPLE = 4
#: While those plans keep finding nothing for the pool, the commits between them
#: double up to this many (ours: an op the pool never suits costs little).
WARMUP_SAMPLE_MAX = 64
#: Share of each observation's log error that moves its group's content factor for
#: the op (ours; see `_learn_content`).
CONTENT_WEIGHT = 0.5
#: Least seconds between two checks of a waiting request for mates still to come
#: (ours; see `_check_wait`): short against a wait, long against a commit round.
WAIT_CHECK_S = 1.0
WEIGHT_BASES = ("priced", "robust", "fastest", "chosen")
SCOPES = ("run", "group")


class State(enum.Enum):
    """Where an invocation or an attempt is in its life."""

    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"


@dataclass(frozen=True)
class BackendSlots:
    """A backend as the scheduler sees it.

    Attributes:
        name: Backend name.
        capacity: Slots it has (vCPUs, GPUs, concurrent functions).
        startup_s: Delay before an invocation starts running on it, in seconds.
        per_invocation: True when its concurrency counts invocations whatever their
            threads (Lambda); False when an invocation holds one slot per thread.
    """

    name: str
    capacity: int
    startup_s: float = 0.0
    per_invocation: bool = False


@dataclass(slots=True)
class Plan:
    """One decision for one invocation.

    Attributes:
        target_s: The invocation's latency target.
        time_left_s: Seconds to the deadline when it was decided.
        path: The path that set the target.
        config: The chosen configuration.
        predicted_s: Its predicted latency (start-up, waits and tail margin in).
        cost_usd: Its predicted cost (its share of a batched call).
        accuracy: Its accuracy against the reference configuration.
        predicted_miss: True when even the chosen one is predicted to miss its
            target; under the latency and cheapest objectives, which choose
            without the target, when it is predicted to run past the deadline.
        below_floor: True when no configuration met the accuracy floor.
        considered: Configurations priced.
        run_s: Predicted mean run time of its call.
        fill: Invocations its call was priced for.
        wait_s: Seconds it chose to wait for its batch to fill (0: none).
        fastest_s: Predicted latency of the fastest configuration then.
        probe: True when it re-tries a configuration not chosen for long.
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
    run_s: float = 0.0
    fill: int = 1
    wait_s: float = 0.0
    fastest_s: float = 0.0
    probe: bool = False


@dataclass(eq=False, slots=True)
class Invocation:
    """One run of one op on one piece of input: one task run.

    `plan` is the plan of its latest attempt (the winner's once it is done);
    `cost_usd` adds up every attempt, cancelled and failed ones included.
    """

    id: str
    op: str
    group: str
    units: float
    created_s: float
    seq: int = 0
    state: State = State.WAITING
    speculative: Plan | None = None
    plan: Plan | None = None
    attempts: list[Attempt] = field(default_factory=list)
    pending: str | None = None
    queued_on: str | None = None
    queued_slot_s: float = 0.0
    queued_slots: float = 0.0
    token: int = 0
    round: int = -1
    recheck_s: float = 0.0
    waited: bool = False
    wait_until_s: float = 0.0
    wait_check_s: float = 0.0
    failures: int = 0
    avoid: set[str] = field(default_factory=set)
    fresh: tuple[tuple[object, ...], int] | None = None
    started_s: float | None = None
    finished_s: float | None = None
    observed_s: float | None = None
    cost_usd: float | None = None
    error: str | None = None
    winner: Attempt | None = None


@dataclass(eq=False, slots=True)
class Call:
    """One call on a backend: one invocation's attempt, or a batch of several."""

    backend: str
    slots: int
    option: Option
    end_s: float
    attempts: list[Attempt] = field(default_factory=list)
    open: int = 0
    learned: bool = False


@dataclass(eq=False, slots=True)
class Attempt:
    """One try of one invocation on a backend.

    Attributes:
        id: Its id; the first attempt of an invocation has the invocation's id.
        invocation: The invocation it tries.
        number: 1 for the first attempt, then 2, 3, ...
        kind: ``first``, ``retry`` (after a failure) or ``duplicate`` (straggler).
        plan: The plan it was committed with.
        started_s: Clock time of its commit.
        call: The call it is part of (several attempts share a batched call).
        startup_s: Start-up delay its backend had when it was committed.
        injected: ``failure`` or ``straggler`` when the caller must make it so.
        duplicate_at_s: Clock time from which it counts as a straggler.
        state: RUNNING, then DONE, FAILED or CANCELLED.
        won: True when its result is the invocation's result.
    """

    id: str
    invocation: Invocation
    number: int
    kind: str
    plan: Plan
    started_s: float
    call: Call
    startup_s: float = 0.0
    injected: str | None = None
    duplicate_at_s: float = INF
    state: State = State.RUNNING
    finished_s: float | None = None
    observed_s: float | None = None
    cost_usd: float | None = None
    error: str | None = None
    won: bool = False

    @property
    def op(self) -> str:
        """The op of its invocation."""
        return self.invocation.op

    @property
    def group(self) -> str:
        """The group of its invocation."""
        return self.invocation.group

    @property
    def units(self) -> float:
        """Work units of its invocation."""
        return self.invocation.units

    @property
    def speculative(self) -> Plan | None:
        """The speculative plan of its invocation."""
        return self.invocation.speculative


#: A queue entry: rank (0 for retries, duplicates and held requests), creation
#: order, the token that makes it live, and the invocation.
_Entry = tuple[int, int, int, Invocation]


@dataclass(eq=False, slots=True)
class _Group:
    created: list[int]
    unfinished: list[int]
    done: bool = False
    deadline_s: float | None = None
    slo_s: float | None = None
    opened_s: float = 0.0
    version: int = 0
    members: list[Invocation] = field(default_factory=list)
    #: Per op: the content factor, its log and the observations it was learned from.
    content: dict[str, tuple[float, float, int]] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Context:
    """What the targets of a scope (the run or one group) depend on, at a version."""

    version: tuple[int, int, int]
    remaining: list[float]
    deadline_s: float
    slo_s: float | None
    stages: dict[str, tuple[float, Option | None, float]] = field(default_factory=dict)
    sums: dict[str, list[tuple[float, tuple[str, ...], float]]] = field(
        default_factory=dict
    )
    shares: dict[str, float] = field(default_factory=dict)
    hulls: dict[str, list[_Rung]] = field(default_factory=dict)
    ladders: dict[str, list[_Ladder]] = field(default_factory=dict)


#: One option of a stage's price hull: its stage seconds (mean), the tail excess on
#: top, the cost of the stage's remaining work on it, the option, its margin, and
#: the planned seconds the hull was built on (mean times margin).
_Rung = tuple[float, float, float, Option | None, float, float]
#: A path's ladder (see `Scheduler._ladders`): the path, the seconds it is planned
#: at after each step, their running maximum, and after each step the option
#: standing for the op, its margin and its share of the pooled tail.
_Ladder = tuple[
    tuple[str, ...], list[float], list[float], list[tuple[Option | None, float, float]]
]


#: A priced candidate: predicted latency, cost, option, run time of its call, the
#: invocations its call is priced for, and the wait for them (0: none).
_Row = tuple[float, float, Option, float, int, float]


#: An option as `_rows` prices it: the option, its backend, (backend, slots), its
#: call batch, the invocations its backend runs at once, and whether the option
#: before it has the same backend, slots and width (and so the same wait, start-up
#: and tail margin).
_Facts = tuple[Option, str, tuple[str, int], int, float, bool]


def _by_cost(row: _Row) -> tuple[float, float, Configuration]:
    return row[1], row[0], row[2].config


def _by_latency(row: _Row) -> tuple[float, float, Configuration]:
    return row[0], row[1], row[2].config


def _by_seconds_then_dollars(
    point: tuple[float, float, float, Option, float],
) -> tuple[float, float]:
    return point[0], point[1]


def _fastest_s(rows: list[_Row]) -> float:
    """``min(r[0] for r in rows)``, written out."""
    best = rows[0][0]
    for r in rows:
        if r[0] < best:
            best = r[0]
    return best


def _cheapest_fitting(rows: list[_Row], target_s: float) -> _Row | None:
    """``min(r for r in rows if r[0] <= target_s, key=_by_cost)``, None if none fit.

    The first of equal rows wins, as with `min`; written out, as every decision
    of the cost objective takes this path.
    """
    best: _Row | None = None
    for r in rows:
        if not r[0] <= target_s:
            continue
        if (
            best is None
            or r[1] < best[1]
            or (r[1] == best[1] and _by_cost(r) < _by_cost(best))
        ):
            best = r
    return best


def _undominated(options: list[Option]) -> list[Option]:
    """Options no other option with the same price beats in speed and accuracy.

    A call's run time is a line in its work units: a fixed part plus a part per
    unit. One option beats another only when it is no slower in either part, so
    no slower for any amount of work. A configuration that is slower per unit but
    starts faster (decoding a quarter of the frames of a short clip, say) is the
    faster one for small invocations, and stays on the menu.
    """
    groups: dict[tuple[str, int, int, float, float], list[Option]] = {}
    for o in options:
        key = (o.backend, o.slots, o.call_batch, o.usd_per_s, o.usd_fee)
        groups.setdefault(key, []).append(o)
    kept = []
    for members in groups.values():
        members.sort(key=lambda o: (o.s_per_unit(), -o.accuracy))
        lines = [(o.fixed_s(), o.s_per_unit(), o.accuracy) for o in members]
        for i, o in enumerate(members):
            if not any(
                _beats(lines[j], lines[i], earlier=j < i)
                for j in range(len(members))
                if j != i
            ):
                kept.append(o)
    return kept


def _beats(
    a: tuple[float, float, float], b: tuple[float, float, float], *, earlier: bool
) -> bool:
    """Whether (fixed s, s per unit, accuracy) `a` is no worse than `b` in each,
    and better in one; of two alike, the earlier one wins."""
    no_worse = a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2]
    return no_worse and (earlier or a != b)


@dataclass(frozen=True)
class Settings:
    """What a run asks of the scheduler, and its switches.

    Attributes:
        deadline_s: Clock time by which the run should be done (groups may have
            their own, see `Scheduler.open_group`).
        objective: ``cost``, ``latency``, ``cheapest`` or a callable.
        accuracy_floor: Configurations less accurate than this are never chosen.
        weight_basis: Which configuration estimates an op's work ahead:
            ``priced`` (on each path, the cheapest mix of configurations that still
            fits the time left, reached from the soonest-clearing ones by giving up
            speed where it saves the most per second; see `_ladders`), ``robust``
            (the one that clears its remaining work soonest, across backends),
            ``fastest`` (the one with the best rate at full parallelism) or
            ``chosen`` (the one last committed for the op, as published; before
            any, as ``fastest``).
        late_commit: Decide again at commit (True) or keep the speculative plan.
        feedback: Correct profiles with observed latencies.
        batching: Let configurations with a ``call_batch`` knob batch invocations.
        priority_commit: Depth, affinity and per-op quotas order commits (True),
            or plain creation order (False).
        duplication: Duplicate stragglers.
        retries: Re-plans after failures per invocation (0: none).
        straggler_factor: Running this many times its prediction makes a straggler.
        straggler_floor: Never a straggler before this many times its prediction.
        straggler_min_s: Never a straggler before this many seconds (0: no such
            bound; the runner sets 1 s, as the fixed time of starting a task run
            dominates shorter invocations).
        shared_feedback: Feedback moves the drift shared by an op's configurations
            on a backend (True) or only the configuration that ran (published).
        content_feedback: Feedback also learns each group's (video's) own factor
            per op, and predicts the group's later invocations of the op with it
            (ours): footage that is slow to decode or busy for a detector is so for
            all its segments. The published method has none.
        retry_abandoned: Now and then try a configuration not chosen for long.
        retry_every: Decisions of an op between such re-tries.
        retry_margin: A re-tried configuration costs at most this much more than
            the chosen one, by its (possibly stale) estimate.
        miss_tolerance: When no candidate fits its target, the cheapest of those
            on the soonest one's backend whose miss key is within this share of
            its key is taken (0: the soonest, as published): a finish sooner by
            less than the prediction's own error buys nothing.
        fanout_quantile: Predict a tail quantile that grows with the width of the
            fan-out (True) or the mean (published).
        tail_quantile: Chance that the slowest of an op's parallel invocations
            meets its prediction, per stage.
        tail_pooling: Add up the tail margins of a path's stages as independent
            errors (the root of the sum of their squares) when splitting the time
            left, and give each stage the share of that pooled margin its own
            error brings (ours); off, every stage is planned at its own tail
            quantile, and a path of several is planned far beyond it.
        queue_charge: When nothing fits, charge a candidate on a pool with
            queued requests for the delay its slot-time makes for them (see
            `_miss_key`); the published method takes the fastest.
        pool_warmup: Count the work a cold pool backend would be given were it
            warm, so that the caller can start its tasks (`pool_wanted`); the
            published method only uses what is up.
        wait_slack_share: A request that waits for its batched call to fill keeps
            waiting past the predicted fill for this share of its slack (its
            target less the predicted latency of the full call), ours: the
            upstream calls it waits for end after their mean prediction about
            half the time, and a wait that ended just before its mates came
            leaves the request alone in a call priced whole. 0: the wait ends at
            the predicted fill (published). Mates that come sooner end it at once.
        target_scope: ``run``: the work ahead counts every group's invocations
            (one deadline for an archive); ``group``: only the invocation's group
            (one SLO per video, the paper's model).
        static_shares: When given, an op's target is its fixed share of the group's
            SLO, computed once (a GrandSLAm-like static split), not the slack.
        inject_failure_rate: Share of attempts the caller must make fail.
        inject_straggler_rate: Share of attempts the caller must make straggle.
        inject_straggler_factor: How many times slower an injected straggler runs.
        seed: Seed of the injection and re-try draws.
    """

    deadline_s: float
    objective: Objective = "cost"
    accuracy_floor: float = 0.0
    weight_basis: str = "priced"
    late_commit: bool = True
    feedback: bool = True
    batching: bool = True
    priority_commit: bool = True
    duplication: bool = True
    retries: int = 2
    straggler_factor: float = 2.0
    straggler_floor: float = 1.5
    straggler_min_s: float = 0.0
    shared_feedback: bool = True
    content_feedback: bool = True
    retry_abandoned: bool = True
    retry_every: int = 25
    retry_margin: float = 0.5
    miss_tolerance: float = 0.1
    fanout_quantile: bool = True
    tail_quantile: float = 0.95
    tail_pooling: bool = True
    queue_charge: bool = True
    pool_warmup: bool = True
    wait_slack_share: float = 0.5
    target_scope: str = "run"
    static_shares: Mapping[str, float] | None = None
    inject_failure_rate: float = 0.0
    inject_straggler_rate: float = 0.0
    inject_straggler_factor: float = 5.0
    seed: int = 0

    @classmethod
    def published(cls, deadline_s: float, **overrides: object) -> Settings:
        """Settings with the method as published: none of our fixes."""
        values: dict[str, object] = {
            "shared_feedback": False,
            "content_feedback": False,
            "retry_abandoned": False,
            "fanout_quantile": False,
            "tail_pooling": False,
            "weight_basis": "chosen",
            "miss_tolerance": 0.0,
            "pool_warmup": False,
            "queue_charge": False,
            "wait_slack_share": 0.0,
        }
        values.update(overrides)
        return cls(deadline_s, **values)  # type: ignore[arg-type]

    def check(self) -> None:
        """Raises `ConfigurationError` for a setting outside its range."""
        objective = self.objective
        if not callable(objective) and objective not in OBJECTIVES:
            raise ConfigurationError(
                f"objective must be one of {OBJECTIVES} or a callable, but got "
                f"{objective!r}"
            )
        if self.weight_basis not in WEIGHT_BASES:
            raise ConfigurationError(
                f"weight_basis must be one of {WEIGHT_BASES}, but got "
                f"{self.weight_basis!r}"
            )
        if self.target_scope not in SCOPES:
            raise ConfigurationError(
                f"target_scope must be one of {SCOPES}, but got {self.target_scope!r}"
            )
        # (name, least, most, whether it counts): a number out of range, NaN, a
        # string or a bool is refused here rather than misread at a decision.
        for name, low, high, whole in _RANGES:
            value = getattr(self, name)
            number = isinstance(value, int if whole else (int, float))
            if isinstance(value, bool) or not number or not low <= value <= high:
                kind = "a whole number" if whole else "a number"
                raise ConfigurationError(
                    f"{name} must be {kind} in [{low:g}, {high:g}], but got {value!r}"
                )
        if not self.tail_quantile < 1.0:
            raise ConfigurationError(
                f"tail_quantile must be in [0.5, 1), but got {self.tail_quantile}"
            )
        rates = (self.inject_failure_rate, self.inject_straggler_rate)
        if sum(rates) > 1:
            raise ConfigurationError(
                "injection rates must add up to at most 1, but got failures "
                f"{rates[0]} and stragglers {rates[1]}"
            )


#: The numeric settings' ranges: name, least, most, and whether it is a count.
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("deadline_s", -INF, INF, False),
    ("accuracy_floor", 0.0, 1.0, False),
    ("retries", 0, 1 << 30, True),
    ("straggler_factor", 1.0, INF, False),
    ("straggler_floor", 1.0, INF, False),
    ("straggler_min_s", 0.0, INF, False),
    ("retry_every", 1, 1 << 30, True),
    ("retry_margin", 0.0, INF, False),
    ("miss_tolerance", 0.0, INF, False),
    ("tail_quantile", 0.5, 1.0, False),
    ("wait_slack_share", 0.0, 1.0, False),
    ("inject_failure_rate", 0.0, 1.0, False),
    ("inject_straggler_rate", 0.0, 1.0, False),
    ("inject_straggler_factor", 1.0, INF, False),
)


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
        settings.check()
        self.pipeline = pipeline
        self.store = store
        self.prices = prices
        self.backends = dict(backends)
        self.settings = settings
        self.clock = clock or RealClock()
        self.invocations: dict[str, Invocation] = {}
        self.attempts: dict[str, Attempt] = {}
        self._init_graph()
        self._init_backends()
        self._groups: dict[str, _Group] = {}
        self._pre_source = 0
        self._unfinished = [0] * len(self._ops)
        self._gather_missing = [0] * len(self._ops)
        self._seq = 0
        self._round = 0
        self._watch: list[tuple[float, int, Attempt]] = []
        self._wakeups: list[float] = []
        self._cancelled: list[Attempt] = []
        self._last_config: dict[str, Configuration] = {}
        self._decisions: dict[str, int] = dict.fromkeys(self._ops, 0)
        self._last_used: dict[tuple[str, str], int] = {}  # by configuration key
        self._rng = random.Random(settings.seed)
        self._z_by_width: dict[int, float] = {}
        self._unavailable_until: dict[str, float] = {}
        self._scoped = settings.target_scope == "group"
        # Whether the objective chooses by each invocation's target (see `plan`).
        self._by_target = settings.objective not in ("latency", "cheapest")
        self._injecting = not (
            settings.inject_failure_rate <= 0 and settings.inject_straggler_rate <= 0
        )

    def _init_graph(self) -> None:
        p = self.pipeline
        self._ops = list(nx.topological_sort(p.graph))
        self._index = {op: i for i, op in enumerate(self._ops)}
        self._depth = {op: p.depth(op) for op in self._ops}
        self._gather = [p.ops[op].gather for op in self._ops]
        self._sources = [self._index[s] for s in p.sources()]
        self._paths = {op: [tuple(x) for x in p.paths_from(op)] for op in self._ops}
        # Per op, the ancestors whose unfinished invocations spread work to it.
        self._spread_from = [
            [self._index[u] for u in nx.ancestors(p.graph, op) if not p.ops[u].gather]
            for op in self._ops
        ]
        self._upstream = {op: list(p.graph.predecessors(op)) for op in self._ops}
        self._counts = self._expected_counts()

    def _init_backends(self) -> None:
        names = list(self.backends)
        self._used: dict[str, int] = dict.fromkeys(names, 0)
        self._startup = {n: b.startup_s for n, b in self.backends.items()}
        # The scarcest backend is served first, so that affinity decides who gets
        # it before the wide ones take what they can.
        self._serve_order = sorted(names, key=lambda n: self.backends[n].capacity)
        self._ends: dict[str, list[float]] = {n: [] for n in names}
        self._op_ends: dict[str, list[float]] = {op: [] for op in self._ops}
        self._ready_times: dict[str, collections.deque[float]] = {
            op: collections.deque() for op in self._ops
        }
        self._pools = [n for n, b in self.backends.items() if not b.per_invocation]
        self._demand = PoolDemand()
        self._warm_plans: dict[str, int] = dict.fromkeys(self._ops, 0)
        self._warm_every: dict[str, int] = dict.fromkeys(self._ops, WARMUP_SAMPLE)
        self._warm_guess: dict[str, tuple[str, float]] = {}
        self._queues: dict[str, dict[str, list[_Entry]]] = {
            n: {op: [] for op in self._ops} for n in names
        }
        self._live = {n: dict.fromkeys(self._ops, 0) for n in names}
        self._requests = 0
        self._capacity = {n: b.capacity for n, b in self.backends.items()}
        self._queued_slots = dict.fromkeys(names, 0.0)
        self._queued_slot_s = dict.fromkeys(names, 0.0)
        self._ready = dict.fromkeys(self._ops, 0)
        self._allowed = {
            op: [n for n in self.pipeline.ops[op].backends if n in self.backends]
            for op in self._ops
        }
        self._options: dict[str, list[Option]] = {}
        self._options_stamp: dict[str, tuple[int, int]] = {}
        self._widest_batch: dict[str, int] = dict.fromkeys(self._ops, 1)
        self._weights: dict[str, list[Option]] = {}
        self._menus: dict[str, list[Option]] = {}
        self._rung_options: dict[str, tuple[list[Option], list[Option]]] = {}
        self._hulls: dict[tuple[str, float, int, int], list[_Rung]] = {}
        self._learned: dict[str, int] = {}
        self._facts: dict[tuple[str, bool], tuple[list[Option], list[_Facts]]] = {}
        self._seen: dict[str, int] = {}
        self._margins: dict[tuple[str, str, int], float] = {}
        self._contexts: dict[str, _Context] = {}
        self._last_plan: tuple[tuple[object, ...], int, Plan, bool] | None = None
        self._planned: tuple[Invocation, tuple[object, ...] | None, int] | None = None
        self._waits_seen = True
        self._version = 0
        self._counts_version = 0
        self._weights_version = 0
        self._affinity = {op: self._affinity_of(op) for op in self._ops}
        self._held: set[str] = set()
        self._held_slots: dict[str, float] = {}
        self._held_slot_s: dict[str, float] = {}
        self._skip: set[tuple[str, str]] = set()

    def _build_options(self, op: str) -> list[Option]:
        capacity = {n: self.backends[n].capacity for n in self._allowed[op]}
        per_inv = {n: b.per_invocation for n, b in self.backends.items()}
        options = build_options(self.store, self.prices, op, capacity, per_inv)
        if not self.settings.batching:
            options = [o for o in options if o.call_batch == 1]
        return options

    def _options_of(self, op: str) -> list[Option]:
        """The op's options, rebuilt when the store's configurations of it changed."""
        known = self.store.ops.get(op)
        stamp = (id(known.configs), len(known.configs)) if known else (0, 0)
        if self._options_stamp.get(op) != stamp:
            self._options[op] = self._build_options(op)
            self._options_stamp[op] = stamp
            self._widest_batch[op] = max(
                (o.call_batch for o in self._options[op]), default=1
            )
            self._weights.pop(op, None)
            self._menus.pop(op, None)
            self._weights_version += 1
        return self._options[op]

    # -- groups and the work still expected --------------------------------------------

    def _expected_counts(self) -> list[float]:
        counts = self.pipeline.expected_counts(self.store.edge_rates, order=self._ops)
        return [counts[op] for op in self._ops]

    def _group(self, name: str) -> _Group:
        grp = self._groups.get(name)
        if grp is None:
            n = len(self._ops)
            grp = _Group([0] * n, [0] * n, opened_s=self.clock.now())
            self._groups[name] = grp
            self._account(grp, 1)
        return grp

    def _account(self, grp: _Group, sign: int) -> None:
        """Adds (sign 1) or removes (-1) a group's share of the run-wide counters."""
        if grp.done:
            return
        if self._before_source(grp):
            self._pre_source += sign
            return
        for i, left in enumerate(grp.unfinished):
            self._unfinished[i] += sign * left
            if self._gather[i] and grp.created[i] == 0:
                self._gather_missing[i] += sign

    def _change(
        self, grp: _Group, op_index: int, created: int, unfinished: int
    ) -> None:
        if grp.done or op_index in self._sources or self._before_source(grp):
            self._account(grp, -1)
            grp.created[op_index] += created
            grp.unfinished[op_index] += unfinished
            self._account(grp, 1)
        else:  # the common case, one op's counters of a started group move
            if self._gather[op_index] and created and grp.created[op_index] == 0:
                self._gather_missing[op_index] -= 1
            grp.created[op_index] += created
            grp.unfinished[op_index] += unfinished
            self._unfinished[op_index] += unfinished
        grp.version += 1
        self._version += 1

    def _before_source(self, grp: _Group) -> bool:
        """True while a group's source invocations have not all ended."""
        unfinished = grp.unfinished
        for s in self._sources:  # noqa: SIM110 (a loop: no generator on a hot path)
            if unfinished[s] > 0:
                return True
        return False

    def _remaining(
        self, pre: float, unfinished: list[int], missing: list[int]
    ) -> list[float]:
        counts, gather = self._counts, self._gather
        out = []
        for i, ancestors in enumerate(self._spread_from):
            if gather[i]:
                out.append(pre + unfinished[i] + missing[i])
                continue
            expected = pre * counts[i] + unfinished[i]
            for u in ancestors:  # the ancestors that are no gather op
                if unfinished[u] and counts[u] > 0:
                    expected += unfinished[u] * counts[i] / counts[u]
            out.append(expected)
        return out

    def _remaining_run(self) -> list[float]:
        return self._remaining(self._pre_source, self._unfinished, self._gather_missing)

    def _remaining_group(self, grp: _Group) -> list[float]:
        n = len(self._ops)
        if grp.done:
            return [0.0] * n
        if self._before_source(grp):
            return self._remaining(1, [0] * n, [0] * n)
        created = grp.created
        missing = [
            1 if g and created[i] == 0 else 0 for i, g in enumerate(self._gather)
        ]
        return self._remaining(0, grp.unfinished, missing)

    def remaining_invocations(self, group: str | None = None) -> dict[str, float]:
        """Invocations of each op still expected (see `core.targets`).

        Args:
            group: Count only this group's (default: the whole run's).
        """
        if group is None:
            values = self._remaining_run()
        elif group in self._groups:
            values = self._remaining_group(self._groups[group])
        else:
            values = [0.0] * len(self._ops)
        return dict(zip(self._ops, values, strict=True))

    def _close_group(self, grp: _Group) -> None:
        self._account(grp, -1)
        grp.done = True
        grp.version += 1
        self._version += 1
        if not self.settings.feedback:
            return
        for upstream, downstream in self.pipeline.graph.edges:
            u, v = self._index[upstream], self._index[downstream]
            if self._gather[v] or not grp.created[u]:
                continue
            self.store.observe_edge(
                upstream, downstream, grp.created[v] / grp.created[u]
            )
        self._counts = self._expected_counts()
        self._counts_version += 1

    def open_group(self, group: str, *, slo_s: float) -> None:
        """Gives a group (one video) its own deadline: now plus `slo_s` seconds."""
        grp = self._group(group)
        grp.slo_s = slo_s
        grp.deadline_s = self.clock.now() + slo_s
        grp.version += 1

    def group_invocations(self, group: str) -> list[Invocation]:
        """The invocations of a group, in creation order."""
        grp = self._groups.get(group)
        return list(grp.members) if grp is not None else []

    def forget_group(self, group: str) -> bool:
        """Drops a finished group's invocations and attempts from memory.

        For long runs (an archive of thousands of videos): once a group is done and
        none of its attempts runs any more, nothing about it is needed again. The
        links between its invocations, attempts and calls are cut (their lists of
        attempts emptied, the winner unset), so that reference counting frees them
        at once instead of the cycle collector, which would walk them many times.

        Returns:
            False, and forgets nothing, while the group is not done or one of its
            attempts has not ended.
        """
        grp = self._groups.get(group)
        if grp is None or not grp.done:
            return False
        if any(a.finished_s is None for inv in grp.members for a in inv.attempts):
            return False
        for inv in grp.members:
            self.invocations.pop(inv.id, None)
            for attempt in inv.attempts:
                self.attempts.pop(attempt.id, None)
                attempt.call.attempts.clear()
            inv.attempts.clear()
            inv.winner = None
        del self._groups[group]
        self._contexts.pop(group, None)
        return True

    def drop_group(self, group: str) -> None:
        """Stops counting a group's work ahead (its source failed for good)."""
        grp = self._groups.get(group)
        if grp is not None and not grp.done:
            self._account(grp, -1)
            grp.done = True
            grp.version += 1
            self._version += 1

    # -- life of an invocation ---------------------------------------------------------

    def add(
        self,
        inv_id: str,
        op: str,
        units: float,
        group: str | None,
        *,
        speculate: bool = True,
    ) -> Invocation:
        """Creates an invocation and gives it a speculative plan.

        Args:
            inv_id: Its id (the task run id); its first attempt has the same id.
            op: The op it runs.
            units: Its work units.
            group: The group (video) it belongs to.
            speculate: Plan it now (True), or when it is marked ready (False): a
                caller that creates several invocations at one instant, siblings
                of one fan-out, lets each plan see all of them.
        """
        if op not in self.pipeline.ops:
            raise ConfigurationError(
                f"pipeline {self.pipeline.name!r} has no op {op!r}; known ops are "
                f"{sorted(self.pipeline.ops)}"
            )
        if not 0.0 <= units < INF:  # NaN too
            raise ConfigurationError(
                f"invocation {inv_id} of {op!r} must have a finite number of work "
                f"units >= 0, but got {units!r}"
            )
        self._seq += 1
        now = self.clock.now()
        inv = Invocation(inv_id, op, group or "", max(units, 1e-9), now, seq=self._seq)
        self.invocations[inv_id] = inv
        grp = self._groups.get(inv.group) or self._group(inv.group)
        grp.members.append(inv)
        self._change(grp, self._index[op], 1, 1)
        if speculate:
            inv.speculative = self.plan(inv)
        return inv

    def mark_ready(self, inv_id: str) -> None:
        """Marks an invocation's inputs as ready, so it may be committed."""
        inv = self.invocations[inv_id]
        if inv.state is not State.WAITING:
            return
        inv.state, inv.pending = State.READY, "first"
        if self._widest_batch[inv.op] > 1:
            self._ready_times[inv.op].append(self.clock.now())
        if inv.speculative is None:
            inv.speculative = self.plan(inv)
            if not self._waits_seen:
                key = self._planned_key(inv)
                inv.fresh = None if key is None else (key, self._ready_for(inv))
        self._enqueue(inv, inv.speculative)

    def _planned_key(self, inv: Invocation) -> tuple[object, ...] | None:
        """`_reuse_key` of the plan just made for `inv` (unchanged since then)."""
        planned = self._planned
        # Its context still holds while the options were not rebuilt since.
        if (
            planned is not None
            and planned[0] is inv
            and planned[2] == self._weights_version
        ):
            return planned[1]
        ctx = self._context(inv.group)
        return self._reuse_key(inv, ctx, (), False, False)

    def cancel(self, inv_id: str, error: str) -> Invocation:
        """Ends an invocation that never ran (its upstream failed)."""
        inv = self.invocations[inv_id]
        if inv.state in (State.WAITING, State.READY) and not inv.attempts:
            self._dequeue(inv)
            inv.pending = None
            self._end(inv, State.FAILED, error)
        return inv

    def _end(self, inv: Invocation, state: State, error: str | None) -> None:
        """The invocation's final state: it leaves the work still expected."""
        inv.state, inv.error = state, error
        inv.finished_s = inv.finished_s or self.clock.now()
        grp = self._groups.get(inv.group) or self._group(inv.group)
        index = self._index[inv.op]
        self._change(grp, index, 0, -1)
        if state is State.DONE and self._gather[index]:
            self._close_group(grp)

    # -- queues ------------------------------------------------------------------------

    def _slots_of(self, config: Configuration) -> int:
        return 1 if self.backends[config.backend].per_invocation else config.slots

    def _enqueue(self, inv: Invocation, plan: Plan, *, front: bool = False) -> None:
        config = plan.config
        backend, op = config.backend, inv.op
        if inv.queued_on is not None:
            self._dequeue(inv)
        held = 1 if self.backends[backend].per_invocation else config.slots
        slots = held / (plan.fill if plan.fill > 1 else 1)
        inv.queued_on, inv.queued_slots = backend, slots
        inv.queued_slot_s = plan.run_s * slots
        self._queued_slots[backend] += slots
        self._queued_slot_s[backend] += inv.queued_slot_s
        self._ready[op] += 1
        self._requests += 1
        self._live[backend][op] += 1
        self._seq += 1
        inv.token = self._seq
        entry = (0 if front else 1, inv.seq, inv.token, inv)
        heapq.heappush(self._queues[backend][op], entry)

    def _dequeue(self, inv: Invocation) -> None:
        backend = inv.queued_on
        if backend is None:
            return
        self._queued_slots[backend] -= inv.queued_slots
        self._queued_slot_s[backend] -= inv.queued_slot_s
        self._ready[inv.op] -= 1
        self._requests -= 1
        self._live[backend][inv.op] -= 1
        inv.queued_on, inv.token = None, 0

    def _head(self, backend: str, op: str) -> Invocation | None:
        """The first live request in a queue; stale entries are dropped."""
        queue = self._queues[backend][op]
        while queue:
            _, _, token, inv = queue[0]
            if inv.token == token and inv.queued_on == backend:
                return inv
            heapq.heappop(queue)
        return None

    def _free(self, backend: str) -> int:
        return self._capacity[backend] - self._used[backend]

    def _queued_total(self) -> int:
        return self._requests

    # -- commit ------------------------------------------------------------------------

    def commit_ready(self) -> list[Attempt]:
        """Commits queued invocations where slots are free; returns the new attempts.

        Backends are served in turn, the scarcest first, while any of them commits
        something (a decision may move an invocation to a backend served before).
        An invocation whose chosen configuration needs more slots than its backend
        has free holds that backend: nothing else is committed there this round,
        so it is not starved by smaller ones; its plan counted the wait.
        """
        if not self._queued_total():
            return []
        self._round += 1
        self._held.clear()
        self._held_slots.clear()
        self._held_slot_s.clear()
        self._skip.clear()
        started: list[Attempt] = []
        progress = True
        while progress and self._requests:
            progress = False
            for backend in self._serve_order:
                if not self._requests:
                    break  # nothing is queued: no backend has anything to commit
                if self._free(backend) > 0 and backend not in self._held:
                    progress |= self._serve(backend, started)
        return started

    def _serve(self, backend: str, started: list[Attempt]) -> bool:
        """One backend's share of a commit round; True when it committed work."""
        quota = self._quota(backend)
        taken: dict[str, int] = {}
        tried: set[tuple[str, str]] = set()
        committed = False
        capacity, used, held = self._capacity[backend], self._used, self._held
        while self._requests and used[backend] < capacity and backend not in held:
            inv = self._best_op(backend, taken, quota)
            if inv is None and quota < INF:
                quota = INF  # every op had its quota: the rest goes in order
                continue
            if inv is None:
                inv = self._steal(backend, tried)
                if inv is None:
                    break
            elif inv.round == self._round:
                self._skip.add((backend, inv.op))
                continue
            count = self._decide(inv, started)
            taken[inv.op] = taken.get(inv.op, 0) + count
            committed |= count > 0
        return committed

    def _quota(self, backend: str) -> float:
        if not self.settings.priority_commit:
            return INF
        with_work = 0
        for count in self._live[backend].values():
            if count:
                with_work += 1
        return max(1.0, math.ceil(self._free(backend) / max(1, with_work)))

    def _best_op(
        self, backend: str, taken: Mapping[str, int], quota: float
    ) -> Invocation | None:
        """The head of the queue on `backend` that commits next, if any."""
        best: tuple[float, ...] | None = None
        chosen = None
        live, skip = self._live[backend], self._skip
        priority = self.settings.priority_commit
        for op in self._ops:
            if not live[op] or taken.get(op, 0) >= quota:
                continue
            if (backend, op) in skip:
                continue
            head = self._head(backend, op)
            if head is None:
                continue
            if priority:
                key: tuple[float, ...] = (
                    -self._depth[op],
                    -self._affinity[op].get(backend, 1.0),
                    head.seq,
                )
            else:
                key = (head.seq,)
            if best is None or key < best:
                best, chosen = key, head
        return chosen

    def _steal(self, backend: str, tried: set[tuple[str, str]]) -> Invocation | None:
        """A request queued on another backend that could run here, if any.

        Requests planned already this round (those holding their backend) are
        looked past; at most `STEALS_PER_ROUND` requests are examined per backend.
        """
        if len(tried) >= STEALS_PER_ROUND:
            return None
        best: tuple[float, int] | None = None
        found = None
        for other in self.backends:
            if other == backend:
                continue
            live = self._live[other]
            for op in self._ops:
                if not live[op] or backend not in self._allowed[op]:
                    continue
                head = self._unplanned_head(other, op)
                if head is None:
                    continue
                key = (-self._affinity[op].get(backend, 1.0), head.seq)
                if best is None or key < best:
                    best, found = key, head
        if found is not None:
            tried.add((backend, found.id))
        return found

    def _unplanned_head(self, backend: str, op: str) -> Invocation | None:
        """The first live request of a queue another backend should look at now.

        Requests planned already this round, and those that chose to wait for
        this backend while half their slack has not passed yet, are looked past.
        """
        queue = self._queues[backend][op]
        planned: list[_Entry] = []
        found = None
        now = self.clock.now()
        while queue:
            entry = queue[0]
            inv = entry[3]
            if inv.token != entry[2] or inv.queued_on != backend:
                heapq.heappop(queue)
                continue
            if inv.round != self._round and inv.recheck_s <= now:
                found = inv
                break
            planned.append(heapq.heappop(queue))
        for entry in planned:
            heapq.heappush(queue, entry)
        return found

    def _decide(self, inv: Invocation, started: list[Attempt]) -> int:
        """Plans a queued request again and commits it if it can; returns the count."""
        inv.round = self._round
        plan = self._commit_plan(inv)
        backend = plan.config.backend
        if plan.wait_s > 0 and not self._may_wait(inv):
            plan = replace(plan, wait_s=0.0)  # a kept plan never waits twice
        if plan.wait_s > 0:
            if not inv.waited:  # its one wait: later rounds keep to its end
                inv.waited = True  # past the predicted fill by a share of its slack
                slack_s = plan.target_s - plan.predicted_s
                share = self.settings.wait_slack_share
                extra_s = share * slack_s if share > 0.0 and slack_s > 0.0 else 0.0
                inv.wait_until_s = self.clock.now() + plan.wait_s + extra_s
                if inv.wait_until_s < INF:  # no deadline: it waits while mates come
                    heapq.heappush(self._wakeups, inv.wait_until_s)
            self._check_wait(inv, plan.wait_s)
            self._skip.add((str(inv.queued_on), inv.op))
            self._enqueue(inv, plan, front=True)
            return 0
        slots = self._slots_of(plan.config)
        if slots > self._free(backend):
            # Waiting for this backend fits its target for now: other backends
            # look at it again once half of its slack has passed.
            slack_s = max(0.0, plan.target_s - plan.predicted_s)
            inv.recheck_s = self.clock.now() + 0.5 * slack_s
            self._held.add(backend)
            share = slots / max(1, plan.fill)
            self._held_slots[backend] = self._held_slots.get(backend, 0.0) + share
            self._held_slot_s[backend] = (
                self._held_slot_s.get(backend, 0.0) + plan.run_s * share
            )
            self._enqueue(inv, plan, front=True)
            return 0
        attempts = self._commit_call(inv, plan)
        started.extend(attempts)
        return len(attempts)

    def _commit_plan(self, inv: Invocation) -> Plan:
        spec = inv.speculative
        if spec is None or inv.pending != "first":
            return self.plan(inv, at_commit=True)
        if not self.settings.late_commit or self._still_fresh(inv, spec):
            return spec
        return self.plan(inv, at_commit=True)

    def _still_fresh(self, inv: Invocation, spec: Plan) -> bool:
        """True when planning `inv` again now could only give its speculative plan.

        It was made at this very instant, nothing it depends on changed since (the
        work ahead, the profiles, the invocations ready to share a call), no
        candidate waited for slots then and its own backend needs no wait now. Waits
        only grow in between (siblings take slots), so every other candidate can
        only have got worse.
        """
        fresh = inv.fresh
        if fresh is None or self._probe_due(inv.op):
            return False
        key, ready = fresh
        ctx = self._context(inv.group)
        if key != self._reuse_key(inv, ctx, (), False, False):
            return False
        widest = self._widest_batch[inv.op]
        if min(widest, ready) != min(widest, self._ready_for(inv)):
            return False
        slots = self._slots_of(spec.config)
        return self._slot_wait_s(spec.config.backend, slots, inv, True) == 0

    def _option_for(self, op: str, config: Configuration) -> Option:
        options = self._options_of(op)
        for option in options:  # a plan holds its option's own configuration
            if option.config is config:
                return option
        for option in options:
            if option.config == config:
                return option
        raise ConfigurationError(
            f"op {op!r} has no profiled configuration {config.key!r} on the backends "
            f"of this run ({sorted(self.backends)})"
        )

    def _commit_call(self, inv: Invocation, plan: Plan) -> list[Attempt]:
        """Starts one call: the invocation, and its batch mates when it batches."""
        option = self._option_for(inv.op, plan.config)
        members = [inv]
        if option.call_batch > 1:
            members += self._batch_mates(inv, option)
        units = inv.units if len(members) == 1 else sum(m.units for m in members)
        run_s = option.run_s(units * max(1.0, option.call_batch / len(members)))
        now, backend = self.clock.now(), option.backend
        startup_s = self._startup[backend]
        call = Call(backend, option.slots, option, now + startup_s + run_s)
        if self.warms_pools:
            if backend in self._pools:
                self._demand.add(backend, now, run_s * option.slots)
            self._note_cold_pool(inv, plan)
        call.open = len(members)
        self._used[backend] += option.slots
        for _ in range(option.slots):
            bisect.insort(self._ends[backend], call.end_s)
        bisect.insort(self._op_ends[inv.op], call.end_s)
        if len(members) != plan.fill or option.call_batch > 1:
            plan = replace(
                plan,
                fill=len(members),
                run_s=run_s,
                cost_usd=option.usd(run_s) / len(members),
            )
        return [self._start_attempt(m, plan, call) for m in members]

    def _batch_mates(self, inv: Invocation, option: Option) -> list[Invocation]:
        """Up to ``call_batch - 1`` other queued requests of the same op."""
        want = option.call_batch - 1
        mates: list[Invocation] = []
        order = [option.backend] + [b for b in self.backends if b != option.backend]
        for backend in order:
            queue = self._queues[backend][inv.op]
            live = [
                e for e in queue if e[3].token == e[2] and e[3].queued_on == backend
            ]
            for _, _, _, other in heapq.nsmallest(want + 1, live):
                if len(mates) >= want:
                    return mates
                if other is not inv:
                    mates.append(other)
        return mates

    def _start_attempt(self, inv: Invocation, plan: Plan, call: Call) -> Attempt:
        self._dequeue(inv)
        kind, inv.pending = inv.pending or "first", None
        number = len(inv.attempts) + 1
        now = self.clock.now()
        attempt = Attempt(  # in field order: id, invocation, number, kind, plan, ...
            inv.id if number == 1 else f"{inv.id}~{number}",
            inv,
            number,
            kind,
            plan,
            now,
            call,
            self._startup[call.backend],
            self._draw_injection() if self._injecting else None,
        )
        if inv.state is State.READY:
            inv.state = State.RUNNING
        inv.plan = plan
        if inv.started_s is None:
            inv.started_s = now
        call.attempts.append(attempt)
        inv.attempts.append(attempt)
        self.attempts[attempt.id] = attempt
        self._watch_attempt(attempt)
        self._note_use(inv.op, plan.config)
        return attempt

    def _note_use(self, op: str, config: Configuration) -> None:
        self._last_config[op] = config
        self._decisions[op] += 1
        self._last_used[(op, config.key)] = self._decisions[op]

    def _draw_injection(self) -> str | None:
        fail, slow = (
            self.settings.inject_failure_rate,
            self.settings.inject_straggler_rate,
        )
        if fail <= 0 and slow <= 0:
            return None
        draw = self._rng.random()
        if draw < fail:
            return "failure"
        return "straggler" if draw < fail + slow else None

    def _watch_attempt(self, attempt: Attempt) -> None:
        """Schedules the moment from which the attempt counts as a straggler.

        Ours: ``straggler_factor`` (2) times its predicted latency, but no later than
        the last moment at which a fresh attempt on the fastest configuration could
        still meet its target, and never before ``straggler_floor`` (1.5) times, nor
        before ``straggler_min_s`` seconds.
        """
        if not self.settings.duplication:
            return
        plan, s = attempt.plan, self.settings
        predicted_s = plan.predicted_s
        predicted_s = 1e-6 if predicted_s < 1e-6 else predicted_s  # max(p, 1e-6)
        lost_s = plan.target_s - plan.fastest_s
        floor_s = s.straggler_floor * predicted_s
        floor_s = lost_s if lost_s > floor_s else floor_s
        after_s = s.straggler_factor * predicted_s
        after_s = floor_s if floor_s < after_s else after_s
        after_s = s.straggler_min_s if s.straggler_min_s > after_s else after_s
        attempt.duplicate_at_s = attempt.started_s + after_s
        self._seq += 1
        heapq.heappush(self._watch, (attempt.duplicate_at_s, self._seq, attempt))

    # -- the end of attempts -----------------------------------------------------------

    def finish(
        self,
        attempt_id: str,
        *,
        ok: bool,
        error: str | None = None,
        retriable: bool = True,
        hold: bool = False,
    ) -> Attempt:
        """Records the end of an attempt, learns from it and delivers or re-plans.

        Args:
            attempt_id: The attempt (the first one has the invocation's id).
            ok: True when it succeeded. The first successful attempt of an
                invocation wins (``attempt.won``); its other running attempts are
                cancelled (see `take_cancelled`).
            error: What went wrong, when it failed.
            retriable: False for a deterministic failure (a corrupt input): the
                invocation fails at once, without a retry.
            hold: On a failure with no other attempt alive, hold the invocation
                (state HELD) instead of retrying it or failing it: the caller decides
                with `resume` or `give_up` (the runner lets the task's own retries
                decide).

        Returns:
            The attempt. An attempt that was cancelled, or had ended already, only
            gives back its slots and delivers nothing.
        """
        attempt = self.attempts[attempt_id]
        if attempt.finished_s is not None:
            return attempt
        now = self.clock.now()
        attempt.finished_s = now
        attempt.observed_s = now - attempt.started_s
        call = attempt.call
        attempt.cost_usd = call.option.usd(attempt.observed_s) / len(call.attempts)
        inv = attempt.invocation
        inv.cost_usd = (inv.cost_usd or 0.0) + attempt.cost_usd
        self._release(attempt)
        if attempt.state is State.CANCELLED:
            return attempt
        if ok:
            self._win(attempt)
        else:
            self._fail(attempt, error, retriable, hold)
        return attempt

    def _release(self, attempt: Attempt) -> None:
        call = attempt.call
        call.open -= 1
        if call.open > 0:
            return
        self._used[call.backend] -= call.slots
        ends = self._ends[call.backend]
        for _ in range(call.slots):
            del ends[bisect.bisect_left(ends, call.end_s)]
        op_ends = self._op_ends[attempt.invocation.op]
        del op_ends[bisect.bisect_left(op_ends, call.end_s)]

    def _win(self, attempt: Attempt) -> None:
        inv = attempt.invocation
        attempt.state, attempt.won = State.DONE, True
        inv.winner, inv.plan = attempt, attempt.plan
        inv.started_s, inv.observed_s = attempt.started_s, attempt.observed_s
        inv.finished_s = attempt.finished_s
        self._cancel_others(inv, attempt)
        self._learn(attempt)
        self._end(inv, State.DONE, None)

    def _cancel_others(self, inv: Invocation, keep: Attempt | None) -> None:
        for other in inv.attempts:
            if other is not keep and other.state is State.RUNNING:
                other.state = State.CANCELLED
                self._cancelled.append(other)
        if inv.pending is not None:
            self._dequeue(inv)
            inv.pending = None

    def _fail(
        self, attempt: Attempt, error: str | None, retriable: bool, hold: bool
    ) -> None:
        inv = attempt.invocation
        attempt.state, attempt.error = State.FAILED, error
        inv.failures += 1
        if not retriable:
            self._cancel_others(inv, None)
            if hold:
                inv.state, inv.error = State.HELD, error
            else:
                self._end(inv, State.FAILED, error)
            return
        if any(a.state is State.RUNNING for a in inv.attempts):
            return  # another attempt may still deliver
        if inv.pending is not None:
            return  # a duplicate is already queued: it is the retry
        if hold:
            inv.state, inv.error = State.HELD, error
            return
        if inv.failures <= self.settings.retries:
            inv.state, inv.pending = State.READY, "retry"
            self._enqueue(inv, self.plan(inv), front=True)
            return
        self._end(inv, State.FAILED, error)

    def _learn(self, attempt: Attempt) -> None:
        call = attempt.call
        if not self.settings.feedback or call.learned or attempt.observed_s is None:
            return
        call.learned = True
        # The profile holds run time per unit; the start-up delay is added back at
        # prediction, so it must not be learned as work. A batch of fewer
        # invocations than its call takes runs as long as a full one.
        run_s = max(attempt.observed_s - attempt.startup_s, 0.0)
        mates = call.attempts
        units = (
            mates[0].invocation.units
            if len(mates) == 1
            else sum(a.invocation.units for a in mates)
        )
        units *= max(1.0, call.option.call_batch / len(mates))
        op = attempt.invocation.op
        group = attempt.invocation.group
        one_group = all(a.invocation.group == group for a in mates)
        content = self._call_content(op, mates)
        alone = attempt.plan.probe and self.settings.shared_feedback
        step = self.store.observe(
            op,
            call.option.config,
            units,
            run_s,
            shared=self.settings.shared_feedback,
            invocation_units=attempt.units,
            alone=alone,
            content=content,
        )
        self._learned[op] = self._learned.get(op, 0) + 1
        if self.settings.content_feedback and one_group and not alone:
            self._learn_content(op, group, step)
        seen = self._seen.get(op, 0) + 1
        self._seen[op] = seen
        if seen % MENU_REFRESH == 0:
            self._refresh(op)

    def content_factor(self, op: str, group: str) -> float:
        """What `group`'s invocations of `op` take over what the profiles predict.

        Learned from the group's finished invocations of the op (see
        `_learn_content`); 1 before any, and always 1 without `content_feedback`.
        """
        grp = self._groups.get(group)
        known = grp.content.get(op) if grp is not None else None
        return 1.0 if known is None else known[0]

    def _call_content(self, op: str, mates: list[Attempt]) -> float:
        """The content factor a call was predicted with: its members' geometric mean."""
        if len(mates) == 1:
            return self.content_factor(op, mates[0].invocation.group)
        logs = [math.log(self.content_factor(op, a.invocation.group)) for a in mates]
        return math.exp(sum(logs) / len(logs))

    def _learn_content(self, op: str, group: str, step: float) -> None:
        """Moves a group's content factor for `op` by one observation's log error.

        A video's segments are alike (the same camera, codec and scene), so after
        one or two of them the rest are predicted far closer than the profile
        alone can. The factor's log moves by `CONTENT_WEIGHT` of each error, and
        the shared drift by its own share of the same error: what every video
        shows reaches every video's predictions, what only this one shows stays
        mostly with it.

        The share is fixed, not a mean over the group's observations that weighs
        each new one less. A video's segments run side by side and end fastest
        first, so a mean set by the first ones came out low, the later ones
        pushed the drift up, and the split between the two ran off as the drift
        and residual did when they were plain averages (in the simulated measured
        workload, motion's drift reached 2.8 against 1.5 without content factors,
        every video's factor near 0.6). With fixed shares each video's errors
        split between the two in the same proportion whatever their order.
        """
        grp = self._groups.get(group)
        if grp is None:  # forgotten meanwhile
            return
        _, log, n = grp.content.get(op, (1.0, 0.0, 0))
        log += CONTENT_WEIGHT * step
        grp.content[op] = (math.exp(log), log, n + 1)

    def resume(self, inv_id: str) -> bool:
        """Plans a held invocation again (its caller retries it); True if it was."""
        inv = self.invocations[inv_id]
        if inv.state is not State.HELD:
            return False
        inv.state, inv.pending = State.READY, "retry"
        self._enqueue(inv, self.plan(inv), front=True)
        return True

    def give_up(self, inv_id: str, error: str) -> Invocation:
        """Ends an invocation as failed, whatever it was doing (its caller gave up).

        Running attempts are cancelled (see `take_cancelled`), queued requests drop.
        """
        inv = self.invocations[inv_id]
        if inv.state in (State.DONE, State.FAILED):
            return inv
        self._cancel_others(inv, None)
        self._end(inv, State.FAILED, error)
        return inv

    def settle(self, inv_id: str) -> Invocation:
        """Ends an invocation as done without an attempt's result.

        For a task run its engine completed without calling the body (a cached
        result): nothing is learned; running attempts are cancelled.
        """
        inv = self.invocations[inv_id]
        if inv.state in (State.DONE, State.FAILED):
            return inv
        self._cancel_others(inv, None)
        inv.finished_s = self.clock.now()
        self._end(inv, State.DONE, None)
        return inv

    def withdraw(self, attempt_id: str) -> Attempt:
        """Ends an attempt that never started (its task run ended first).

        Its slots are given back at once; it costs nothing and teaches nothing.
        """
        attempt = self.attempts[attempt_id]
        if attempt.finished_s is not None:
            return attempt
        attempt.finished_s = self.clock.now()
        attempt.observed_s, attempt.cost_usd = 0.0, 0.0
        if attempt.state is State.RUNNING:
            attempt.state = State.CANCELLED
        self._release(attempt)
        return attempt

    def take_cancelled(self) -> list[Attempt]:
        """Attempts cancelled since the last call; the caller stops them.

        A cancelled attempt keeps its slots until the caller reports its end with
        `finish` (its result, if any, is dropped), so a backend never runs more
        than its concurrency even when a cancelled attempt cannot be stopped at
        once.
        """
        out, self._cancelled = self._cancelled, []
        return out

    # -- stragglers and wake-ups -------------------------------------------------------

    def poll(self) -> int:
        """Queues a duplicate for every attempt that became a straggler by now.

        Returns:
            How many duplicates were queued; `commit_ready` commits them.
        """
        now = self.clock.now()
        made = 0
        while self._watch and self._watch[0][0] <= now:
            attempt = heapq.heappop(self._watch)[2]
            inv = attempt.invocation
            if attempt.state is not State.RUNNING or inv.pending is not None:
                continue
            if inv.state is not State.RUNNING:
                continue
            live = sum(1 for a in inv.attempts if a.state is State.RUNNING)
            if live >= MAX_LIVE_ATTEMPTS:
                continue
            inv.pending = "duplicate"
            self._enqueue(inv, self.plan(inv), front=True)
            made += 1
        while self._wakeups and self._wakeups[0] <= now:
            heapq.heappop(self._wakeups)
        return made

    def next_event_s(self) -> float:
        """Clock time of the next straggler check or batch wake-up (inf: none)."""
        watch, running = self._watch, State.RUNNING
        while watch and watch[0][2].state is not running:
            heapq.heappop(watch)
        first = watch[0][0] if watch else INF
        wake = self._wakeups[0] if self._wakeups else INF
        return wake if wake < first else first  # min(first, wake)

    def set_up_slots(self, backend: str, slots: int) -> None:
        """Sets how many of a pool's slots are up now; commits never exceed them.

        For a pool its caller scales by `pool_wanted`: calls take the tasks that
        are up, and none starts a task of its own. At most the backend's capacity.
        """
        slots = max(0, min(slots, self.backends[backend].capacity))
        if self._capacity[backend] != slots:
            self._capacity[backend] = slots
            self._weights_version += 1

    def set_startup(self, backend: str, startup_s: float) -> None:
        """Sets the start-up delay the next invocation on `backend` will see."""
        if self._startup.get(backend) != startup_s:
            self._startup[backend] = startup_s
            self._weights_version += 1

    def release(
        self, attempt_id: str, *, error: str, avoid: Collection[str] = ()
    ) -> Invocation:
        """Hands a running attempt back: its backend refused or could not finish it.

        Nothing of the op ran to completion (throttling, no capacity, a time limit it
        would pass), so this is not a failure of the invocation: the attempt gives
        back its slots and ends as failed, and the invocation is queued to be
        planned again at once, never on the backends in `avoid`.

        Returns:
            The invocation; its next attempt comes from `commit_ready`.
        """
        attempt = self.attempts[attempt_id]
        inv = attempt.invocation
        inv.avoid.update(avoid)
        if attempt.finished_s is not None or attempt.state is not State.RUNNING:
            return inv
        attempt.finished_s = self.clock.now()
        attempt.observed_s = attempt.finished_s - attempt.started_s
        attempt.state, attempt.error, attempt.cost_usd = State.FAILED, error, 0.0
        self._release(attempt)
        alive = any(a.state is State.RUNNING for a in inv.attempts)
        if not alive and inv.pending is None and inv.state is State.RUNNING:
            inv.state, inv.pending = State.READY, "replan"
            self._enqueue(inv, self.plan(inv), front=True)
        return inv

    def mark_unavailable(self, backend: str, until_s: float) -> None:
        """Plans nothing on `backend` until clock time `until_s` (a cool-down)."""
        self._unavailable_until[backend] = max(
            until_s, self._unavailable_until.get(backend, until_s)
        )

    def available_backends(self) -> list[str]:
        """Backends of this run that are not cooling down now."""
        now = self.clock.now()
        until = self._unavailable_until
        return [n for n in self.backends if until.get(n, now) <= now]

    # -- planning -----------------------------------------------------------------

    def plan(
        self, inv: Invocation, exclude: Collection[str] = (), *, at_commit: bool = False
    ) -> Plan:
        """Target and configuration for `inv` now, on backends not in `exclude`.

        Each candidate's predicted latency includes its backend's start-up delay,
        the wait for its slots (behind the requests queued there, or at commit
        behind those holding the backend) and, with `fanout_quantile`, the margin
        of a tail quantile on both its run and that wait (the calls it waits for
        are predicted as its own is: a mean-based wait on a busy pool is short of
        the truth as often as a mean-based run is). A batched configuration is
        priced at the share of the invocations ready to join its call, and also at
        a full call after the predicted wait for it to fill (safe delayed
        batching): from upstream work running now, or from the rate at which
        invocations of the op became ready lately.
        """
        ctx = self._context(inv.group)
        probing = at_commit and self._probe_due(inv.op)
        reuse_key = self._reuse_key(inv, ctx, exclude, at_commit, probing)
        self._planned = (inv, reuse_key, self._weights_version)
        reused = self._reusable(inv, reuse_key, at_commit)
        if reused is not None:
            return reused
        target_s, time_left_s, path = self._target_of(inv, ctx)
        self._waits_seen = bool(exclude)
        rows = self._rows(inv, ctx, exclude, at_commit, full=probing)
        if not rows:
            choose([], 0.0)  # raises the profile error that says how to fix it
        pick, below_floor = self._pick(inv, rows, target_s, ctx)
        probe = False
        if probing and pick[0] <= target_s:
            found = self._probe(inv.op, rows, pick, target_s)
            if found is not None:
                pick, probe = found, True
        predicted_s, cost_usd, option, run_s, fill, wait_s = pick
        # The latency and cheapest objectives choose without the target, which
        # spends the time left as the cost objective would: a fastest choice
        # predicted past a target that left no slack is no miss of theirs. For
        # them an invocation is a predicted miss when it runs past the deadline.
        limit_s = target_s if self._by_target else time_left_s
        plan = Plan(  # in field order (positional is the faster call)
            target_s,
            time_left_s,
            path,
            option.config,
            predicted_s,
            cost_usd,
            option.accuracy,
            predicted_s > limit_s,
            below_floor,
            len(rows),
            run_s,
            fill,
            wait_s,
            _fastest_s(rows),
            probe,
        )
        if reuse_key is not None:
            clean = not self._waits_seen
            self._last_plan = (reuse_key, self._ready_for(inv), plan, clean)
        return plan

    def _ready_for(self, inv: Invocation) -> int:
        return self._ready[inv.op] + (0 if inv.queued_on else 1)

    def _reuse_key(
        self,
        inv: Invocation,
        ctx: _Context,
        exclude: Collection[str],
        at_commit: bool,
        probing: bool,
    ) -> tuple[object, ...] | None:
        """What a plan depends on besides the backends' slots and queues."""
        if probing or exclude or inv.avoid or self._unavailable_until:
            return None
        now = self.clock.now()
        content = self.content_factor(inv.op, inv.group)
        return (
            inv.op,
            inv.group,
            ctx.version,
            inv.units,
            now,
            at_commit,
            inv.waited,
            content,
        )

    def _reusable(
        self, inv: Invocation, key: tuple[object, ...] | None, at_commit: bool
    ) -> Plan | None:
        """The plan just made for a sibling, when it is the one `inv` would get.

        Siblings of one fan-out planned at one instant get the same plan unless the
        backends changed in between. Only waits grow between them (each sibling
        queued or committed takes a slot), which can only make other candidates
        worse; so the sibling's plan still stands while its own backend needs no
        wait, and, for an op with batched configurations, while the invocations
        ready to share a call fill it as far as then.
        """
        last = self._last_plan
        if key is None or last is None or last[0] != key:
            return None
        plan = last[2]
        self._waits_seen = not last[3]
        widest = self._widest_batch[inv.op]
        if min(widest, last[1]) != min(widest, self._ready_for(inv)):
            return None
        slots = self._slots_of(plan.config)
        if self._slot_wait_s(plan.config.backend, slots, inv, at_commit) > 0:
            return None
        return plan

    def _rows(
        self,
        inv: Invocation,
        ctx: _Context,
        exclude: Collection[str],
        at_commit: bool,
        *,
        full: bool = False,
        free: str | None = None,
    ) -> list[_Row]:
        """Every candidate of `inv`, priced (see `_Row`).

        Candidates on backend `free` are priced as if it were warm with a slot free
        (no start-up, no wait): what `inv` would take were a cold pool up.
        """
        op, units = inv.op, inv.units
        width_of = ctx.remaining[self._index[op]]
        ready = self._ready[op] + (0 if inv.queued_on else 1)
        closed = self._closed_backends(inv, exclude)
        waits: dict[tuple[str, int], float] = {}
        may_wait = self._may_wait(inv)
        out: list[_Row] = []
        startup, margins = self._startup, self._margins
        fanout = self.settings.fanout_quantile
        share = ctx.shares.get(op, 1.0)
        content = self.content_factor(op, inv.group)
        skip, wait_s, start_s, margin, drift = False, 0.0, 0.0, 1.0, 1.0
        for o, backend, key, batch, parallel, same in self._priced(op, full):
            if same:  # what the option before it found holds for it too
                if skip:
                    continue
            else:
                skip = backend in closed
                if skip:
                    continue
                wait_s = 0.0 if backend == free else waits.get(key, -1.0)
                if wait_s < 0.0:  # not looked up yet (waits are never negative)
                    wait_s = self._slot_wait_s(backend, key[1], inv, at_commit)
                    waits[key] = wait_s
                    self._waits_seen |= wait_s > 0
                skip = wait_s == INF
                if skip:
                    continue
                if fanout:  # `_margin`, its cache read here
                    width = int(parallel if parallel < width_of else width_of)
                    found = margins.get((op, backend, width if width > 1 else 1))
                    margin = self._margin(op, o, width_of) if found is None else found
                    margin = 1.0 + (margin - 1.0) * share
                start_s = 0.0 if backend == free else startup[backend]
                drift = o.drift.get(backend, 1.0) * content
            prof = o.profile  # `Option.run_s`, inline
            seed_s = prof.seed_fixed_s + prof.seed_s_per_unit * (units * batch)
            run_s = seed_s * drift * prof.residual
            base_s = start_s + run_s * margin
            if o.granularity_s > 0.0:  # `Option.usd`, inline
                usd = -(-run_s // o.granularity_s) * o.granularity_s
                usd = usd * o.usd_per_s + o.usd_fee
            else:
                usd = run_s * o.usd_per_s + o.usd_fee
            fill = batch if batch <= ready else ready
            slot_s = wait_s * margin  # the calls it waits for err as its own does
            out.append((base_s + slot_s, usd / fill, o, run_s, fill, 0.0))
            if batch > fill and may_wait:
                fill_s = self._fill_wait_s(op, batch - fill)
                if inv.waited and fill_s > inv.wait_until_s - self.clock.now():
                    fill_s = INF  # past the end of its one wait
                if fill_s < INF:
                    late_s = base_s + (slot_s if slot_s > fill_s else fill_s)
                    out.append((late_s, usd / batch, o, run_s, batch, fill_s))
        return out

    def _priced(self, op: str, full: bool) -> list[_Facts]:
        """The op's menu (or every option, when `full`) with what pricing reads.

        Built again whenever the menu or the options are (see `_menu`).
        """
        options = self._options_of(op) if full else self._menu(op)
        cached = self._facts.get((op, full))
        if cached is not None and cached[0] is options:
            return cached[1]
        facts: list[_Facts] = []
        for o in options:
            parallel = self.backends[o.backend].capacity / o.slots * o.call_batch
            key = (o.backend, o.slots)
            same = bool(facts) and facts[-1][2] == key and facts[-1][4] == parallel
            facts.append((o, o.backend, key, o.call_batch, parallel, same))
        self._facts[(op, full)] = (options, facts)
        return facts

    def _pick(
        self, inv: Invocation, rows: list[_Row], target_s: float, ctx: _Context
    ) -> tuple[_Row, bool]:
        """The row the objective chooses, and whether none met the accuracy floor."""
        floor = self.settings.accuracy_floor
        eligible = [r for r in rows if r[2].accuracy >= floor]
        below_floor = not eligible
        if below_floor:
            best = max(r[2].accuracy for r in rows)
            eligible = [r for r in rows if r[2].accuracy == best]
        objective = self.settings.objective
        if callable(objective):
            return self._pick_callable(eligible, target_s, objective), below_floor
        if objective == "latency":
            return min(eligible, key=_by_latency), below_floor
        if objective == "cheapest":
            return min(eligible, key=_by_cost), below_floor
        if objective != "cost":
            choose([], 0.0, objective=objective)  # raises the objective error
        cheapest = _cheapest_fitting(eligible, target_s)
        if cheapest is not None:
            return cheapest, below_floor
        left = max(1.0, ctx.remaining[self._index[inv.op]])
        return self._least_late(eligible, left, inv.queued_on), below_floor

    def _least_late(
        self, rows: list[_Row], left: float, queued_on: str | None = None
    ) -> _Row:
        """The row taken when none fits its target.

        The one with the least miss key (`_miss_key`), or, with a tolerance, the
        cheapest of the rows on its backend whose key is within `miss_tolerance`
        of its own: another size of the same configuration that finishes about as
        soon for less. Other backends stay out, as their keys err differently
        (a tail margin for a wide backend, a start-up for a cold pool).
        """
        keyed = [(self._miss_key(r, left, queued_on), r) for r in rows]
        least, soonest = min(keyed, key=lambda kr: kr[0])
        tolerance = self.settings.miss_tolerance
        if tolerance <= 0.0:
            return soonest
        limit = least[0] * (1.0 + tolerance)
        backend = soonest[2].backend
        near = [r for k, r in keyed if k[0] <= limit and r[2].backend == backend]
        return min(near, key=_by_cost)

    @staticmethod
    def _pick_callable(
        rows: list[_Row],
        target_s: float,
        objective: Callable[[list[Candidate], float], Candidate],
    ) -> _Row:
        cands = [
            Candidate(r[2].config, r[0], r[1], r[2].accuracy, r[3], r[4], r[5])
            for r in rows
        ]
        chosen = objective(cands, target_s)
        for cand, row in zip(cands, rows, strict=True):
            if cand is chosen:
                return row
        for cand, row in zip(cands, rows, strict=True):
            if cand == chosen:
                return row
        raise ConfigurationError(
            "an objective callable must return one of the candidates it was given, "
            f"but returned {chosen!r}"
        )

    def _miss_key(
        self, row: _Row, left: float, queued_on: str | None = None
    ) -> tuple[float, float]:
        """How late a candidate leaves the op's work when no target can be met.

        The published method takes the fastest invocation. This key takes the one
        that finishes soonest, waits for slots included (earliest finish, which
        spreads late work over every backend), but charges a configuration that
        holds several slots for the slots it takes from the op's other remaining
        invocations: holding two slots to run 1.7x faster finishes the op's work
        later while more invocations wait than there are slots, and sooner only
        when the invocation is nearly alone.

        With `queue_charge`, a candidate on a pool where other requests are
        queued (`queued_on` is where the invocation itself is) is also charged
        the delay its call's slot-time per invocation makes for them: on a full
        GPU pool, one invocation per call (1.5 s of a slot each) finishes its
        own invocation sooner than eight per call (0.5 s each), but makes every
        request behind it wait three times as long, and a pool kept full that
        way stays full.
        """
        option = row[2]
        slots = option.slots / option.call_batch
        backend = option.backend
        capacity = self.backends[backend].capacity
        charge = min(max(1.0, slots), max(1.0, left * slots / capacity))
        key = row[0] * charge
        if self.settings.queue_charge and not self.backends[backend].per_invocation:
            waiting = sum(self._live[backend].values())
            if queued_on == backend:
                waiting -= 1  # the invocation itself
            if waiting > 0:  # the delay its slot-time makes for those queued there
                slot_s = row[3] * option.slots / max(1, row[4])
                key += waiting * slot_s / max(1, self._capacity[backend])
        return key, row[1]

    def _closed_backends(
        self, inv: Invocation, exclude: Collection[str]
    ) -> Collection[str]:
        """Backends `inv` must not be planned on now."""
        if not inv.avoid and not self._unavailable_until and not exclude:
            return ()
        now = self.clock.now()
        cooling = {b for b, t in self._unavailable_until.items() if t > now}
        return set(exclude) | inv.avoid | cooling

    def _margin(self, op: str, option: Option, remaining: float) -> float:
        """Tail margin: the quantile of the slowest of the op's parallel invocations.

        With `width` invocations running side by side (the op's remaining ones, at
        most what the backend runs at once), the slowest stays below the quantile
        ``tail_quantile ** (1 / width)`` of one with chance `tail_quantile`. The
        error of a prediction is taken as lognormal with the spread the store
        learned for the op on that backend (read again every `MENU_REFRESH`
        observations of the op).
        """
        if not self.settings.fanout_quantile:
            return 1.0
        capacity = self.backends[option.backend].capacity
        parallel = capacity / option.slots * option.call_batch
        width = int(parallel if parallel < remaining else remaining)
        key = (op, option.backend, width if width > 1 else 1)
        margin = self._margins.get(key)
        if margin is None:
            z = self._z_by_width.get(key[2])
            if z is None:
                q = self.settings.tail_quantile ** (1.0 / key[2])
                z = self._z_by_width[key[2]] = NormalDist().inv_cdf(q)
            margin = math.exp(z * self.store.spread(op, option.backend))
            self._margins[key] = margin
        return margin

    def _slot_wait_s(
        self, backend: str, slots: int, inv: Invocation, at_commit: bool
    ) -> float:
        """Predicted seconds until `slots` slots are free for `inv` on `backend`.

        Requests ahead of it take the first slots that free: at commit, those that
        hold the backend this round, when it is its own backend or one with a free
        slot (served this round, after it); otherwise every request queued there.
        A full backend is not served in a round, so none of its queue holds it: a
        request moving there at commit would wait behind all of them.
        """
        capacity = self._capacity[backend]
        if capacity <= 0:
            return INF  # a pool with nothing up: only a warm-up starts it
        if at_commit and (inv.queued_on == backend or self._free(backend) > 0):
            ahead = self._held_slots.get(backend, 0.0)
            ahead_s = self._held_slot_s.get(backend, 0.0)
        else:
            mine = inv.queued_on == backend
            ahead = self._queued_slots[backend] - (inv.queued_slots if mine else 0.0)
            ahead_s = self._queued_slot_s[backend] - (
                inv.queued_slot_s if mine else 0.0
            )
        need = slots + ahead - (capacity - self._used[backend])
        if need <= 1e-9:
            return 0.0
        ends, now = self._ends[backend], self.clock.now()
        index = math.ceil(need - 1e-9)
        if index <= len(ends):
            return max(0.0, ends[index - 1] - now)
        if not ends and ahead <= 0:
            return INF  # nothing runs that could free the slots it needs
        last_s = max(0.0, ends[-1] - now) if ends else 0.0
        beyond = (index - len(ends)) / max(ahead, 1.0)
        return last_s + beyond * max(ahead_s, 0.0) / capacity

    def _check_wait(self, inv: Invocation, fill_s: float) -> None:
        """Plans a waiting request again at its predicted fill, while it waits.

        Its wait may last far past the fill (a share of a slack of minutes, or
        no deadline at all). Mates that come end it at once, as their upstream
        calls ending make a commit round; but when none come (the archive's
        last videos are in, the upstream calls have ended), nothing else would
        plan it again before its wait ends. Planned again then, it finds no
        mate expected (`_fill_wait_s`) and runs in a part-full call now. One
        such check is pending per request, none sooner than `WAIT_CHECK_S`
        apart: an upstream call past its predicted end is expected at once, and
        its own end comes as an event anyway.
        """
        now = self.clock.now()
        if inv.wait_check_s > now:
            return  # one is pending
        check_s = now + max(fill_s, WAIT_CHECK_S)
        if check_s < inv.wait_until_s:
            inv.wait_check_s = check_s
            heapq.heappush(self._wakeups, check_s)

    def _may_wait(self, inv: Invocation) -> bool:
        """Whether `inv` may wait for its call to fill: once, to the end of that wait.

        A request waits at most once, but through every commit round until its wait
        ends: another event in between (an upstream invocation ending, a slot
        freeing) does not end it. The wait ends `wait_slack_share` of its slack
        after the predicted fill (see `_decide`).
        """
        if not self.settings.batching:
            return False
        return not inv.waited or self.clock.now() < inv.wait_until_s

    def _note_cold_pool(self, inv: Invocation, plan: Plan) -> None:
        """Counts what `inv`, committed elsewhere as `plan`, would ask of a cold pool.

        Every `WARMUP_SAMPLE` commits of the op, its plan is made again
        with the pool priced warm and free. When that plan takes the pool and
        fits its target where `plan` does not, or fits it for less, the
        slot-seconds of its call share count; they stand for every decision of
        the op until the next such plan. A warm pool that would only make a late
        invocation a little less late is not asked for. While such plans find
        nothing, the commits between them double, up to `WARMUP_SAMPLE_MAX`.
        """
        op, chosen = inv.op, plan.config.backend
        pool = None
        for name in self._pools:
            if name == chosen or name not in self._allowed[op]:
                continue
            scaled = self._capacity[name] < self.backends[name].capacity
            if self._startup[name] > 0 or (scaled and self._free(name) <= 0):
                pool = name  # cold, or every slot up is taken and it may grow
                break
        if pool is None:
            return
        self._warm_plans[op] += 1
        guess = self._warm_guess.get(op)
        due = self._warm_plans[op] >= self._warm_every[op]
        if guess is None or guess[0] != pool or due:
            self._warm_plans[op] = 0
            slot_s = self._warm_slot_s(inv, pool, plan)
            guess = self._warm_guess[op] = (pool, slot_s)
            every = WARMUP_SAMPLE if slot_s > 0 else 2 * self._warm_every[op]
            self._warm_every[op] = min(every, WARMUP_SAMPLE_MAX)
        if guess[1] > 0.0:
            self._demand.add(pool, self.clock.now(), guess[1])

    def _warm_slot_s(self, inv: Invocation, pool: str, plan: Plan) -> float:
        """Slot-seconds `inv` would take on `pool` were it warm and free, where
        that fits its target and `plan` does not, or fits it for less; else 0."""
        seen = self._waits_seen
        ctx = self._context(inv.group)
        rows = self._rows(inv, ctx, (), True, free=pool)
        self._waits_seen = seen
        if not rows:
            return 0.0
        target_s = plan.target_s
        row = self._pick(inv, rows, target_s, ctx)[0]
        option = row[2]
        if option.backend != pool or row[0] > target_s:
            return 0.0
        if not plan.predicted_miss and row[1] >= plan.cost_usd:
            return 0.0
        return row[3] * option.slots / max(1, row[4])

    def pool_wanted(self, backend: str) -> int:
        """Tasks the pool `backend` should keep up now, by the work it is asked for.

        The committed calls' slot-seconds and, while it is cold, those that
        invocations committed elsewhere would have taken there (see
        `core.pools`); 0 unless `warms_pools`. The caller starts tasks up to it
        and lets idle ones stop.
        """
        if not self.warms_pools or backend not in self._pools:
            return 0
        capacity = self.backends[backend].capacity
        return self._demand.wanted(backend, self.clock.now(), capacity)

    @property
    def warms_pools(self) -> bool:
        """Whether it counts what pools would be given (`pool_wanted`).

        With `pool_warmup` under the cost objective only: it weighs a warm pool
        against the plan's cost and target, which the other objectives (and a
        fixed plan) do not; a caller then lets calls start tasks as they come.
        """
        return self.settings.pool_warmup and self.settings.objective == "cost"

    def _fill_wait_s(self, op: str, need: int) -> float:
        """Predicted seconds until `need` more invocations of `op` are ready.

        Each running upstream invocation is expected to make the edge's learned
        rate of them when it ends. When the running ones cannot make enough, the
        rate at which the op's invocations became ready over the last
        `RATE_WINDOW_S` seconds (of every group: a batch fills across videos)
        gives the time, once at least twice `need` came in that window; INF
        otherwise.
        """
        made, now = 0.0, self.clock.now()
        for end_s, rate in self._upstream_ends(op):
            made += rate
            if made >= need:
                return max(end_s - now, 1e-3)
        times = self._ready_times[op]
        while times and times[0] < now - RATE_WINDOW_S:
            times.popleft()
        if len(times) < 2 * need:
            return INF
        return max(need / (len(times) / RATE_WINDOW_S), 1e-3)

    def _upstream_ends(self, op: str) -> Iterator[tuple[float, float]]:
        """Predicted ends of running upstream calls, soonest first, with their rate."""
        streams = []
        for upstream in self._upstream[op]:
            ends = self._op_ends[upstream]
            if not ends or self._gather[self._index[upstream]]:
                continue
            rate = self.store.edge_rates.get(
                (upstream, op), self.pipeline.edge_rate(upstream, op)
            )
            streams.append(zip(ends, itertools.repeat(rate)))
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams)

    def _probe_due(self, op: str) -> bool:
        s = self.settings
        done = self._decisions[op]
        return s.retry_abandoned and s.objective == "cost" and done % s.retry_every == 0

    def _probe(
        self, op: str, rows: list[_Row], chosen: _Row, target_s: float
    ) -> _Row | None:
        """A configuration not chosen for long, to re-try now and then.

        Every `retry_every` decisions of an op, a candidate that fits the target,
        meets the floor, costs at most `retry_margin` more than the chosen one by
        its estimate, and was not chosen in the last four `retry_every` decisions
        is taken instead (the stalest first), so a configuration over-estimated by
        chance gets the observation that corrects it.
        """
        s = self.settings
        stale_before = self._decisions[op] - 4 * s.retry_every
        best: tuple[int, float] | None = None
        found = None
        for row in rows:
            option = row[2]
            if option is chosen[2] or row[5] > 0 or row[0] > target_s:
                continue
            if option.accuracy < s.accuracy_floor:
                continue
            if row[1] > (1 + s.retry_margin) * chosen[1]:
                continue
            last = self._last_used.get((op, option.config.key), 0)
            if last > stale_before:
                continue
            if best is None or (last, row[1]) < best:
                best, found = (last, row[1]), row
        return found

    # -- targets and the weight of work ahead -------------------------------------

    def _context(self, group: str) -> _Context:
        """Work ahead for an invocation of `group`, cached until something changes."""
        grp = self._groups.get(group) or self._group(group)
        scoped = self._scoped
        key = group if scoped else ""
        cached = self._contexts.get(key)
        own = grp.version if scoped else self._version
        if cached is not None:
            v = cached.version
            if (
                v[0] == own
                and v[1] == self._counts_version
                and v[2] == self._weights_version
            ):
                return cached
        version = (own, self._counts_version, self._weights_version)
        remaining = self._remaining_group(grp) if scoped else self._remaining_run()
        deadline_s = (
            self.settings.deadline_s if grp.deadline_s is None else grp.deadline_s
        )
        ctx = _Context(version, remaining, deadline_s, grp.slo_s)
        if len(self._contexts) > 4096:  # groups long done keep no context
            self._contexts.clear()
        self._contexts[key] = ctx
        return ctx

    def _target_of(
        self, inv: Invocation, ctx: _Context
    ) -> tuple[float, float, tuple[str, ...]]:
        """The invocation's target, the time left and the path that set it."""
        time_left_s = ctx.deadline_s - self.clock.now()
        shares = self.settings.static_shares
        if shares is not None:
            slo_s = ctx.slo_s if ctx.slo_s is not None else self.settings.deadline_s
            return slo_s * shares.get(inv.op, 0.0), time_left_s, (inv.op,)
        if self.settings.weight_basis == "priced":
            return self._priced_target(inv, ctx, time_left_s)
        basis = ctx.stages.get(inv.op) or self._stage_of(ctx, inv.op)
        own_s = 0.0
        option = basis[1]
        if option is not None:  # `_call_s`, inline
            prof = option.profile
            seed_s = prof.seed_fixed_s + prof.seed_s_per_unit * (
                inv.units * option.call_batch
            )
            run_s = seed_s * option.drift.get(option.backend, 1.0) * prof.residual
            run_s *= self.content_factor(inv.op, inv.group)
            own_s = self._startup[option.backend] + run_s
        sums = ctx.sums.get(inv.op)
        if sums is None:
            sums = ctx.sums[inv.op] = self._path_sums(ctx, inv.op)
        left = time_left_s if time_left_s > 0 else 0.0
        best_s, best_path, best_share = INF, self._paths[inv.op][0], 1.0
        excess = basis[2] - 1.0
        for ahead_s, path, share in sums:
            mine_s = own_s * (1.0 + excess * share)
            ahead_s = ahead_s if ahead_s > mine_s else mine_s
            target_s = left * mine_s / ahead_s if ahead_s > 0 else left
            if target_s < best_s:
                best_s, best_path, best_share = target_s, path, share
        ctx.shares[inv.op] = best_share
        return best_s, time_left_s, best_path

    def _priced_target(
        self, inv: Invocation, ctx: _Context, time_left_s: float
    ) -> tuple[float, float, tuple[str, ...]]:
        """`_target_of` with the priced basis: each path at its cheapest fitting rung.

        On every path through the op, the ladder (`_ladders`) is climbed as far as
        the time left allows; the invocation's own seconds are then predicted on
        the option its op stands at, and its target is their share of the time
        left, as with the other bases. The worst path decides.
        """
        op = inv.op
        ladders = ctx.ladders.get(op)
        if ladders is None:
            ladders = ctx.ladders[op] = self._ladders(ctx, op)
        left = time_left_s if time_left_s > 0 else 0.0
        content = self.content_factor(op, inv.group)
        best_s, best_path, best_share = INF, ladders[0][0], 1.0
        for path, totals, reach, owns in ladders:
            step = bisect.bisect_right(reach, left) - 1
            step = step if step > 0 else 0
            option, margin, share = owns[step]
            own_s = 0.0
            if option is not None:
                run_s = option.run_s(inv.units * option.call_batch) * content
                own_s = self._startup[option.backend] + run_s
            mine_s = own_s * (1.0 + (margin - 1.0) * share)
            ahead_s = totals[step] if totals[step] > mine_s else mine_s
            target_s = left * mine_s / ahead_s if ahead_s > 0 else left
            if target_s < best_s:
                best_s, best_path, best_share = target_s, path, share
        ctx.shares[op] = best_share
        return best_s, time_left_s, best_path

    def _ladders(self, ctx: _Context, op: str) -> list[_Ladder]:
        """Per path through `op`: the steps from its fastest plan to its cheapest.

        A path starts with every stage on the rung of its hull (`_hull`) that clears
        its work soonest. Each step moves one stage to its next slower, cheaper
        rung, the step that saves the most dollars per second it adds first: a
        stage whose speed is dear (a larger Lambda for a decode that does not use
        the second vCPU) gives up its time before one whose speed is cheap. The
        path's seconds after each step are planned as `_path_sums` plans them
        (pooled tails with `tail_pooling`). A target taken at the last step that
        still fits the time left spends the slack where it saves the most,
        instead of in proportion to each stage's fastest seconds.
        """
        pool = self.settings.tail_pooling
        hulls_of = ctx.hulls
        out: list[_Ladder] = []
        for path in self._paths[op]:
            hulls = []
            moves = []
            mean_s = squares = 0.0
            for j, x in enumerate(path):
                hull = hulls_of.get(x)
                if hull is None:
                    hull = hulls_of[x] = self._hull(ctx, x)
                hulls.append(hull)
                first = hull[0]
                if pool:
                    mean_s += first[0]
                    squares += first[1] * first[1]
                else:
                    mean_s += first[0] + first[1]
                rate = -INF
                for i in range(1, len(hull)):
                    a, b = hull[i - 1], hull[i]
                    # dollars per second added (< 0), rising along a hull; kept
                    # in order where rounding would swap two nearly equal ones
                    rate = max(rate, (b[2] - a[2]) / (b[5] - a[5]))
                    moves.append((rate, j, i))
            moves.sort()  # the most dollars saved per second added first
            own = path.index(op)
            rung = hulls[own][0]
            tail_s = math.sqrt(squares)
            total = mean_s + tail_s
            totals = [total]
            reach = [total]
            share = rung[1] / tail_s if pool and tail_s > 0 else 1.0
            owns = [(rung[3], rung[4], share)]
            for _, j, i in moves:
                before, after = hulls[j][i - 1], hulls[j][i]
                if pool:
                    mean_s += after[0] - before[0]
                    squares += after[1] * after[1] - before[1] * before[1]
                    tail_s = math.sqrt(squares if squares > 0.0 else 0.0)
                else:
                    mean_s += after[0] + after[1] - before[0] - before[1]
                if j == own:
                    rung = after
                total = mean_s + tail_s
                totals.append(total)
                reach.append(total if total > reach[-1] else reach[-1])
                share = rung[1] / tail_s if pool and tail_s > 0 else 1.0
                owns.append((rung[3], rung[4], share))
            out.append((tuple(path), totals, reach, owns))
        return out

    def _hull(self, ctx: _Context, op: str) -> list[_Rung]:
        """The op's remaining work priced on each of its options, fastest first.

        Only the lower convex hull of (planned seconds, dollars) is kept: every rung
        is cheaper than the one before, and the dollars saved per second added
        fall from rung to rung. Options below the accuracy floor stay out (unless
        none meets it); an op with no work left is one free rung of no seconds.
        """
        remaining = ctx.remaining[self._index[op]]
        if remaining <= 0:
            return [(0.0, 0.0, 0.0, None, 1.0, 0.0)]  # no work left: free, instant
        # Contexts of other groups share hulls: one moves only with the op's
        # remaining work, its profiles (`_learn`) and `_weights_version` (menus,
        # margins, capacities, start-ups).
        key = (op, remaining, self._learned.get(op, 0), self._weights_version)
        found = self._hulls.get(key)
        if found is not None:
            return found
        if len(self._hulls) > 4096:
            self._hulls.clear()
        found = self._hulls[key] = self._hull_now(op, remaining)
        return found

    def _hull_now(self, op: str, remaining: float) -> list[_Rung]:
        units = self.store.units_per_invocation(op)
        menu = self._menu(op)
        cached = self._rung_options.get(op)
        if cached is None or cached[0] is not menu:
            floor = self.settings.accuracy_floor
            eligible = [o for o in menu if o.accuracy >= floor] or menu
            cached = self._rung_options[op] = (menu, eligible)
        width_of = remaining if remaining > 1.0 else 1.0
        margins = self._margins
        points = []
        for o in cached[1]:
            stage_s = self._stage_s(o, remaining, units)
            backend = o.backend
            parallel = self._capacity[backend] / o.slots * o.call_batch
            width = int(parallel if parallel < width_of else width_of)
            margin = margins.get((op, backend, width if width > 1 else 1))
            if margin is None:
                margin = self._margin(op, o, width_of)
            run_s = o.run_s(units * o.call_batch)
            usd = o.usd(run_s) / o.call_batch * remaining
            points.append((stage_s * margin, usd, stage_s, o, margin))
        points.sort(key=_by_seconds_then_dollars)
        kept: list[tuple[float, float, float, Option, float]] = []
        for p in points:
            if kept and p[1] >= kept[-1][1]:
                continue  # slower and no cheaper
            while len(kept) >= 2:
                a, b = kept[-2], kept[-1]
                # b leaves when the line from a to p passes below it
                if (b[1] - a[1]) * (p[0] - a[0]) >= (p[1] - a[1]) * (b[0] - a[0]):
                    kept.pop()
                else:
                    break
            kept.append(p)
        if not kept:  # an op with no options (its profile error comes at planning)
            return [(0.0, 0.0, 0.0, None, 1.0, 0.0)]
        return [(p[2], p[0] - p[2], p[1], p[3], p[4], p[0]) for p in kept]

    def _path_sums(
        self, ctx: _Context, op: str
    ) -> list[tuple[float, tuple[str, ...], float]]:
        """Per path through `op`: its planned seconds, the path, `op`'s tail share.

        Each stage's weight is its mean seconds times its tail margin. Added up
        stage by stage, a path of several is planned at the sum of their tail
        quantiles, far beyond the path's own. With `tail_pooling` the stages' tail
        excesses (weight minus mean) are pooled as independent errors, the root
        of the sum of their squares, and `op` is given the share of that pool its
        own excess brings (its excess over the pool's): summed over the path, the
        stages' shares of the pool make the pool exactly.
        """
        pool = self.settings.tail_pooling
        stages = ctx.stages
        out = []
        for path in self._paths[op]:
            ahead_s = 0.0  # added up in path order, as `sum` does
            squares = 0.0
            own = 0.0
            for x in path:
                stage = stages.get(x) or self._stage_of(ctx, x)
                if not pool:
                    ahead_s += stage[0]
                    continue
                mean_s = stage[0] / stage[2] if stage[2] > 0 else stage[0]
                excess_s = stage[0] - mean_s
                ahead_s += mean_s
                squares += excess_s * excess_s
                if x == op:
                    own = excess_s
            share = 1.0
            if pool:
                tail_s = math.sqrt(squares)
                ahead_s += tail_s
                share = own / tail_s if tail_s > 0 else 1.0
            out.append((ahead_s, path, share))
        return out

    def _stage_of(self, ctx: _Context, op: str) -> tuple[float, Option | None, float]:
        """The op's weight in a context, computed when first needed."""
        found = ctx.stages.get(op)
        if found is None:
            units = self.store.units_per_invocation(op)
            found = self._stage(op, ctx.remaining[self._index[op]], units)
            ctx.stages[op] = found
        return found

    def _call_s(self, option: Option, units: float) -> float:
        """Predicted latency of one call of `option` on invocations of `units`."""
        run_s = option.run_s(units * option.call_batch)
        return self._startup[option.backend] + run_s

    def _estimate(
        self, option: Option, remaining: float, units: float
    ) -> StageEstimate:
        capacity = self.backends[option.backend].capacity
        return StageEstimate(
            self._call_s(option, units),
            remaining / option.call_batch,
            max(1.0, capacity / option.slots),
        )

    def _stage(
        self, op: str, remaining: float, units: float
    ) -> tuple[float, Option | None, float]:
        """Seconds of the op's remaining work, the option standing for it, margin."""
        basis = self.settings.weight_basis
        option: Option | None = None
        if basis in ("priced", "robust"):  # a priced ladder starts from it too
            weights = self._weights.get(op)
            if weights is not None and len(weights) == 1:
                option = weights[0]
        else:
            if basis == "chosen":
                last = self._last_config.get(op)
                if last is not None:
                    option = self._option_by_config(op, last)
            if option is None:
                option = self._fastest_rate(op)
        if option is not None:
            stage_s = self._stage_s(option, remaining, units)
        else:
            stage_s, option = self._clearing_soonest(op, remaining, units)
        if option is None:
            return 0.0, None, 1.0
        margin = self._margin(op, option, remaining if remaining > 1.0 else 1.0)
        return stage_s * margin, option, margin

    def _stage_s(self, option: Option, remaining: float, units: float) -> float:
        """`StageEstimate.stage_s` of the op's remaining work on `option`."""
        calls = remaining / option.call_batch
        if calls <= 0:
            return 0.0
        backend = option.backend
        parallel = self._capacity[backend] / option.slots
        width = parallel if parallel < calls else calls
        prof = option.profile  # `_call_s` and `Option.run_s`, inline
        calls_units = units * option.call_batch
        seed_s = prof.seed_fixed_s + prof.seed_s_per_unit * calls_units
        run_s = seed_s * option.drift.get(backend, 1.0) * prof.residual
        call_s = self._startup[backend] + run_s
        return calls * call_s / (width if width > 1.0 else 1.0)

    def _option_by_config(self, op: str, config: Configuration) -> Option | None:
        for option in self._options_of(op):
            if option.config == config:
                return option
        return None

    def _clearing_soonest(
        self, op: str, remaining: float, units: float
    ) -> tuple[float, Option | None]:
        """Robust weight: the option that clears the op's remaining work soonest.

        Taken across backends, it changes smoothly with the work left (a wide CPU
        backend while many invocations remain, a fast GPU for the last few) and
        does not jump with the configuration last chosen.
        """
        options = self._weight_options(op)
        if len(options) == 1:
            return self._stage_s(options[0], remaining, units), options[0]
        best: tuple[float, float] | None = None
        found: Option | None = None
        for option in options:
            key = (self._stage_s(option, remaining, units), self._call_s(option, units))
            if best is None or key < best:
                best, found = key, option
        return (best[0] if best else 0.0), found

    def _refresh(self, op: str) -> None:
        """Reads an op's profiles again into its menu, weights, affinity and margins."""
        self._menus.pop(op, None)
        self._weights.pop(op, None)
        self._affinity[op] = self._affinity_of(op)
        for key in [k for k in self._margins if k[0] == op]:
            del self._margins[key]
        self._weights_version += 1

    def _menu(self, op: str) -> list[Option]:
        """The op's options without those another beats on every count.

        An option is left out when another on the same backend, with the same slots,
        call batch and price per second, is predicted at least as fast and at least
        as accurate. Which are left out is read again every `MENU_REFRESH`
        observations of the op (a re-try of abandoned configurations prices them
        all).
        """
        cached = self._menus.get(op)
        if cached is not None:
            return cached
        if callable(self.settings.objective):
            kept = list(self._options_of(op))
        else:
            kept = _undominated(self._options_of(op))
        self._menus[op] = kept
        return kept

    def _weight_options(self, op: str) -> list[Option]:
        """Options that can clear the op's work soonest for some amount of work.

        Those meeting the accuracy floor (all, if none does), without the ones
        slower per call and per slot-second than another; read again every
        `MENU_REFRESH` observations of the op.
        """
        cached = self._weights.get(op)
        if cached is not None:
            return cached
        options = self._options_of(op)
        floor = self.settings.accuracy_floor
        eligible = [o for o in options if o.accuracy >= floor] or options
        units = self.store.units_per_invocation(op)
        scored = []
        for o in eligible:
            call_s = self._call_s(o, units)
            capacity = self.backends[o.backend].capacity
            rate = call_s * o.slots / (capacity * o.call_batch)
            scored.append((call_s, rate, o))
        scored.sort(key=lambda t: (t[0], t[1]))
        kept, best_rate = [], INF
        for _, rate, o in scored:
            if rate < best_rate:
                kept.append(o)
                best_rate = rate
        self._weights[op] = kept
        return kept

    def _fastest_rate(self, op: str) -> Option | None:
        """The option with the best rate per unit at its backend's parallelism."""
        options = self._options_of(op)
        floor = self.settings.accuracy_floor
        eligible = [o for o in options if o.accuracy >= floor] or options
        if not eligible:
            return None

        def key(o: Option) -> tuple[float, float]:
            per_unit = o.s_per_unit()
            capacity = max(1, self.backends[o.backend].capacity)
            return per_unit * o.slots / (capacity * o.call_batch), per_unit

        return min(eligible, key=key)

    def _affinity_of(self, op: str) -> dict[str, float]:
        """How much more the op's cheapest option costs off each backend than on it."""
        units = self.store.units_per_invocation(op)
        floor = self.settings.accuracy_floor
        cheapest: dict[str, float] = {}
        for o in self._options_of(op):
            if o.accuracy < floor:
                continue
            usd = o.usd(o.run_s(units * o.call_batch)) / o.call_batch
            cheapest[o.backend] = min(cheapest.get(o.backend, INF), usd)
        out = {}
        for backend, usd in cheapest.items():
            others = [v for b, v in cheapest.items() if b != backend]
            out[backend] = min(others) / usd if others and usd > 0 else 1.0
        return out

    # -- views -------------------------------------------------------------------------

    def stage_estimates(self, group: str | None = None) -> dict[str, StageEstimate]:
        """Remaining work of every op, at the option that stands for it."""
        if group is None:
            remaining = self._remaining_run()
        else:
            remaining = self._remaining_group(self._group(group))
        out = {}
        for i, op in enumerate(self._ops):
            units = self.store.units_per_invocation(op)
            _, option, margin = self._stage(op, remaining[i], units)
            if option is not None:
                estimate = self._estimate(option, remaining[i], units)
                out[op] = replace(estimate, invocation_s=estimate.invocation_s * margin)
        return out

    def used_slots(self) -> dict[str, int]:
        """Slots held now on each backend."""
        return dict(self._used)

    def queued(self) -> int:
        """Requests (first attempts, retries, duplicates) waiting in the queues."""
        return self._requests
