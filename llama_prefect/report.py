"""Run reports: what a pipeline run decided and measured, as JSON and Prefect artifacts.

A report has three levels:

* ``invocations``: one record per task invocation with its op, task run id, target,
  chosen configuration and backend, predicted and observed latency, and cost;
* ``videos``: each video's answer (people per window, crowded or not) or its errors;
* ``failures``: one entry per failed invocation: the video, the op, the segment, the
  error's type and message, and whether it is deterministic (not retried);
* ``run``: the SLO, the run's latency, whether the SLO was met, and the total cost.

`publish_artifacts` turns it into a Prefect table artifact of the invocations and a
markdown artifact with the verdict, visible in the Prefect UI.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPORT_FORMAT = 1


def build_report(
    *,
    pipeline: str,
    records: Sequence[Mapping[str, Any]],
    videos: Sequence[Mapping[str, Any]],
    slo_s: float,
    latency_s: float,
    settings: Mapping[str, Any],
    failures: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Assembles the run report.

    Args:
        pipeline: The pipeline's name.
        records: Plan records of every invocation (see `LlamaTaskRunner.records`).
        videos: One entry per video with ``video``, ``answer`` and ``errors``.
        slo_s: The run's end-to-end latency target, in seconds.
        latency_s: How long the run took, in seconds.
        settings: The run settings the runner used.
        failures: One entry per failed invocation, as the flow saw it.
    """
    invocations = sorted(records, key=lambda r: (r.get("started_s") or 0.0, r["op"]))
    cost_usd = sum(r.get("cost_usd") or 0.0 for r in invocations)
    failed = [r for r in invocations if r.get("state") != "done"]
    run = {
        "slo_s": slo_s,
        "latency_s": latency_s,
        "slo_met": latency_s <= slo_s,
        "cost_usd": cost_usd,
        "invocations": len(invocations),
        "failed_invocations": len(failed),
        "predicted_misses": sum(1 for r in invocations if r.get("predicted_miss")),
        "videos": len(videos),
        "videos_failed": sum(1 for v in videos if v.get("answer") is None),
        "videos_incomplete": sum(
            1 for v in videos if v.get("answer") is not None and v.get("errors")
        ),
        "retries": sum(r.get("retries") or 0 for r in invocations),
        "by_op": dict(Counter(r["op"] for r in invocations)),
    }
    return {
        "format": REPORT_FORMAT,
        "pipeline": pipeline,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": dict(settings),
        "run": run,
        "videos": list(videos),
        "failures": list(failures),
        "invocations": invocations,
    }


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Writes the report as JSON atomically and returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".report-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def summary_markdown(report: Mapping[str, Any]) -> str:
    """The verdict as markdown: SLO, latency, cost, and each video's answer."""
    run = report["run"]
    verdict = "met" if run["slo_met"] else "MISSED"
    lines = [
        f"## {report['pipeline']}: SLO {verdict}",
        "",
        f"- latency: {run['latency_s']:.1f} s of {run['slo_s']:.1f} s",
        f"- cost: ${run['cost_usd']:.6f} over {run['invocations']} invocations "
        f"({run['failed_invocations']} failed, {run['predicted_misses']} predicted "
        "misses)",
        "",
        "| video | crowded | max people | people per window |",
        "| --- | --- | --- | --- |",
    ]
    for entry in report["videos"]:
        answer = entry.get("answer")
        name = Path(entry["video"]).name
        if answer is None:
            lines.append(f"| {name} | failed: {'; '.join(entry['errors'])} | | |")
            continue
        windows = " ".join(f"{x:.1f}" for x in answer["people_per_window"])
        lines.append(
            f"| {name} | {'yes' if answer['crowded'] else 'no'} | "
            f"{answer['max_people']} | {windows} |"
        )
    return "\n".join(lines + _failure_lines(report.get("failures") or []))


def _failure_lines(failures: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown table of failed invocations, or nothing when none failed."""
    if not failures:
        return []
    lines = [
        "",
        f"### {len(failures)} failed invocations",
        "",
        "| video | op | segment | retried | error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in failures:
        segment = "" if entry.get("segment") is None else entry["segment"]
        retried = "no (deterministic)" if entry.get("deterministic") else "yes"
        message = str(entry.get("message", "")).replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {Path(entry['video']).name} | {entry['op']} | {segment} | {retried} | "
            f"{message} |"
        )
    return lines


def invocation_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invocation table: one flat row per invocation, for the UI."""
    rows = []
    for r in report["invocations"]:
        knobs = " ".join(f"{k}={v}" for k, v in sorted(r["configuration"].items()))
        rows.append(
            {
                "op": r["op"],
                "task_run_id": r["task_run_id"],
                "video": Path(r["group"]).name if r.get("group") else "",
                "target_s": round(r["target_s"], 3),
                "backend": r["backend"],
                "configuration": knobs,
                "predicted_s": round(r["predicted_s"], 3),
                "observed_s": _round(r.get("observed_s"), 3),
                "cost_usd": _round(r.get("cost_usd"), 8),
                "state": r["state"],
            }
        )
    return rows


def publish_artifacts(report: Mapping[str, Any]) -> None:
    """Creates the invocation table and the verdict as Prefect artifacts."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = report["pipeline"].lower().replace("_", "-")
    create_table_artifact(
        invocation_rows(report),
        key=f"{key}-invocations",
        description="Every invocation: target, configuration, predicted and observed.",
    )
    create_markdown_artifact(
        summary_markdown(report),
        key=f"{key}-verdict",
        description="SLO verdict, cost and each video's answer.",
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
