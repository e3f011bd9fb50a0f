"""GPU work pools: an ECS pool on EC2 GPU instances, or a process pool on a GPU machine.

Each invocation becomes one run of the ``llama-remote-op`` deployment
(``flows/remote_op.py``) on the pool, started with Prefect's `run_deployment`. The
request and the response travel through the backend's S3 staging prefix; the calling
flow keeps the invocation's own task engine, so its task run looks like any other.

* An ``ecs`` pool runs each flow run as an ECS task on the EC2 launch type (Fargate
  has no GPUs). `gpu_job_template` builds its base job template from prefect-aws's
  own default, with a GPU ``resourceRequirements`` entry on the container and EC2 as
  the only launch type; ``infra/ecs-gpu-job-template.json`` is that template.
* A ``process`` pool on a GPU machine is the warm variant: the same deployment, no
  container to start. Give it its own backend name (default ``gpu-pool``) and a
  small `startup_s`.

Start-up latency is part of the backend (`startup_s`): the optimizer adds it to every
prediction on the pool, so the pool is chosen only where the GPU's speed pays for it.
An invocation is charged for the seconds it holds the GPU, start-up included, at the
price file's per-second price.

A placement failure (no GPU capacity: ``RESOURCE:GPU``, no container instances), a
crashed flow run, or a flow run that no worker starts in time ends in `ReplanError`
for the whole backend; it cools down for `cooldown_s` and the invocation is planned
again elsewhere. A run that started but did not finish within `timeout_s` is
cancelled and the invocation avoids the pool from then on.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llama_prefect.backends.base import RemoteBackend, RemoteCall, RemoteOutcome
from llama_prefect.backends.remote import build_request, read_response, staging_key
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError, RemoteError, ReplanError

logger = logging.getLogger(__name__)

ECS_GPU = "ecs-gpu"
GPU_POOL = "gpu-pool"
#: The deployment every pool runs (flow name / deployment name).
REMOTE_FLOW = "llama-remote-op"
#: Words in a crashed flow run's message that mean "no capacity to place it".
PLACEMENT_FAILURES = (
    "RESOURCE:GPU",
    "RESOURCE:MEMORY",
    "RESOURCE:CPU",
    "No Container Instances",
    "does not appear to have any container instances",
    "Capacity is unavailable",
    "InsufficientInstanceCapacity",
)


def gpu_job_template(gpus: int = 1) -> dict[str, Any]:
    """The base job template of an ECS work pool whose containers get GPUs.

    Starts from prefect-aws's default template and changes only what GPUs need:
    the container asks for ``{{ gpu_count }}`` GPUs in ``resourceRequirements``,
    the task definition is EC2-compatible, and the launch type is EC2 (the only
    choice offered). Use it with ``prefect work-pool create --type ecs
    --base-job-template infra/ecs-gpu-job-template.json``.

    Args:
        gpus: Default number of GPUs per flow run's container.
    """
    from prefect_aws.workers.ecs_worker import ECSWorker

    template = copy.deepcopy(ECSWorker.get_default_base_job_template())
    job = template["job_configuration"]
    container = job["task_definition"]["containerDefinitions"][0]
    container["resourceRequirements"] = [{"type": "GPU", "value": "{{ gpu_count }}"}]
    job["task_definition"]["requiresCompatibilities"] = ["EC2"]
    props = template["variables"]["properties"]
    props["launch_type"].update(default="EC2", enum=["EC2"])
    props["launch_type"]["description"] = (
        "ECS launch type. Only EC2 is offered: Fargate has no GPUs. A capacity "
        "provider strategy, when set, replaces it."
    )
    props["gpu_count"] = {
        "title": "GPUs",
        "description": "GPUs the flow run's container reserves on its EC2 instance.",
        "type": "string",
        "pattern": "^[1-8]$",
        "default": str(gpus),
    }
    return template


@dataclass(frozen=True)
class WorkPoolBackend(RemoteBackend):
    """Runs invocations as flow runs of the remote-op deployment on a work pool.

    Attributes:
        name: Backend name in configurations and the price file.
        capacity: Invocations at once (GPUs the pool can hold).
        startup_s: Seconds from submission until the op body starts: an ECS task
            on EC2 pulls and starts a container (ours: 90 s); a warm process
            pool takes a few seconds.
        deployment: ``flow-name/deployment-name`` of the remote-op deployment.
        staging_uri: ``s3://bucket/prefix`` for requests and responses; required.
        timeout_s: Seconds to wait for one flow run to finish.
        cooldown_s: Seconds the pool is not planned on after a placement failure.
        job_variables: Job variables for each run (e.g. ``{"gpu_count": "1"}``).
        credentials: prefect-aws `AwsCredentials` for the staging objects.
        prices: The price catalog; the packaged one when None.
        launcher: Starts a deployment run and waits for it; Prefect's
            `run_deployment` when None (tests pass a stand-in).
    """

    name: str = ECS_GPU
    capacity: int = 1
    startup_s: float = 90.0
    deployment: str = f"{REMOTE_FLOW}/{ECS_GPU}"
    staging_uri: str = ""
    timeout_s: float = 3600.0
    cooldown_s: float = 300.0
    job_variables: Mapping[str, Any] = field(default_factory=dict)
    credentials: Any = field(default=None, repr=False, compare=False)
    prices: PriceCatalog | None = field(default=None, repr=False, compare=False)
    launcher: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.staging_uri:
            raise ConfigurationError(
                f"{self.name}: a work-pool backend needs staging_uri "
                "(s3://bucket/prefix) for its requests and responses"
            )

    def run(self, call: RemoteCall) -> RemoteOutcome:
        """Runs `call` as one flow run on the pool and returns its outcome.

        Raises:
            ReplanError: No capacity, a crashed run, or one past `timeout_s`.
            LlamaError: The op body raised one of ours; RemoteError anything else.
        """
        from llama_prefect import s3

        request_uri = staging_key(self.staging_uri, call, "request")
        response_uri = staging_key(self.staging_uri, call, "response")
        assert request_uri and response_uri
        request = build_request(call, self.staging_uri)
        s3.put_json(request_uri, request, self.credentials)

        started = time.monotonic()
        flow_run = self._launch()(
            name=self.deployment,
            parameters={"request_uri": request_uri, "response_uri": response_uri},
            job_variables=dict(self.job_variables),
            timeout=self.timeout_s,
        )
        held_s = time.monotonic() - started
        self._check(flow_run, call)
        response = s3.get_json(response_uri, self.credentials)
        value = read_response(response, call)
        cost_usd = self._prices.config_cost_usd(call.config, held_s)
        details = {"flow_run_id": str(getattr(flow_run, "id", "")), "held_s": held_s}
        return RemoteOutcome(
            value, cost_usd, float(response.get("duration_s", 0.0)), details
        )

    @cached_property
    def _prices(self) -> PriceCatalog:
        return self.prices or PriceCatalog.load()

    def _launch(self) -> Callable[..., Any]:
        if self.launcher is not None:
            return self.launcher
        from prefect.deployments import run_deployment

        return run_deployment

    def _check(self, flow_run: Any, call: RemoteCall) -> None:
        """Raises unless the flow run completed (see the module doc for the cases)."""
        state = getattr(flow_run, "state", None)
        if state is not None and state.is_completed():
            return
        message = (state.message or state.name) if state is not None else "no state"
        if state is None or state.is_scheduled() or state.is_pending():
            raise self._replan(f"no worker of {self.deployment} started it: {message}")
        if state.is_crashed():
            if any(word in message for word in PLACEMENT_FAILURES):
                logger.warning(
                    "%s has no capacity to place %s (%s); planning elsewhere for "
                    "%.0f s. Raise the GPU capacity provider's maximum or use "
                    "another instance type.",
                    self.name,
                    call.op,
                    message,
                    self.cooldown_s,
                )
            raise self._replan(f"the flow run crashed: {message}")
        if state.is_running():
            raise ReplanError(
                f"{call.op} did not finish on {self.name} in {self.timeout_s:.0f} s",
                backend=self.name,
                whole_backend=False,
            )
        raise RemoteError(f"{call.op}: the remote-op flow run ended {message}")

    def _replan(self, why: str) -> ReplanError:
        return ReplanError(
            f"{self.name}: {why}", backend=self.name, cooldown_s=self.cooldown_s
        )


def seed_pool_profiles(
    store: ProfileStore,
    op: str,
    *,
    source_backend: str = "local-gpu",
    backends: tuple[str, ...] = (ECS_GPU, GPU_POOL),
) -> int:
    """Seeds GPU-pool profiles of `op` from its profiles on a local GPU.

    Assumes the pool's GPU runs the op as fast as the GPU it was explored on; the
    start-up delay is the backend's, not the profile's. Feedback corrects the rest.
    Without a local GPU profile nothing is seeded, and the pool is never chosen.

    Returns:
        The number of configurations seeded.
    """
    seeded = 0
    for config in store.configurations(op):
        if config.backend != source_backend:
            continue
        prof = store.profile(op, config)
        for backend in backends:
            target = Configuration.of(backend, config.as_dict())
            s_per_unit = store.predict_s_per_unit(op, config)
            fixed_s = store.predict_s(op, config, 0.0)
            store.seed(op, target, s_per_unit, accuracy=prof.accuracy, fixed_s=fixed_s)
            seeded += 1
    return seeded


def warm_gpu_pool(staging_uri: str, **fields: Any) -> WorkPoolBackend:
    """The warm variant: a process work pool on a GPU machine (few seconds' start)."""
    defaults = {
        "name": GPU_POOL,
        "startup_s": 3.0,
        "deployment": f"{REMOTE_FLOW}/{GPU_POOL}",
    }
    return WorkPoolBackend(staging_uri=staging_uri, **{**defaults, **fields})


if __name__ == "__main__":  # writes infra/ecs-gpu-job-template.json
    import json
    import sys

    json.dump(gpu_job_template(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
