"""The oracle: each video's cheapest plan in hindsight, a lower bound on cost.

For one video the oracle knows everything a policy does not: which segments have
motion and people, and the true latency of every invocation under every
configuration (drift, content and noise included). It ignores queueing, start-up
delays, failures and stragglers, and prices a batched GPU call as full. Under those
terms it finds the exact cheapest choice of one configuration per invocation whose
end-to-end latency, ``split + max over segments (motion + people + faces) +
aggregate``, meets the SLO, among configurations that meet the accuracy floor, on
the backends the compared policy has.

The search is exact: per segment, the Pareto front of (latency, cost) of its chain
(motion, then people where motion fired, then faces where people were seen) is built
by combining each op's front; then for every choice of split and aggregate the
chains share what is left of the SLO, and each takes the cheapest point of its front
that fits. A video that no choice can bring within its SLO gets its fastest plan and
counts as a miss of the oracle.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from llama_prefect.core.options import Option, build_options
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.sim.workload import OPS, Video, Workload

#: A point of a front: latency in seconds, cost in dollars.
Point = tuple[float, float]


@dataclass(frozen=True)
class OracleVideo:
    """The oracle's answer for one video.

    Attributes:
        cost_usd: The least cost of a plan that meets the SLO (of the fastest plan
            when none does).
        latency_s: That plan's end-to-end latency.
        feasible: Whether any plan meets the SLO.
    """

    cost_usd: float
    latency_s: float
    feasible: bool


class Oracle:
    """Per-video hindsight optimum over a workload's true latencies.

    Args:
        workload: The workload (profiles, truth).
        backends: Backends the compared policy may use.
        accuracy_floor: Configurations below it are never used.
        drift: True latencies against the profiles.
        prices: The price catalog.
    """

    def __init__(
        self,
        workload: Workload,
        backends: Sequence[str],
        *,
        accuracy_floor: float,
        drift: float,
        prices: PriceCatalog | None = None,
    ) -> None:
        self.workload, self.drift = workload, drift
        prices = prices or PriceCatalog.load()
        capacity = dict.fromkeys(backends, 1 << 20)
        per_inv = dict.fromkeys(backends, True)
        self._eligible: dict[str, list[tuple[float, Option]]] = {}
        for op in OPS:
            options = build_options(workload.profiles, prices, op, capacity, per_inv)
            eligible = [o for o in options if o.accuracy >= accuracy_floor] or options
            # A batched option's invocation waits for its whole (full) call: its
            # latency is the call's, its cost a share of it.
            self._eligible[op] = [
                (workload.true_s_per_unit[(op, o.config.key)] * o.call_batch, o)
                for o in eligible
            ]

    def _front(self, video: Video, op: str, segment: int) -> list[Point]:
        """Pareto front of one invocation's configurations, fastest first."""
        index = 0 if op in ("split", "aggregate") else segment
        scale = (
            video.units[op] * video.content[op] * video.noise[op][index] * self.drift
        )
        return _pareto(
            [
                (unit_s * scale, o.usd(unit_s * scale) / o.call_batch)
                for unit_s, o in self._eligible[op]
            ]
        )

    def video(self, video: Video, slo_s: float) -> OracleVideo:
        """The cheapest plan of `video` that meets `slo_s`."""
        chains = [self._chain(video, s) for s in range(video.segments)]
        best: OracleVideo | None = None
        fastest: OracleVideo | None = None
        for split_s, split_usd in self._front(video, "split", 0):
            for agg_s, agg_usd in self._front(video, "aggregate", 0):
                fixed_s, fixed_usd = split_s + agg_s, split_usd + agg_usd
                plan = _share(chains, slo_s - fixed_s)
                if plan is not None:
                    cost, longest = plan
                    found = OracleVideo(fixed_usd + cost, fixed_s + longest, True)
                    if best is None or found.cost_usd < best.cost_usd:
                        best = found
                latency = fixed_s + max(c[0][0] for c in chains)
                quick = OracleVideo(
                    fixed_usd + sum(c[0][1] for c in chains), latency, False
                )
                if fastest is None or quick.latency_s < fastest.latency_s:
                    fastest = quick
        assert fastest is not None
        return best or fastest

    def _chain(self, video: Video, segment: int) -> list[Point]:
        """Pareto front of one segment's chain, fastest first."""
        front = self._front(video, "motion", segment)
        if video.moving[segment]:
            front = _combine(front, self._front(video, "people", segment))
            if video.faces[segment]:
                front = _combine(front, self._front(video, "faces", segment))
        return front


def _combine(first: list[Point], second: list[Point]) -> list[Point]:
    """Pareto front of doing one point of `first` and then one of `second`."""
    pairs = sorted((a[0] + b[0], a[1] + b[1]) for a in first for b in second)
    return _pareto(pairs)


def _pareto(points: list[Point]) -> list[Point]:
    """Points sorted by latency, each cheaper than every faster one."""
    kept: list[Point] = []
    for point in sorted(points):
        if not kept or point[1] < kept[-1][1] - 1e-15:
            kept.append(point)
    return kept


def _share(chains: list[list[Point]], budget_s: float) -> tuple[float, float] | None:
    """Cheapest point of every chain within `budget_s`: total cost, longest latency."""
    if budget_s <= 0:
        return None
    total, longest = 0.0, 0.0
    for front in chains:
        index = bisect.bisect_right(front, (budget_s, float("inf"))) - 1
        if index < 0:
            return None
        latency_s, usd = front[index]
        total += usd
        longest = max(longest, latency_s)
    return total, longest
