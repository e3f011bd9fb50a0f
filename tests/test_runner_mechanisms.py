"""The scheduler's mechanisms inside Prefect task runs, through LlamaTaskRunner.

Each invocation stays one task run. A straggler gets a duplicate whose result wins;
the task's own retries get a re-planned attempt; invocations committed together in a
batched call share one call of the op's batched body.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import TransientError
from llama_prefect.retries import retry_transient
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pytestmark = pytest.mark.prefect

BATCHED: list[int] = []


def _batch_body(inputs: list[dict]) -> list[int]:
    BATCHED.append(len(inputs))
    return [10 * p["x"] for p in inputs]


def _pipeline() -> Pipeline:
    p = Pipeline("mech")
    p.add_op(OpSpec("slow", unit="item", group_of=lambda params: "g"))
    p.add_op(OpSpec("flaky", unit="item", group_of=lambda params: "g"))
    p.add_op(
        OpSpec(
            "tens",
            knobs={"call_batch": (1, 4)},
            unit="item",
            group_of=lambda params: "g",
            batch_fn=_batch_body,
        )
    )
    return p


MECH = _pipeline()
ONE = Configuration.of("local-cpu", {})


def _profiles(path: Path) -> Path:
    store = ProfileStore("mech")
    store.seed("slow", ONE, 0.1)
    store.seed("flaky", ONE, 0.01)
    # A call of four costs as much as two single calls: batching pays.
    store.seed("tens", Configuration.of("local-cpu", {"call_batch": 1}), 0.2)
    store.seed("tens", Configuration.of("local-cpu", {"call_batch": 4}), 0.1)
    return store.save(path)


def _mark(name):
    def mark(fn):
        setattr(fn, OP_ATTRIBUTE, name)
        return fn

    return mark


@task(name="slow")
@_mark("slow")
def slow(x: int) -> int:
    time.sleep(0.1)
    return x + 1


TRIES: list[int] = []
LOCK = threading.Lock()


@task(name="flaky", retries=1, retry_condition_fn=retry_transient)
@_mark("flaky")
def flaky(x: int) -> int:
    with LOCK:
        TRIES.append(x)
        first = TRIES.count(x) == 1
    if first:
        raise TransientError(f"worker lost on {x}")
    return x


@task(name="tens")
@_mark("tens")
def tens(x: int, call_batch: int = 1) -> int:
    return 10 * x


@flow
def mech_flow(kind: str, n: int) -> dict:
    op = {"slow": slow, "flaky": flaky, "tens": tens}[kind]
    values = [f.result() for f in [op.submit(i) for i in range(n)]]
    return {"values": values, "records": FlowRunContext.get().task_runner.records()}


def _run(tmp_path, kind, n, cpu_slots=2, **kw):
    runner = LlamaTaskRunner(
        MECH, profile_path=_profiles(tmp_path / "p.json"), cpu_slots=cpu_slots, **kw
    )
    return mech_flow.with_options(task_runner=runner)(kind=kind, n=n)


def test_a_straggler_gets_a_duplicate_whose_result_wins(prefect_server, tmp_path):
    # Every first attempt straggles 1000x (100 s) unless it is cancelled; its
    # duplicate, planned after the straggler time (1 s at the least) on one of the two
    # free slots, is not injected. The run ends only if the duplicate wins and the
    # straggler's wait is cut short when it is cancelled.
    out = _run(
        tmp_path,
        "slow",
        2,
        cpu_slots=4,
        inject_straggler_rate=1.0,
        inject_straggler_factor=1000.0,
        slo_s=600.0,
    )
    assert out["values"] == [1, 2]
    for record in out["records"]:
        assert record["state"] == "done"
        assert (record["duplicates"], record["attempts"]) == (1, 2)
        assert record["injected"] == "straggler"
        assert record["won_by"] == "duplicate"
    with get_client(sync_client=True) as client:
        runs = {str(tr.id): tr for tr in client.read_task_runs()}
    for record in out["records"]:  # one task run each, completed once
        run = runs[record["task_run_id"]]
        assert (run.state.type.value, run.run_count) == ("COMPLETED", 1)


def test_without_duplication_the_straggler_is_waited_for(prefect_server, tmp_path):
    # 20x: the straggler takes 2 s, past the 1 s at which it would be duplicated.
    out = _run(
        tmp_path,
        "slow",
        1,
        inject_straggler_rate=1.0,
        inject_straggler_factor=20.0,
        duplication=False,
    )
    (record,) = out["records"]
    assert (record["duplicates"], record["attempts"]) == (0, 1)
    assert record["won_by"] == "first" and out["values"] == [1]


def test_the_tasks_own_retry_runs_a_re_planned_attempt_in_the_same_task_run(
    prefect_server, tmp_path
):
    TRIES.clear()
    out = _run(tmp_path, "flaky", 3)
    assert out["values"] == [0, 1, 2]
    assert sorted(TRIES) == [0, 0, 1, 1, 2, 2]
    for record in out["records"]:
        assert (record["state"], record["attempts"], record["retries"]) == (
            "done",
            2,
            1,
        )
        assert record["won_by"] == "retry"  # planned again, not the first re-run
    with get_client(sync_client=True) as client:
        runs = {str(tr.id): tr for tr in client.read_task_runs()}
    for record in out["records"]:  # Prefect's own retry: one task run, run twice
        run = runs[record["task_run_id"]]
        assert (run.state.type.value, run.run_count) == ("COMPLETED", 2)


def test_invocations_committed_together_share_one_batched_call(
    prefect_server, tmp_path
):
    BATCHED.clear()
    out = _run(tmp_path, "tens", 4, slo_s=600.0)
    assert out["values"] == [0, 10, 20, 30]
    assert BATCHED == [4]
    assert all(r["batched_with"] == 4 for r in out["records"])
    assert all(r["configuration"] == {"call_batch": 4} for r in out["records"])


def test_without_batching_each_invocation_runs_alone(prefect_server, tmp_path):
    BATCHED.clear()
    out = _run(tmp_path, "tens", 4, batching=False)
    assert out["values"] == [0, 10, 20, 30]
    assert BATCHED == []
    assert all(r["batched_with"] == 1 for r in out["records"])


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def _log_decisions(name: str, level: int, decisions: list[tuple[str, bool]]) -> list:
    """The (level, message) lines a fresh runner logs for `decisions` of one op."""
    log = logging.getLogger(name)
    log.setLevel(level)
    lines = _Lines()
    log.addHandler(lines)
    runner = LlamaTaskRunner(_pipeline(), save_profiles=False)
    pending = SimpleNamespace(run_logger=log)
    try:
        for kind, miss in decisions:
            runner._log_decision(_decision(kind, miss=miss), pending)  # type: ignore[arg-type]
    finally:
        log.removeHandler(lines)
    return lines.lines


def _decision(kind: str, *, miss: bool = False) -> Any:
    plan = SimpleNamespace(
        config=Configuration.of("local-cpu", {"mode": "a"}),
        target_s=2.0,
        time_left_s=30.0,
        predicted_s=3.0 if miss else 1.0,
        cost_usd=0.0001,
        predicted_miss=miss,
    )
    return SimpleNamespace(plan=plan, kind=kind, op="noop")


def test_decisions_log_at_info_only_when_they_are_news():
    decisions = [
        ("first", False),
        ("first", True),
        ("first", True),  # the op's second predicted miss: no longer news
        ("duplicate", False),
    ]
    lines = _log_decisions("test-decisions", logging.DEBUG, decisions)
    levels = [level for level, _ in lines]
    assert levels == [logging.DEBUG, logging.INFO, logging.DEBUG, logging.INFO]
    assert "mode=a, predicted 1.00 s" in lines[0][1]
    assert lines[1][1].endswith("(predicted miss)")
    assert lines[2][1].endswith("(predicted miss)")
    assert lines[3][1].endswith("(duplicate)")


def test_a_quiet_logger_builds_no_line_for_a_routine_decision():
    decisions = [("first", False), ("retry", False)]
    lines = _log_decisions("test-decisions-quiet", logging.INFO, decisions)
    assert [level for level, _ in lines] == [logging.INFO]
