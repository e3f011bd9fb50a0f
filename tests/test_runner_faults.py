"""Injected faults through LlamaTaskRunner, and which failures the tasks retry.

The scheduler draws which attempts get a fault; the runner makes it happen inside the
task run. With every attempt drawn (rate 1.0), every invocation must still give its
result: a failure is retried by the task's own retries, a straggler only takes longer.
A deterministic failure is never retried, a transient one is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow, task
from prefect.context import FlowRunContext

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import VideoError
from llama_prefect.retries import retry_transient
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pytestmark = pytest.mark.prefect

RETRY = {"retries": 2, "retry_condition_fn": retry_transient}


def _pipeline() -> Pipeline:
    p = Pipeline("faulty")
    p.add_op(OpSpec("double", unit="item", group_of=lambda params: "g"))
    p.add_op(OpSpec("broken", unit="item", group_of=lambda params: "g"))
    return p


FAULTY = _pipeline()


def _profiles(path: Path) -> Path:
    store = ProfileStore("faulty")
    for op in ("double", "broken"):
        store.seed(op, Configuration.of("local-cpu", {}), 0.001)
    return store.save(path)


def _mark(name):
    def mark(fn):
        setattr(fn, OP_ATTRIBUTE, name)
        return fn

    return mark


@task(name="double", **RETRY)
@_mark("double")
def double(x: int) -> int:
    return 2 * x


CALLS: list[str] = []


@task(name="broken", **RETRY)
@_mark("broken")
def broken(kind: str) -> None:
    CALLS.append(kind)
    if kind == "video":
        raise VideoError("clip.mp4 is empty (0 bytes)")
    raise OSError("the disk went away")


@flow
def double_flow(n: int) -> dict:
    futures = [double.submit(i) for i in range(n)]
    values = [f.result() for f in futures]
    return {"values": values, "records": FlowRunContext.get().task_runner.records()}


@flow
def broken_flow() -> dict:
    for kind in ("video", "io"):
        broken.submit(kind).wait()
    return {"records": FlowRunContext.get().task_runner.records()}


def _runner(tmp_path: Path, **faults: float) -> LlamaTaskRunner:
    return LlamaTaskRunner(
        FAULTY, profile_path=_profiles(tmp_path / "p.json"), cpu_slots=2, **faults
    )


def test_every_injected_failure_is_retried_and_no_result_is_lost(
    prefect_server, tmp_path
):
    runner = _runner(tmp_path, inject_failure_rate=1.0)

    out = double_flow.with_options(task_runner=runner)(n=6)

    assert out["values"] == [0, 2, 4, 6, 8, 10]
    assert len(out["records"]) == 6
    for record in out["records"]:
        assert (record["injected"], record["retries"], record["state"]) == (
            "failure",
            1,
            "done",
        )


def test_injected_stragglers_still_give_their_results(prefect_server, tmp_path):
    runner = _runner(tmp_path, inject_straggler_rate=1.0, inject_straggler_factor=2.0)

    out = double_flow.with_options(task_runner=runner)(n=3)

    assert out["values"] == [0, 2, 4]
    assert [r["injected"] for r in out["records"]] == ["straggler"] * 3
    assert all(r["retries"] == 0 for r in out["records"])


def test_without_injection_nothing_is_injected(prefect_server, tmp_path):
    out = double_flow.with_options(task_runner=_runner(tmp_path))(n=2)

    assert [r["injected"] for r in out["records"]] == [None, None]


def test_a_deterministic_failure_is_tried_once_and_a_transient_one_three_times(
    prefect_server, tmp_path
):
    CALLS.clear()

    out = broken_flow.with_options(task_runner=_runner(tmp_path))()

    assert CALLS == ["video", "io", "io", "io"]
    by_type = {r["error_type"]: r for r in out["records"]}
    assert by_type["VideoError"]["deterministic"] is True
    assert by_type["VideoError"]["retries"] == 0
    assert by_type["OSError"]["deterministic"] is False
    assert by_type["OSError"]["retries"] == 2
    assert all(r["state"] == "failed" for r in out["records"])
