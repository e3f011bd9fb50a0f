"""Cost-based choice of a configuration for one invocation.

Among the profiled configurations of the op on the backends that can take it now, the
ones below the accuracy floor are dropped; of the rest, those whose predicted latency
(start-up included) fits the target are candidates, and the objective picks one:

* ``cost`` (default): the cheapest that fits; if none fits, the fastest (or the least
  by a key the caller gives), recorded as a predicted miss;
* ``latency`` (Llama-fast): the fastest, whatever it costs;
* ``cheapest`` (Llama-cheap): the cheapest, ignoring the target;
* a callable ``(candidates, target_s) -> Candidate`` for anything else.

When no configuration reaches the accuracy floor, the most accurate ones are used
instead and the choice says so, so the caller can warn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError, ProfileError

logger = logging.getLogger(__name__)

ObjectiveName = Literal["cost", "latency", "cheapest"]
OBJECTIVES: tuple[str, ...] = ("cost", "latency", "cheapest")


@dataclass(frozen=True)
class Candidate:
    """One configuration priced for one invocation.

    Attributes:
        config: The configuration.
        predicted_s: Predicted latency of the invocation, start-up included.
        cost_usd: Predicted cost of the invocation.
        accuracy: Accuracy against the op's reference configuration.
        run_s: Predicted mean run time of its call, start-up and waits excluded.
        fill: Invocations its call is priced for (its share of a batched call).
        wait_s: Seconds it waits for its call to fill before it runs (0: now).
    """

    config: Configuration
    predicted_s: float
    cost_usd: float
    accuracy: float
    run_s: float = 0.0
    fill: int = 1
    wait_s: float = 0.0


Objective = ObjectiveName | Callable[[Sequence[Candidate], float], Candidate]


@dataclass(frozen=True)
class Choice:
    """The chosen configuration and what was known when it was chosen.

    Attributes:
        candidate: The chosen candidate.
        target_s: The target it was chosen for.
        predicted_miss: True when it is not predicted to meet the target.
        below_floor: True when no configuration met the accuracy floor.
        considered: How many configurations were priced.
    """

    candidate: Candidate
    target_s: float
    predicted_miss: bool
    below_floor: bool
    considered: int


def price_candidates(
    store: ProfileStore,
    prices: PriceCatalog,
    op: str,
    units: float,
    *,
    backends: Iterable[str],
    startup_s: Mapping[str, float] | None = None,
    configs: Iterable[Configuration] | None = None,
) -> list[Candidate]:
    """Prices every profiled configuration of `op` on `backends` for `units` of work.

    Args:
        store: Profiles to predict from.
        prices: The price catalog.
        op: The op.
        units: Work units of the invocation.
        backends: Backends that can take the invocation now.
        startup_s: Start-up and queueing delay of each backend, in seconds.
        configs: Restricts the configurations considered (default: all profiled).
    """
    allowed = set(backends)
    delays = startup_s or {}
    pool = store.configurations(op) if configs is None else list(configs)
    out = []
    for config in pool:
        if config.backend not in allowed:
            continue
        run_s = store.predict_s(op, config, units)
        predicted_s = run_s + delays.get(config.backend, 0.0)
        cost_usd = prices.config_cost_usd(config, run_s)
        accuracy = store.profile(op, config).accuracy
        out.append(Candidate(config, predicted_s, cost_usd, accuracy, run_s))
    return out


def choose(
    candidates: Sequence[Candidate],
    target_s: float,
    *,
    objective: Objective = "cost",
    accuracy_floor: float = 0.0,
    miss_key: Callable[[Candidate], float] | None = None,
) -> Choice:
    """Picks a candidate for a target under an objective and an accuracy floor.

    Args:
        candidates: The priced configurations.
        target_s: The invocation's latency target.
        objective: ``cost``, ``latency``, ``cheapest`` or a callable.
        accuracy_floor: Candidates less accurate than this are dropped.
        miss_key: Under ``cost``, when no candidate fits, the one with the least
            key is taken; the default is the predicted latency (the fastest).
    """
    if not candidates:
        raise ProfileError(
            "no profiled configuration can run this invocation on the available "
            "backends; run `llama-prefect profile` or enable another backend"
        )
    eligible = [c for c in candidates if c.accuracy >= accuracy_floor]
    below_floor = not eligible
    if below_floor:
        best_accuracy = max(c.accuracy for c in candidates)
        eligible = [c for c in candidates if c.accuracy == best_accuracy]

    chosen = _apply_objective(eligible, target_s, objective, miss_key)
    if logger.isEnabledFor(logging.DEBUG):
        for c in eligible:
            logger.debug(
                "candidate %s predicted %.3f s cost $%.8f accuracy %.3f",
                c.config.key,
                c.predicted_s,
                c.cost_usd,
                c.accuracy,
            )
    return Choice(
        candidate=chosen,
        target_s=target_s,
        predicted_miss=chosen.predicted_s > target_s,
        below_floor=below_floor,
        considered=len(candidates),
    )


def _apply_objective(
    eligible: Sequence[Candidate],
    target_s: float,
    objective: Objective,
    miss_key: Callable[[Candidate], float] | None = None,
) -> Candidate:
    def fastest(cs: Sequence[Candidate]) -> Candidate:
        return min(cs, key=lambda c: (c.predicted_s, c.cost_usd, c.config))

    def cheapest(cs: Sequence[Candidate]) -> Candidate:
        return min(cs, key=lambda c: (c.cost_usd, c.predicted_s, c.config))

    if callable(objective):
        return objective(eligible, target_s)
    if objective == "latency":
        return fastest(eligible)
    if objective == "cheapest":
        return cheapest(eligible)
    if objective == "cost":
        fitting = [c for c in eligible if c.predicted_s <= target_s]
        if fitting:
            return cheapest(fitting)
        if miss_key is None:
            return fastest(eligible)
        return min(eligible, key=lambda c: (miss_key(c), c.predicted_s, c.config))
    raise ConfigurationError(
        f"objective must be one of {OBJECTIVES} or a callable, but got {objective!r}"
    )
