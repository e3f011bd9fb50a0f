"""Remote invocations through the runner: the proxy body, re-planning, costs.

The Lambda backend here is the real `LambdaBackend`; only its boto3 client is replaced
by an in-process stand-in that runs the real handler on the JSON payload (as the
Lambda runtime would) or answers as a throttled Lambda does. The task engine, the
scheduler and the runner are the real ones, on Prefect's local server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_moto import InProcessLambda
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from llama_prefect import wire
from llama_prefect.backends.aws_lambda import LambdaBackend
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import LlamaError, VideoError
from llama_prefect.proxy import proxy_task
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pytestmark = [pytest.mark.prefect, pytest.mark.aws]

BILLED_MS = 250


def _pipeline() -> Pipeline:
    p = Pipeline("remote-toy")
    p.add_op(
        OpSpec(
            "square",
            knobs={"mode": ("plain",)},
            backends=("local-cpu", "lambda"),
            backend_knobs={"lambda": {"memory_mb": (1024,)}},
            group_of=lambda params: "g",
        )
    )
    return p


PIPELINE = _pipeline()
LOCAL = Configuration.of("local-cpu", {"mode": "plain"})
REMOTE = Configuration.of("lambda", {"mode": "plain", "memory_mb": 1024})


def _seed(path: Path) -> Path:
    # Lambda is seeded faster and cheaper, so every invocation is planned there.
    store = ProfileStore("remote-toy")
    store.seed("square", LOCAL, 0.5)
    store.seed("square", REMOTE, 0.05)
    return store.save(path)


def _mark(fn):
    setattr(fn, OP_ATTRIBUTE, "square")
    return fn


@task(name="square", task_run_name="square-{x} {mode}")
@_mark
def square(x: int, mode: str = "plain") -> dict:
    if x < 0:
        raise VideoError(f"input {x} is broken")
    return {"x": x, "square": x * x}


def FakeLambda(throttle_first: int = 0) -> InProcessLambda:  # noqa: N802
    return InProcessLambda(billed_ms=BILLED_MS, throttle_first=throttle_first)


@flow
def squares(xs: list[int]) -> dict:
    futures = [square.submit(x) for x in xs]
    values = []
    for fut in futures:
        try:
            values.append(fut.result())
        except LlamaError as exc:  # a broken input, or no backend left
            values.append(str(exc))
    return {"values": values, "records": FlowRunContext.get().task_runner.records()}


def _run(tmp_path, fake, xs, monkeypatch):
    monkeypatch.setenv(wire.MODULES_ENV, square.fn.__module__)
    lam = LambdaBackend(client=fake, capacity=4, cooldown_s=0.3)
    runner = LlamaTaskRunner(
        PIPELINE,
        profile_path=_seed(tmp_path / "p.json"),
        cpu_slots=1,
        backends=[lam],
        slo_s=60.0,
        # These tests count Lambda's requests; on a loaded machine a slow first
        # try would get a straggler duplicate and one request more.
        duplication=False,
    )
    return squares.with_options(task_runner=runner)(xs=xs)


def test_invocations_run_on_lambda_with_their_billed_cost(
    prefect_server, tmp_path, monkeypatch
):
    fake = FakeLambda()
    out = _run(tmp_path, fake, [1, 2, 3], monkeypatch)

    assert out["values"] == [{"x": x, "square": x * x} for x in (1, 2, 3)]
    assert len(fake.payloads) == 3
    assert {p["function"] for p in fake.payloads} == {f"{square.fn.__module__}:square"}
    billed = BILLED_MS / 1000 * 1.0 * 0.0000166667 + 0.0000002
    for record in out["records"]:
        assert record["backend"] == "lambda" and record["replans"] == []
        assert record["cost_usd"] == pytest.approx(billed)
        assert record["backend_details"]["billed_ms"] == BILLED_MS


def test_a_throttled_invocation_is_planned_again_and_not_lost(
    prefect_server, tmp_path, monkeypatch
):
    fake = FakeLambda(throttle_first=1)
    out = _run(tmp_path, fake, [1, 2, 3, 4], monkeypatch)

    assert out["values"] == [{"x": x, "square": x * x} for x in (1, 2, 3, 4)]
    records = out["records"]
    assert len(records) == 4 and all(r["state"] == "done" for r in records)
    replanned = [r for r in records if r["replans"]]
    assert len(replanned) == 1
    assert replanned[0]["replans"][0]["backend"] == "lambda"
    assert "TooManyRequestsException" in replanned[0]["replans"][0]["error"]
    # During the cool-down Lambda is not planned on: the re-plan went local.
    assert replanned[0]["backend"] == "local-cpu"
    with get_client(sync_client=True) as client:
        states = {
            str(tr.id): tr.state.type.value
            for tr in client.read_task_runs()
            if tr.name.startswith("square-")
        }
    assert all(states[r["task_run_id"]] == "COMPLETED" for r in records)


def test_an_op_error_on_lambda_fails_the_task_run_without_a_replan(
    prefect_server, tmp_path, monkeypatch
):
    fake = FakeLambda()
    out = _run(tmp_path, fake, [-1, 5], monkeypatch)

    assert "input -1 is broken" in out["values"][0]
    assert out["values"][1] == {"x": 5, "square": 25}
    failed = [r for r in out["records"] if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["replans"] == []
    assert len(fake.payloads) == 2


def test_a_proxy_task_keeps_the_name_signature_and_source_of_the_task():
    import inspect

    calls = []
    clone = proxy_task(square, lambda **kw: calls.append(kw) or {"x": 0})
    assert clone.name == square.name and clone.task_key == square.task_key
    assert inspect.signature(clone.fn) == inspect.signature(square.fn)
    assert inspect.getsource(clone.fn) == inspect.getsource(square.fn)
    assert clone.fn(x=3, mode="plain") == {"x": 0} and calls == [
        {"x": 3, "mode": "plain"}
    ]
    assert square.fn(x=3) == {"x": 3, "square": 9}  # the original is untouched


def test_a_proxy_carries_its_signature_so_prefect_need_not_unwrap_it():
    import inspect

    from prefect.utilities.callables import parameters_to_args_kwargs

    clone = proxy_task(square, lambda **kw: kw)
    # Prefect binds every call by the proxy's own signature as well as the
    # wrapped one's; carried, the proxy's is the function's, read as it is.
    own = inspect.signature(clone.fn, follow_wrapped=False)
    assert own == inspect.signature(square.fn)
    args, kwargs = parameters_to_args_kwargs(clone.fn, {"x": 3, "mode": "m"})
    assert clone.fn(*args, **kwargs) == {"x": 3, "mode": "m"}


def _runner(tmp_path, backends, store: ProfileStore, pipeline=PIPELINE):
    return LlamaTaskRunner(
        pipeline,
        profile_path=store.save(tmp_path / "p.json"),
        cpu_slots=1,
        backends=backends,
        slo_s=60.0,
    )


def test_an_invocation_past_lambdas_time_limit_is_replanned_locally(
    prefect_server, tmp_path, monkeypatch
):
    monkeypatch.setenv(wire.MODULES_ENV, square.fn.__module__)
    fake = FakeLambda()
    lam = LambdaBackend(client=fake, timeout_s=0.01)  # every plan predicts more
    store = ProfileStore.load(_seed(tmp_path / "seed.json"))
    out = squares.with_options(task_runner=_runner(tmp_path, [lam], store))(xs=[4])

    assert out["values"] == [{"x": 4, "square": 16}]
    (record,) = out["records"]
    assert record["backend"] == "local-cpu" and record["state"] == "done"
    assert "past the function's" in record["replans"][0]["error"]
    assert fake.payloads == []  # never sent


def _lambda_only() -> Pipeline:
    p = Pipeline("remote-toy")
    p.add_op(
        OpSpec(
            "square",
            knobs={"mode": ("plain",)},
            backends=("lambda",),
            backend_knobs={"lambda": {"memory_mb": (1024,)}},
            group_of=lambda params: "g",
        )
    )
    return p


def test_with_no_backend_left_the_task_run_fails_with_the_reason(
    prefect_server, tmp_path, monkeypatch
):
    monkeypatch.setenv(wire.MODULES_ENV, square.fn.__module__)
    lam = LambdaBackend(client=FakeLambda(), timeout_s=0.01)
    store = ProfileStore("remote-toy")
    store.seed("square", REMOTE, 0.05)
    runner = _runner(tmp_path, [lam], store, pipeline=_lambda_only())
    out = squares.with_options(task_runner=runner)(xs=[4])

    assert "past the function's" in out["values"][0]
    (record,) = out["records"]
    assert record["state"] == "failed" and len(record["replans"]) == 1


def test_no_gpu_capacity_cools_the_pool_down_and_the_invocation_runs_locally(
    prefect_server, tmp_path, monkeypatch, moto
):
    from types import SimpleNamespace

    from prefect.states import Crashed

    from llama_prefect.backends.ecs import WorkPoolBackend

    monkeypatch.setenv(wire.MODULES_ENV, square.fn.__module__)
    launches = []

    def no_capacity(**kwargs):
        launches.append(kwargs)
        state = Crashed(message="Failed to run ECS task: RESOURCE:GPU")
        return SimpleNamespace(id="run-1", state=state)

    pool = WorkPoolBackend(
        staging_uri=f"s3://{moto.new_bucket()}/staging",
        launcher=no_capacity,
        startup_s=0.0,
        cooldown_s=60.0,
    )
    pipeline = Pipeline("remote-toy")
    pipeline.add_op(
        OpSpec(
            "square",
            knobs={"mode": ("plain",)},
            backends=("local-cpu", "ecs-gpu"),
            group_of=lambda params: "g",
        )
    )
    store = ProfileStore("remote-toy")
    store.seed("square", LOCAL, 5.0)
    store.seed("square", Configuration.of("ecs-gpu", {"mode": "plain"}), 0.01)
    runner = _runner(tmp_path, [pool], store, pipeline=pipeline)
    out = squares.with_options(task_runner=runner)(xs=[2, 3])

    assert out["values"] == [{"x": 2, "square": 4}, {"x": 3, "square": 9}]
    assert len(launches) == 1  # the pool cooled down after the first refusal
    by_backend = sorted(r["backend"] for r in out["records"])
    assert by_backend == ["local-cpu", "local-cpu"]
    refused = [r for r in out["records"] if r["replans"]]
    assert len(refused) == 1 and "RESOURCE:GPU" in refused[0]["replans"][0]["error"]
