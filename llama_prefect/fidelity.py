"""Prediction fidelity: how close each invocation's predicted latency came to the truth.

The error of one invocation is ``abs(predicted - observed_s) / observed_s``, from the
run report's ``invocations``, where the prediction is the prediction of its run itself
(``predicted_run_s``: profile times work units, plus the backend's start-up). The
record's ``predicted_s`` adds what planning adds on top (a tail margin that grows with
the fan-out and the learned spread, and waits for slots or a batch), so it is not a
prediction of the run; reports without ``predicted_run_s`` fall back to it.

The first invocations of a configuration are its warm-up: a model loads, a decoder
opens its first file, caches are cold. We count as warm-up every invocation of an
(op, backend, configuration) that started before the first one of that configuration
finished, so cold starts running side by side on several slots are all left out.
Failed invocations have no observed latency and are left out too.

Two figures tell a systematic error from noise. The bias (the median of the signed
error ``(predicted - observed) / observed``) is near 0 when the predictions are right
on the whole, however they scatter. The floor (`line_floor`) is the error left when
each configuration's latency is taken as the straight line in its work units that
fits the run's own invocations best: no prediction from the units alone does much
better on that run, so what it leaves is the machine's and the content's noise.
Records with ``body_s`` (seconds in the op's body) also give the time an invocation
spent outside its body (`outside_body_s`): the task engine, waiting for a thread.
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
        units: Work units of the invocation.
        config: Its op, backend and knobs, as one key.
        body_s: Seconds it spent in the op's body, when the report has them.
    """

    op: str
    predicted_s: float
    observed_s: float
    warmup: bool
    units: float = 1.0
    config: str = ""
    body_s: float | None = None

    @property
    def relative(self) -> float:
        """``abs(predicted - observed) / observed``."""
        return abs(self.signed)

    @property
    def signed(self) -> float:
        """``(predicted - observed) / observed``: above 0 when predicted too slow."""
        return (self.predicted_s - self.observed_s) / self.observed_s


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
            units=float(r.get("units") or 1.0),
            config=_config_key(r),
            body_s=r.get("body_s"),
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
        bias: Median signed error: above 0 when most predictions are too slow.
    """

    n: int
    median: float
    p95: float
    within_10pct: float
    bias: float = 0.0


def summarize(errors: Sequence[Error], *, op: str | None = None) -> Fidelity | None:
    """Median and p95 of the relative errors after warm-up, of one op or all."""
    signed = sorted(
        e.signed for e in errors if not e.warmup and (op is None or e.op == op)
    )
    if not signed:
        return None
    values = sorted(abs(v) for v in signed)
    return Fidelity(
        n=len(values),
        median=_quantile(values, 0.5),
        p95=_quantile(values, 0.95),
        within_10pct=sum(1 for v in values if v <= 0.10) / len(values),
        bias=_quantile(signed, 0.5),
    )


def line_floor(errors: Sequence[Error], *, op: str | None = None) -> Fidelity | None:
    """`summarize` of the best line in the units, fitted per configuration in-sample.

    For each configuration, the line ``fixed_s + s_per_unit x units`` (both >= 0)
    that minimizes the sum of squared relative errors over its invocations after
    warm-up stands in for the prediction. It sees the answers, so it shows how much
    of the error is noise around the units rather than a wrong profile.
    """
    kept = [e for e in errors if not e.warmup and (op is None or e.op == op)]
    by_config: dict[str, list[Error]] = {}
    for e in kept:
        by_config.setdefault(e.config, []).append(e)
    fitted = []
    for group in by_config.values():
        fixed_s, s_per_unit = _relative_line([(e.units, e.observed_s) for e in group])
        fitted += [
            Error(
                op=e.op,
                predicted_s=fixed_s + s_per_unit * e.units,
                observed_s=e.observed_s,
                warmup=False,
                units=e.units,
                config=e.config,
            )
            for e in group
        ]
    return summarize(fitted)


def _relative_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(fixed, per unit)`` >= 0 minimizing the sum of ``((line - t) / t) ** 2``.

    Weighted least squares with weights ``1 / t**2``. When the free fit has a
    negative part, the better of the constant and the proportional line is taken;
    points of one size get the constant.
    """
    w = [1.0 / (t * t) for _, t in points]
    sw = sum(w)
    su = sum(wi * u for wi, (u, _) in zip(w, points, strict=True))
    st = sum(wi * t for wi, (_, t) in zip(w, points, strict=True))
    suu = sum(wi * u * u for wi, (u, _) in zip(w, points, strict=True))
    sut = sum(wi * u * t for wi, (u, t) in zip(w, points, strict=True))
    det = sw * suu - su * su
    if det > 1e-12 * sw * suu:
        s_per_unit = (sw * sut - su * st) / det
        fixed_s = (st - s_per_unit * su) / sw
        if fixed_s >= 0 and s_per_unit >= 0:
            return fixed_s, s_per_unit
    constant = (st / sw, 0.0)
    if suu <= 0:
        return constant
    proportional = (0.0, sut / suu)
    return min((constant, proportional), key=lambda line: _sq_rel(line, points))


def _sq_rel(line: tuple[float, float], points: Sequence[tuple[float, float]]) -> float:
    return sum(((line[0] + line[1] * u - t) / t) ** 2 for u, t in points)


def outside_body_s(errors: Sequence[Error], *, op: str | None = None) -> float | None:
    """Median seconds invocations spent outside their op's body, after warm-up.

    ``observed_s - body_s``: the task engine's work around the body and waits for a
    thread. None when the report has no ``body_s``.
    """
    spent = sorted(
        e.observed_s - e.body_s
        for e in errors
        if e.body_s is not None and not e.warmup and (op is None or e.op == op)
    )
    return _quantile(spent, 0.5) if spent else None


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
