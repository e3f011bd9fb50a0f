"""Run reports: what a pipeline run decided and measured, as JSON and Prefect artifacts.

A report has three levels:

* ``invocations``: one record per task invocation with its op, task run id, target,
  chosen configuration and backend, predicted and observed latency, and cost;
* ``videos``: each video's answer (people per window, crowded or not) or its errors;
* ``failures``: one entry per failed invocation: the video, the op, the segment, the
  error's type and message, and whether it is deterministic (not retried);
* ``run``: the SLO, the run's latency, whether the SLO was met, and the total cost;
* ``static_plan``: what the best static plan would have cost on the same work (see
  `llama_prefect.static_plan`), or None when the run invoked nothing.

`publish_artifacts` turns it into Prefect artifacts under the flow run, visible in the
UI: a table of the invocations (key ``PIPELINE-invocations``) and a markdown summary
with the verdict, the cost, the static plan's cost and each video's answer
(``PIPELINE-summary``). `ArchiveProgress` keeps a progress artifact
(``PIPELINE-progress``) up to date while an archive run proceeds.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
    static_plan: Mapping[str, Any] | None = None,
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
        static_plan: The best static plan on the same work, as a dict.
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
        "videos_reused": sum(1 for v in videos if v.get("reused")),
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
        "static_plan": dict(static_plan) if static_plan else None,
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


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a report written by `write_report`.

    Raises:
        ConfigurationError: When the file is missing or is not a run report.
    """
    from llama_prefect.errors import ConfigurationError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(
            f"no run report at {path}; run `llama-prefect run` first or pass the "
            "report_path of a deployment's run"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"{path} is not a text file; pass a report written by `llama-prefect run` "
            "or the crossing flow"
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"{path} is a folder; pass the report file in it (report.json)"
        ) from None
    wanted = ("run", "videos", "invocations")
    if (
        not isinstance(data, dict)
        or data.get("format") != REPORT_FORMAT
        or not all(key in data for key in wanted)
    ):
        raise ConfigurationError(
            f"{path} is not a run report of format {REPORT_FORMAT}; pass a report "
            "written by `llama-prefect run` or the crossing flow"
        )
    return data


def summary_markdown(report: Mapping[str, Any]) -> str:
    """The run summary as markdown: the verdict, cost, static plan and answers."""
    run = report["run"]
    verdict = "met" if run["slo_met"] else "MISSED"
    reused = run.get("videos_reused", 0)
    lines = [
        f"## {report['pipeline']}: SLO {verdict}",
        "",
        f"- latency: {run['latency_s']:.1f} s of {run['slo_s']:.1f} s",
        f"- cost: ${run['cost_usd']:.6f} over {run['invocations']} invocations "
        f"({run['failed_invocations']} failed, {run['predicted_misses']} predicted "
        "misses)",
        f"- videos: {run['videos']} ({run['videos_failed']} failed, {reused} taken "
        "from earlier runs' results)",
        *_static_plan_lines(report.get("static_plan"), run),
        "",
        "| video | crowded | max people | people per window | from |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in report["videos"]:
        answer = entry.get("answer")
        name = Path(entry["video"]).name
        source = "earlier run" if entry.get("reused") else "this run"
        if answer is None:
            failed = "; ".join(entry["errors"])
            lines.append(f"| {name} | failed: {failed} | | | {source} |")
            continue
        windows = " ".join(f"{x:.1f}" for x in answer["people_per_window"])
        lines.append(
            f"| {name} | {'yes' if answer['crowded'] else 'no'} | "
            f"{answer['max_people']} | {windows} | {source} |"
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


def _static_plan_lines(
    plan: Mapping[str, Any] | None, run: Mapping[str, Any]
) -> list[str]:
    """The static plan's part of the summary."""
    if not plan:
        return ["- best static plan: none to compare (this run invoked nothing)"]
    fits = "meets" if plan["meets_slo"] else "no static plan meets"
    search = "exact" if plan["exact"] else "greedy, not exact"
    configs = "; ".join(f"{op}: `{key}`" for op, key in plan["configurations"].items())
    return [
        f"- best static plan: ${plan['cost_usd']:.6f} ({fits} the SLO by a latency "
        f"bound of {plan['latency_bound_s']:.1f} s; {plan['plans_considered']} "
        f"plan{'' if plan['plans_considered'] == 1 else 's'}, "
        f"{search}); this run's own choices priced the same way: "
        f"${plan['run_cost_same_model_usd']:.6f}",
        f"  - plan: {configs}",
        f"  - how: {plan['method']}",
    ]


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

    key = _artifact_key(report["pipeline"])
    create_table_artifact(
        invocation_rows(report),
        key=f"{key}-invocations",
        description="Every invocation: target, configuration, backend, predicted and "
        "observed latency, cost.",
    )
    create_markdown_artifact(
        summary_markdown(report),
        key=f"{key}-summary",
        description="SLO verdict, cost, the best static plan's cost, and each "
        "video's answer.",
    )


#: Callbacks ``(done, total)`` called in this process whenever an archive run's
#: progress changes; the command line hangs its progress bar here.
PROGRESS_LISTENERS: list[Callable[[int, int], None]] = []


class ArchiveProgress:
    """A progress artifact that follows an archive run, video by video.

    Every change is also passed to the callbacks in `PROGRESS_LISTENERS`.

    Args:
        pipeline: The pipeline's name (the artifact's key is ``PIPELINE-progress``).
        total: Videos in the archive.
        done: Videos already done when the run starts (results of earlier runs).
        publish: Create and update the Prefect artifact (False: only count).
    """

    def __init__(
        self, pipeline: str, total: int, done: int = 0, *, publish: bool = True
    ) -> None:
        self.total = total
        self.done = done
        self.artifact_id: Any = None
        if publish:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(
                self.percent,
                key=f"{_artifact_key(pipeline)}-progress",
                description=self._description(),
            )
        self._notify()

    @property
    def percent(self) -> float:
        """Share of the archive's videos done, in percent."""
        return 100.0 * self.done / self.total if self.total else 100.0

    def advance(self, videos: int = 1) -> None:
        """Counts `videos` more videos as done and updates the artifact."""
        self.done = min(self.total, self.done + videos)
        if self.artifact_id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                self.artifact_id, self.percent, description=self._description()
            )
        self._notify()

    def _notify(self) -> None:
        for listener in list(PROGRESS_LISTENERS):
            listener(self.done, self.total)

    def _description(self) -> str:
        return f"{self.done} of {self.total} videos done"


def _artifact_key(pipeline: str) -> str:
    return pipeline.lower().replace("_", "-")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
