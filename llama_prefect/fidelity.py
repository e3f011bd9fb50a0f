"""Prediction fidelity: how close each invocation's predicted latency came to the truth.

The error of one invocation is ``abs(predicted - observed_s) / observed_s``, from the
run report's ``invocations``, where the prediction is the mean prediction of its run
(``predicted_run_s``: profile times work units, plus the backend's start-up). The
record's ``predicted_s`` adds what planning adds on top (a tail margin that grows with
the fan-out and the learned spread, and waits for slots or a batch), so it is not a
prediction of the mean; reports without ``predicted_run_s`` fall back to it.

The first invocations of a configuration are its warm-up: a model loads, a decoder
opens its first file, caches are cold. We count as warm-up every invocation of an
(op, backend, configuration) that started before the first one of that configuration
finished, so cold starts running side by side on several slots are all left out.
Failed invocations have no observed latency and are left out too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Error:
    """One invocation's prediction against what it took.

    Attributes:
        op: The op.
        predicted_s: Predicted latency, in seconds.
        observed_s: Observed latency, in seconds.
        warmup: True when the invocation is part of its configuration's warm-up.
    """

    op: str
    predicted_s: float
    observed_s: float
    warmup: bool

    @property
    def relative(self) -> float:
        """``abs(predicted - observed) / observed``."""
        return abs(self.predicted_s - self.observed_s) / self.observed_s


def prediction_errors(report: Mapping[str, Any]) -> list[Error]:
    """The prediction error of every finished invocation of a run report."""
    done = [
        r
        for r in report["invocations"]
        if r.get("state") == "done" and (r.get("observed_s") or 0) > 0
    ]
    first_end = _first_finish(done)
    return [
        Error(
            op=r["op"],
            predicted_s=float(r.get("predicted_run_s") or r["predicted_s"]),
            observed_s=float(r["observed_s"]),
            warmup=(r.get("started_s") or 0.0) < first_end[_config_key(r)],
        )
        for r in done
    ]


def _first_finish(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """When the first invocation of each configuration finished (started first)."""
    first: dict[str, tuple[float, float]] = {}
    for r in records:
        started, finished = r.get("started_s") or 0.0, r.get("finished_s") or 0.0
        key = _config_key(r)
        if key not in first or started < first[key][0]:
            first[key] = (started, finished)
    return {key: finished for key, (_, finished) in first.items()}


def _config_key(record: Mapping[str, Any]) -> str:
    knobs = json.dumps(record.get("configuration") or {}, sort_keys=True)
    return f"{record['op']}|{record.get('backend')}|{knobs}"


@dataclass(frozen=True)
class Fidelity:
    """Summary of prediction errors after warm-up.

    Attributes:
        n: Invocations counted.
        median: Median relative error.
        p95: 95th percentile of the relative error (nearest rank).
        within_10pct: Share of invocations within 10%.
    """

    n: int
    median: float
    p95: float
    within_10pct: float


def summarize(errors: Sequence[Error], *, op: str | None = None) -> Fidelity | None:
    """Median and p95 of the relative errors after warm-up, of one op or all."""
    values = sorted(
        e.relative for e in errors if not e.warmup and (op is None or e.op == op)
    )
    if not values:
        return None
    return Fidelity(
        n=len(values),
        median=_quantile(values, 0.5),
        p95=_quantile(values, 0.95),
        within_10pct=sum(1 for v in values if v <= 0.10) / len(values),
    )


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def by_op(errors: Sequence[Error]) -> dict[str, Fidelity]:
    """`summarize` for every op with invocations after warm-up."""
    found = {}
    for op in sorted({e.op for e in errors}):
        summary = summarize(errors, op=op)
        if summary is not None:
            found[op] = summary
    return found
