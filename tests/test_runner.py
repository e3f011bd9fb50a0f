"""LlamaTaskRunner through Prefect's local server on a toy pipeline.

The toy pipeline has a source op, a `work` op with a slow-but-cheap and a
fast-but-costly configuration, and a gather op. Its profiles are seeded with the true
latencies, so the choice under a loose and a tight SLO is known in advance.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pytestmark = pytest.mark.prefect

SLOW_S_PER_UNIT = 0.02  # one slot: cost 0.02 slot-seconds per unit
FAST_S_PER_UNIT = 0.015  # two slots: cost 0.03 slot-seconds per unit, but faster


def _toy_pipeline() -> Pipeline:
    p = Pipeline("toy")
    p.add_op(OpSpec("source", unit="item", group_of=lambda params: "g"))
    p.add_op(
        OpSpec(
            "work",
            knobs={"mode": ("slow", "fast"), "threads": (1, 2)},
            units_of=lambda params: params["units"],
            group_of=lambda params: "g",
        )
    )
    p.add_op(OpSpec("total", unit="item", gather=True, group_of=lambda params: "g"))
    p.add_edge("source", "work", fanout=4)
    p.add_edge("work", "total")
    return p


TOY = _toy_pipeline()
SLOW = Configuration.of("local-cpu", {"mode": "slow", "threads": 1})
FAST = Configuration.of("local-cpu", {"mode": "fast", "threads": 2})


def _seed(path: Path) -> Path:
    store = ProfileStore("toy")
    store.seed("source", Configuration.of("local-cpu", {}), 0.001)
    store.seed("total", Configuration.of("local-cpu", {}), 0.001)
    store.seed("work", SLOW, SLOW_S_PER_UNIT)
    store.seed("work", FAST, FAST_S_PER_UNIT)
    store.observe_units("work", 10)
    return store.save(path)


def _mark(name):
    def mark(fn):
        setattr(fn, OP_ATTRIBUTE, name)
        return fn

    return mark


@task(name="source")
@_mark("source")
def source(n: int) -> list[int]:
    return [10] * n


@task(name="work", task_run_name="work-{index} {mode} t{threads}")
@_mark("work")
def work(index: int, units: int, mode: str = "slow", threads: int = 1) -> dict:
    per_unit = SLOW_S_PER_UNIT if mode == "slow" else FAST_S_PER_UNIT
    time.sleep(per_unit * units)
    return {"mode": mode, "threads": threads}


@task(name="total")
@_mark("total")
def total(values: list[dict]) -> int:
    return len(values)


@task(name="flaky", retries=1, retry_delay_seconds=0)
def flaky(attempts: list[int]) -> int:
    attempts.append(1)
    if len(attempts) < 2:
        raise RuntimeError("first attempt fails")
    return len(attempts)


@flow
def toy_flow(n: int = 4, slo_s: float = 60.0) -> dict:
    items = source.submit(n).result()
    futures = [work.submit(i, units) for i, units in enumerate(items)]
    values = [f.result() for f in futures]
    count = total.submit(values).result()
    runner = FlowRunContext.get().task_runner
    return {
        "values": values,
        "count": count,
        "records": runner.records(),
        "flow_run_id": str(FlowRunContext.get().flow_run.id),
    }


def _run(tmp_path: Path, slo_s: float, n: int = 4) -> dict:
    runner = LlamaTaskRunner(TOY, profile_path=_seed(tmp_path / "p.json"), cpu_slots=2)
    return toy_flow.with_options(task_runner=runner)(n=n, slo_s=slo_s)


def test_loose_slo_runs_every_work_invocation_on_the_cheap_configuration(
    prefect_server, tmp_path
):
    out = _run(tmp_path, slo_s=600.0)
    assert out["count"] == 4
    assert out["values"] == [{"mode": "slow", "threads": 1}] * 4
    work_records = [r for r in out["records"] if r["op"] == "work"]
    assert len(work_records) == 4
    assert all(r["configuration"] == SLOW.as_dict() for r in work_records)
    assert all(r["target_s"] >= r["predicted_s"] for r in work_records)


def test_tight_slo_on_a_lone_invocation_takes_the_fast_configuration(
    prefect_server, tmp_path
):
    out = _run(tmp_path, slo_s=0.05, n=1)
    (record,) = [r for r in out["records"] if r["op"] == "work"]
    assert record["configuration"] == FAST.as_dict()
    assert record["predicted_miss"]
    assert out["values"] == [{"mode": "fast", "threads": 2}]


def test_tight_slo_on_a_full_pool_keeps_the_configuration_that_ends_the_work_first(
    prefect_server, tmp_path
):
    # Four invocations, two slots, no target can be met. Fast on two slots finishes
    # one in 0.15 s but the four in 4 x 0.15 = 0.6 s; slow on one slot each finishes
    # them in 2 x 0.2 = 0.4 s, so slow is taken while two or more are left.
    out = _run(tmp_path, slo_s=0.05)
    work_records = [r for r in out["records"] if r["op"] == "work"]
    assert all(r["predicted_miss"] for r in work_records)
    assert all(r["configuration"] == SLOW.as_dict() for r in work_records[:2])


def test_decisions_reach_task_run_names_and_records_cover_every_invocation(
    prefect_server, tmp_path
):
    out = _run(tmp_path, slo_s=600.0)
    ops = sorted(r["op"] for r in out["records"])
    assert ops == ["source", "total", "work", "work", "work", "work"]
    with get_client(sync_client=True) as client:
        names = {str(tr.id): tr.name for tr in client.read_task_runs()}
    for record in out["records"]:
        if record["op"] != "work":
            continue
        knobs = record["configuration"]
        assert record["task_run_id"] in names
        assert f"{knobs['mode']} t{knobs['threads']}" in names[record["task_run_id"]]
        assert record["observed_s"] > 0 and record["cost_usd"] > 0
        # The body's own seconds are a part of what was observed from commit on.
        assert 0 < record["body_s"] <= record["observed_s"]


def test_profiles_learn_from_the_run_and_are_saved(prefect_server, tmp_path):
    _run(tmp_path, slo_s=600.0)
    store = ProfileStore.load(tmp_path / "p.json")
    assert store.profile("work", SLOW).observations == 4


def test_tasks_outside_the_pipeline_run_untuned_with_prefect_retries(
    prefect_server, tmp_path
):
    @flow
    def with_flaky() -> int:
        return flaky.submit([]).result()

    runner = LlamaTaskRunner(TOY, profile_path=_seed(tmp_path / "p.json"))
    assert with_flaky.with_options(task_runner=runner)() == 2


def test_failed_invocation_is_recorded_and_raises_from_its_future(
    prefect_server, tmp_path
):
    @task(name="work")
    @_mark("work")
    def broken(index: int, units: int, mode: str = "slow", threads: int = 1) -> None:
        raise ValueError(f"bad input {index}")

    @flow
    def failing() -> list:
        fut = broken.submit(0, 10)
        with pytest.raises(ValueError, match="bad input 0"):
            fut.result()
        return FlowRunContext.get().task_runner.records()

    runner = LlamaTaskRunner(TOY, profile_path=_seed(tmp_path / "p.json"))
    records = failing.with_options(task_runner=runner)()
    assert [r["state"] for r in records] == ["failed"]
    assert "bad input 0" in records[0]["error"]


@task(name="work", task_run_name="chain-{index} {mode} t{threads}")
@_mark("work")
def chained_work(index: int, units: int, mode: str = "slow", threads: int = 1) -> str:
    per_unit = 0.05 if mode == "slow" else 0.03
    time.sleep(per_unit * units)
    return mode


@flow
def chain_flow(slo_s: float = 2.5) -> list[dict]:
    previous = None
    for index in range(6):
        previous = chained_work.submit(
            index, 10, wait_for=[previous] if previous else None
        )
    previous.result()
    return FlowRunContext.get().task_runner.records()


def test_one_run_gives_later_invocations_tighter_targets_and_faster_configs(
    prefect_server, tmp_path
):
    # Six 10-unit invocations in a chain under a 2.5 s SLO. Slow: 0.5 s on one slot
    # ($ for 0.5 slot-s); fast: 0.3 s on two slots (0.6 slot-s). The first sees
    # 2.5 s for 6 x 0.5 / 2 slots of work ahead: target 2.5 x 0.5 / 1.5 = 0.83 s,
    # so slow fits and is cheaper. By the last, under 0.5 s is left: fast.
    store = ProfileStore("toy")
    store.seed("source", Configuration.of("local-cpu", {}), 0.001)
    store.seed("total", Configuration.of("local-cpu", {}), 0.001)
    store.seed("work", SLOW, 0.05)
    store.seed("work", FAST, 0.03)
    store.observe_units("work", 10)
    path = store.save(tmp_path / "p.json")
    runner = LlamaTaskRunner(TOY, profile_path=path, cpu_slots=2, feedback=False)
    records = chain_flow.with_options(task_runner=runner)(slo_s=2.5)
    records.sort(key=lambda r: r["started_s"])
    first, last = records[0], records[-1]
    assert first["configuration"] == SLOW.as_dict()
    assert last["configuration"] == FAST.as_dict()
    assert last["target_s"] < first["target_s"]
    assert first["target_s"] >= first["predicted_s"]
    assert last["target_s"] < 0.5  # the slow configuration no longer fits
