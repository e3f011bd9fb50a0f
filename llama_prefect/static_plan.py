"""What the best static plan would have cost on the work a run actually did.

A static plan fixes one configuration per op for the whole run, as a user without the
Llama runner would. After a run we know the work it found (every invocation, with its
op, video and work units), and the profiles as the run corrected them; from these we
price every static plan and keep the cheapest one predicted to meet the SLO.

How a plan is judged:

* its cost is the sum over the run's invocations of the predicted cost of the op's
  fixed configuration on that invocation's work units (the same cost model the runner
  uses, with the corrected profiles);
* its latency is estimated from below, as the larger of (a) each backend's
  slot-seconds over its slots (the pool cannot finish sooner) and (b) each video's
  shortest possible chain: its source invocation, its longest middle invocation and
  its gather invocation run one after another;
* a plan meets the SLO when that lower bound fits in it.

Because the latency is a lower bound, a plan that passes may in truth miss; the
reported cost is therefore never above what the best static plan that truly meets the
SLO would cost: the comparison flatters the static plan, not the runner.

The search is exact: configurations of an op that are no better in cost, in
slot-seconds on every backend, and in every video's longest invocation than another
are dropped, and the remaining plans are enumerated. Past `MAX_PLANS` combinations
it falls back to a greedy search (start from each op's cheapest configuration, then
take the upgrade with the most latency saved per dollar), and says so.

Pure Python: no Prefect.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_prefect.core.pipeline import Configuration, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ProfileError

#: Most static plans enumerated exactly; past it the search is greedy.
MAX_PLANS = 200_000

METHOD = (
    "cheapest single configuration per op whose predicted latency on this run's "
    "invocations, estimated from below (each backend's slot-seconds over its slots, "
    "and each video's source, longest middle and gather invocations in a row), fits "
    "the SLO; priced with the profiles as this run corrected them"
)


@dataclass(frozen=True)
class _Option:
    """One configuration of one op, priced on that op's invocations of the run."""

    config: Configuration
    cost_usd: float
    work_s: dict[str, float]
    longest_s: dict[str, float]
    accuracy: float


@dataclass
class StaticPlan:
    """The best static plan for a run's observed work.

    Attributes:
        configurations: The fixed configuration of each op, as a configuration key.
        cost_usd: Its predicted cost on the run's invocations.
        latency_bound_s: Lower bound of its latency.
        meets_slo: True when the bound fits the SLO; False means no static plan
            fits and this is the one with the lowest bound.
        exact: True when every plan was enumerated.
        run_cost_same_model_usd: The run's own choices priced the same way.
        plans_considered: Static plans evaluated.
        method: How it is computed, in words.
        skipped_ops: Ops left out because no profile covers them.
    """

    configurations: dict[str, str]
    cost_usd: float
    latency_bound_s: float
    meets_slo: bool
    exact: bool
    run_cost_same_model_usd: float
    plans_considered: int
    method: str = METHOD
    skipped_ops: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return dict(self.__dict__)


def best_static_plan(
    invocations: Sequence[Mapping[str, Any]],
    *,
    pipeline: Pipeline,
    store: ProfileStore,
    prices: PriceCatalog,
    capacity: Mapping[str, int],
    slo_s: float,
    accuracy_floor: float = 0.0,
    startup_s: Mapping[str, float] | None = None,
) -> StaticPlan | None:
    """The cheapest static plan predicted to meet `slo_s` on the run's invocations.

    Args:
        invocations: The run's plan records (``op``, ``group``, ``units``, and
            ``backend`` and ``configuration`` of the run's own choice).
        pipeline: The pipeline that ran.
        store: Profiles, as corrected by the run.
        prices: The price catalog the run used.
        capacity: Slots of each backend the run had.
        slo_s: The run's SLO in seconds.
        accuracy_floor: Configurations below it are not eligible.
        startup_s: Start-up delay of each backend, in seconds.

    Returns:
        The plan, or None when the run had no invocations.
    """
    by_op: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in invocations:
        by_op[record["op"]].append(record)
    if not by_op:
        return None

    options, skipped = {}, []
    for op, records in by_op.items():
        found = _options(op, records, pipeline, store, prices, capacity, startup_s)
        found = _eligible(found, accuracy_floor)
        if found:
            options[op] = _undominated(found)
        else:
            skipped.append(op)
    if not options:
        return None

    ends = _chain_ends(pipeline, options)
    plans = math.prod(len(o) for o in options.values())
    search = _exact if plans <= MAX_PLANS else None
    chosen, considered = (search or _greedy)(options, ends, capacity, slo_s)
    bound = _latency_bound(chosen, ends, capacity)
    return StaticPlan(
        configurations={op: option.config.key for op, option in chosen.items()},
        cost_usd=sum(option.cost_usd for option in chosen.values()),
        latency_bound_s=bound,
        meets_slo=bound <= slo_s,
        exact=search is not None,
        run_cost_same_model_usd=_run_cost(invocations, store, prices),
        plans_considered=considered,
        skipped_ops=sorted(skipped),
    )


def _options(
    op: str,
    records: Sequence[Mapping[str, Any]],
    pipeline: Pipeline,
    store: ProfileStore,
    prices: PriceCatalog,
    capacity: Mapping[str, int],
    startup_s: Mapping[str, float] | None,
) -> list[_Option]:
    """Every profiled configuration of `op` on the run's backends, priced."""
    allowed = [b for b in pipeline.ops[op].backends if b in capacity]
    out = []
    for config in store.configurations(op):
        if config.backend not in allowed:
            continue
        delay_s = (startup_s or {}).get(config.backend, 0.0)
        cost_usd, work_s = 0.0, 0.0
        longest: dict[str, float] = defaultdict(float)
        for record in records:
            run_s = store.predict_s(op, config, float(record.get("units") or 1.0))
            cost_usd += prices.cost_usd(config.backend, run_s, config.slots)
            work_s += run_s * config.slots
            group = str(record.get("group") or "")
            longest[group] = max(longest[group], run_s + delay_s)
        accuracy = store.profile(op, config).accuracy
        out.append(
            _Option(config, cost_usd, {config.backend: work_s}, dict(longest), accuracy)
        )
    return out


def _eligible(options: list[_Option], accuracy_floor: float) -> list[_Option]:
    """Options at or above the floor; the most accurate ones when none is."""
    above = [o for o in options if o.accuracy >= accuracy_floor]
    if above or not options:
        return above
    best = max(o.accuracy for o in options)
    return [o for o in options if o.accuracy == best]


def _undominated(options: list[_Option]) -> list[_Option]:
    """Drops options no better than another one in cost, work and longest chain."""

    def no_better(a: _Option, b: _Option) -> bool:
        backends = set(a.work_s) | set(b.work_s)
        groups = set(a.longest_s) | set(b.longest_s)
        return (
            a.cost_usd >= b.cost_usd
            and all(a.work_s.get(k, 0.0) >= b.work_s.get(k, 0.0) for k in backends)
            and all(a.longest_s.get(g, 0.0) >= b.longest_s.get(g, 0.0) for g in groups)
        )

    ordered = sorted(options, key=lambda o: (o.cost_usd, o.config))
    kept: list[_Option] = []
    for option in ordered:
        if not any(no_better(option, k) for k in kept):
            kept.append(option)
    return kept


@dataclass(frozen=True)
class _Ends:
    """Which ops open and which close a video's chain."""

    sources: frozenset[str]
    gathers: frozenset[str]


def _chain_ends(pipeline: Pipeline, options: Mapping[str, Any]) -> _Ends:
    sources = frozenset(op for op in options if pipeline.depth(op) == 0)
    gathers = frozenset(op for op in options if pipeline.ops[op].gather) - sources
    return _Ends(sources, gathers)


def _latency_bound(
    plan: Mapping[str, _Option], ends: _Ends, capacity: Mapping[str, int]
) -> float:
    """Lower bound of a plan's latency: pool work over slots, or the longest chain."""
    work: dict[str, float] = defaultdict(float)
    for option in plan.values():
        for backend, seconds in option.work_s.items():
            work[backend] += seconds
    pool_s = max((s / max(1, capacity.get(b, 1)) for b, s in work.items()), default=0)

    groups = {g for option in plan.values() for g in option.longest_s}
    chain_s = 0.0
    for group in groups:
        head = sum(plan[op].longest_s.get(group, 0.0) for op in ends.sources)
        tail = sum(plan[op].longest_s.get(group, 0.0) for op in ends.gathers)
        middle = max(
            (
                option.longest_s.get(group, 0.0)
                for op, option in plan.items()
                if op not in ends.sources and op not in ends.gathers
            ),
            default=0.0,
        )
        chain_s = max(chain_s, head + middle + tail)
    return max(pool_s, chain_s)


def _exact(
    options: Mapping[str, list[_Option]],
    ends: _Ends,
    capacity: Mapping[str, int],
    slo_s: float,
) -> tuple[dict[str, _Option], int]:
    """Enumerates every plan: the cheapest that fits, else the one with least bound."""
    ops = sorted(options)
    best: tuple[float, dict[str, _Option]] | None = None
    fastest: tuple[float, float, dict[str, _Option]] | None = None
    count = 0
    for combo in itertools.product(*(options[op] for op in ops)):
        count += 1
        plan = dict(zip(ops, combo, strict=True))
        cost_usd = sum(o.cost_usd for o in combo)
        if best is not None and cost_usd >= best[0]:
            continue
        bound = _latency_bound(plan, ends, capacity)
        if bound <= slo_s:
            best = (cost_usd, plan)
        elif fastest is None or (bound, cost_usd) < fastest[:2]:
            fastest = (bound, cost_usd, plan)
    if best is not None:
        return best[1], count
    assert fastest is not None
    return fastest[2], count


def _greedy(
    options: Mapping[str, list[_Option]],
    ends: _Ends,
    capacity: Mapping[str, int],
    slo_s: float,
) -> tuple[dict[str, _Option], int]:
    """From the cheapest plan, upgrades the op that saves most latency per dollar."""
    plan = {op: min(opts, key=lambda o: o.cost_usd) for op, opts in options.items()}
    count = 1
    bound = _latency_bound(plan, ends, capacity)
    while bound > slo_s:
        best: tuple[float, str, _Option, float] | None = None
        for op, opts in options.items():
            for option in opts:
                trial = {**plan, op: option}
                count += 1
                saved_s = bound - _latency_bound(trial, ends, capacity)
                extra_usd = max(option.cost_usd - plan[op].cost_usd, 1e-12)
                if saved_s > 0 and (best is None or saved_s / extra_usd > best[0]):
                    best = (saved_s / extra_usd, op, option, bound - saved_s)
        if best is None:
            break
        plan[best[1]], bound = best[2], best[3]
    return plan, count


def _run_cost(
    invocations: Sequence[Mapping[str, Any]],
    store: ProfileStore,
    prices: PriceCatalog,
) -> float:
    """The run's own choices priced with the same profiles and cost model."""
    total = 0.0
    for record in invocations:
        config = Configuration.of(record["backend"], record["configuration"])
        units = float(record.get("units") or 1.0)
        try:
            run_s = store.predict_s(record["op"], config, units)
        except ProfileError:
            continue
        total += prices.cost_usd(config.backend, run_s, config.slots)
    return total
