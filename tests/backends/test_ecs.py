"""GPU work pools: the ECS job template with its GPU requirement, and the backend.

The template is rendered the way the ECS worker renders it (prefect-aws's own job
configuration and task-definition code, on Prefect's local server) and registered in
moto's ECS, which keeps GPU requirements. The backend's deployment runs come from a
stand-in launcher: a completed run executes the real remote-op flow body in-process
against moto's S3; the other runs end in the states a worker reports when it cannot
place a GPU task, never starts one, or runs past the timeout.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect.states import Completed, Crashed, Failed, Running, Scheduled

from llama_prefect.backends.base import RemoteCall
from llama_prefect.backends.ecs import (
    ECS_GPU,
    GPU_POOL,
    WorkPoolBackend,
    gpu_job_template,
    warm_gpu_pool,
)
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.errors import ConfigurationError, RemoteError, ReplanError
from llama_prefect.video.segments import VideoInfo, split

pytestmark = pytest.mark.aws

TEMPLATE_FILE = Path(__file__).parents[2] / "infra" / "ecs-gpu-job-template.json"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llama-prefect-gpu:latest"
INFO = VideoInfo(
    path="s3://bucket/v.mp4",
    fps=10.0,
    num_frames=40,
    width_px=768,
    height_px=576,
    codec="h264",
)


def _rendered(values):
    from prefect.client.schemas.objects import FlowRun
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

    template = json.loads(TEMPLATE_FILE.read_text())
    config = asyncio.run(ECSJobConfiguration.from_template_and_values(template, values))
    worker = ECSWorker(work_pool_name="llama-gpu")
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="remote-op-run")
    task_definition = worker._prepare_task_definition(config, "us-east-1", flow_run)
    worker._validate_task_definition(task_definition, config)
    request = worker._prepare_task_run_request(config, task_definition, "arn:td", True)
    return config, task_definition, request


def test_the_infra_template_is_the_generated_one():
    assert json.loads(TEMPLATE_FILE.read_text()) == gpu_job_template()


def test_the_template_offers_only_the_ec2_launch_type_and_a_gpu_count():
    props = gpu_job_template()["variables"]["properties"]
    assert props["launch_type"]["default"] == "EC2"
    assert props["launch_type"]["enum"] == ["EC2"]  # Fargate has no GPUs
    assert props["gpu_count"]["default"] == "1"
    assert (
        gpu_job_template(gpus=4)["variables"]["properties"]["gpu_count"]["default"]
        == "4"
    )


@pytest.mark.prefect
def test_the_rendered_job_asks_for_a_gpu_on_ec2(prefect_server, moto):
    _, task_definition, request = _rendered(
        {"image": IMAGE, "cluster": "llama-gpu", "gpu_count": "2"}
    )

    (container,) = task_definition["containerDefinitions"]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    assert container["image"] == IMAGE
    assert task_definition["requiresCompatibilities"] == ["EC2"]
    assert request["launchType"] == "EC2" and request["cluster"] == "llama-gpu"

    # ECS itself (moto) accepts the task definition and keeps the GPU requirement.
    ecs = moto.client("ecs")
    registered = ecs.register_task_definition(**task_definition)["taskDefinition"]
    kept = ecs.describe_task_definition(taskDefinition=registered["taskDefinitionArn"])[
        "taskDefinition"
    ]
    assert kept["containerDefinitions"][0]["resourceRequirements"] == [
        {"type": "GPU", "value": "2"}
    ]
    assert kept["requiresCompatibilities"] == ["EC2"]


@pytest.mark.prefect
def test_the_default_renders_one_gpu(prefect_server):
    _, task_definition, _ = _rendered({"image": IMAGE})
    resources = task_definition["containerDefinitions"][0]["resourceRequirements"]
    assert resources == [{"type": "GPU", "value": "1"}]


# -- the backend -----------------------------------------------------------------------


def _call(attempt=0):
    return RemoteCall(
        invocation_id=f"inv-{uuid.uuid4().hex[:6]}",
        op="split",
        function="llama_prefect.video.segments:split",
        kwargs={"info": INFO, "segment_s": 1.0},
        config=Configuration.of(ECS_GPU, {}),
        predicted_s=5.0,
        attempt=attempt,
    )


class Launcher:
    """Stands in for `run_deployment`: records the call, returns a flow run."""

    def __init__(self, state, run_body=False):
        self.state, self.run_body, self.calls = state, run_body, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self.run_body:
            from llama_prefect.flows.remote_op import remote_op

            remote_op.fn(**kwargs["parameters"])
        return SimpleNamespace(id=uuid.uuid4(), state=self.state)


def _backend(moto, launcher, **fields):
    staging = f"s3://{moto.new_bucket()}/staging"
    return WorkPoolBackend(staging_uri=staging, launcher=launcher, **fields)


def test_a_completed_run_returns_the_op_result_read_from_s3(moto):
    launcher = Launcher(Completed(), run_body=True)
    backend = _backend(moto, launcher, job_variables={"gpu_count": "1"})
    call = _call()

    outcome = backend.run(call)

    assert outcome.value == split(INFO, 1.0)
    (sent,) = launcher.calls
    assert sent["name"] == "llama-remote-op/ecs-gpu"
    assert sent["job_variables"] == {"gpu_count": "1"}
    params = sent["parameters"]
    assert params["request_uri"].startswith(
        backend.staging_uri + "/" + call.invocation_id
    )
    held_s = outcome.details["held_s"]
    expected = PriceCatalog.load().cost_usd(ECS_GPU, held_s)
    assert outcome.cost_usd == pytest.approx(expected)


def test_no_gpu_capacity_marks_the_pool_unavailable_and_replans(moto, caplog):
    state = Crashed(message="Failed to run ECS task: RESOURCE:GPU")
    backend = _backend(moto, Launcher(state), cooldown_s=120.0)
    with pytest.raises(ReplanError, match="RESOURCE:GPU") as caught:
        backend.run(_call())
    assert caught.value.whole_backend and caught.value.cooldown_s == 120.0
    assert "no capacity" in caplog.text


def test_a_run_no_worker_picks_up_replans_the_whole_pool(moto):
    backend = _backend(moto, Launcher(Scheduled()))
    with pytest.raises(ReplanError, match="no worker") as caught:
        backend.run(_call())
    assert caught.value.whole_backend


def test_a_run_past_the_timeout_replans_only_this_invocation(moto):
    backend = _backend(moto, Launcher(Running()), timeout_s=5.0)
    with pytest.raises(ReplanError, match="did not finish") as caught:
        backend.run(_call())
    assert not caught.value.whole_backend


def test_a_failed_flow_run_is_a_remote_error(moto):
    backend = _backend(moto, Launcher(Failed(message="S3 refused")))
    with pytest.raises(RemoteError, match="S3 refused"):
        backend.run(_call())


def test_a_pool_needs_a_staging_prefix_and_the_warm_variant_starts_fast():
    with pytest.raises(ConfigurationError, match="staging_uri"):
        WorkPoolBackend()
    warm = warm_gpu_pool("s3://bucket/staging")
    assert warm.name == GPU_POOL and warm.deployment == "llama-remote-op/gpu-pool"
    assert warm.startup_s < WorkPoolBackend(staging_uri="s3://b/s").startup_s
    assert PriceCatalog.load().price(GPU_POOL).usd_per_slot_s > 0
