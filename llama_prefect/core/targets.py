"""Per-invocation latency targets: a share of the time left, by the work still ahead.

For an invocation of op `o` with time left `R`, each path `p` from `o` to a sink gives

    target_p = R * w_own / sum(stage_s(x) for x in p)

and the invocation's target is the smallest `target_p`: the worst path decides. `w_own`
is the predicted latency of this invocation; `stage_s(x)` is how long the work of op `x`
still expected takes, given the parallelism its backend gives:

    width(x) = max(1, min(parallelism(x), remaining(x)))
    stage_s(x) = remaining(x) * invocation_s(x) / width(x)

`remaining(x)` counts the invocations of `x` still expected in the whole run, not only
in this invocation's video. One deadline covers an archive and every video's invocations
share the same slots, so the work of the other videos is work ahead too. For a single
video with enough slots this is the published formula: each stage weighs one invocation.

Time that upstream work did not use flows downstream by itself, because `R` is measured
again at every decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llama_prefect.core.pipeline import Pipeline


@dataclass(frozen=True)
class StageEstimate:
    """What one op still has to do in the run.

    Attributes:
        invocation_s: Predicted latency of one invocation, in seconds.
        remaining: Invocations of the op still expected (may be fractional).
        parallelism: How many of them can run at once.
    """

    invocation_s: float
    remaining: float
    parallelism: float

    @property
    def stage_s(self) -> float:
        """Seconds the op's remaining work takes at its parallelism."""
        if self.remaining <= 0:
            return 0.0
        width = max(1.0, min(self.parallelism, self.remaining))
        return self.remaining * self.invocation_s / width


@dataclass(frozen=True)
class Target:
    """The latency target of one invocation and where it came from.

    Attributes:
        target_s: Seconds this invocation may take.
        time_left_s: Seconds to the deadline when it was computed.
        path: The path that decided it (the one with the most work ahead).
        ahead_s: Seconds of work ahead on that path, this op included.
    """

    target_s: float
    time_left_s: float
    path: tuple[str, ...]
    ahead_s: float


def invocation_target(
    pipeline: Pipeline,
    op: str,
    own_s: float,
    time_left_s: float,
    stages: Mapping[str, StageEstimate],
    paths: Sequence[Sequence[str]] | None = None,
) -> Target:
    """Computes the target of one invocation of `op`.

    Args:
        pipeline: The pipeline the op belongs to.
        op: The op of the invocation.
        own_s: Predicted latency of this invocation, in seconds (> 0).
        time_left_s: Seconds to the deadline; zero or less means already late.
        stages: Remaining work per op; ops missing from it count as no work.
        paths: The paths from `op` to a sink, when the caller has them at hand
            (default: enumerated from the pipeline).

    Returns:
        The target; 0 s when the deadline has passed.
    """
    best: Target | None = None
    for path in pipeline.paths_from(op) if paths is None else paths:
        ahead_s = sum(stages[x].stage_s for x in path if x in stages)
        ahead_s = max(ahead_s, own_s)
        share = own_s / ahead_s if ahead_s > 0 else 1.0
        candidate = Target(
            max(0.0, time_left_s) * share, time_left_s, tuple(path), ahead_s
        )
        if best is None or candidate.target_s < best.target_s:
            best = candidate
    assert best is not None, "paths_from always yields at least the op itself"
    return best
