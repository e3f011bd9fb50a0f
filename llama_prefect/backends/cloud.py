"""The cloud backends of a run, from environment variables.

A deployment switches Lambda and the GPU pool on without code changes by setting
these on its work pool or in its job variables (``infra/README.md`` shows them with
the names the CloudFormation stack creates):

* ``LLAMA_PREFECT_LAMBDA``: the Lambda function name, ``{memory_mb}`` standing for
  the memory knob (``llama-prefect-op-{memory_mb}``); unset: no Lambda backend.
* ``LLAMA_PREFECT_LAMBDA_CONCURRENCY``: concurrent invocations (default 50).
* ``LLAMA_PREFECT_GPU_DEPLOYMENT``: the remote-op deployment of the GPU pool
  (``llama-remote-op/ecs-gpu``); unset: no GPU pool.
* ``LLAMA_PREFECT_GPU_BACKEND``: its backend name, ``ecs-gpu`` (default) or
  ``gpu-pool`` for a warm process pool; ``LLAMA_PREFECT_GPU_SLOTS`` (default 1) and
  ``LLAMA_PREFECT_GPU_STARTUP_S`` (default 90 for ECS, 3 for a process pool).
* ``LLAMA_PREFECT_STAGING_URI``: ``s3://bucket/staging`` for staged requests and
  results; required by the GPU pool.
* ``LLAMA_PREFECT_AWS_CREDENTIALS``: the name of a saved prefect-aws
  ``AwsCredentials`` block; unset: boto3's default chain (role, profile, env).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llama_prefect.backends.base import Backend
from llama_prefect.errors import ConfigurationError

LAMBDA_ENV = "LLAMA_PREFECT_LAMBDA"
GPU_ENV = "LLAMA_PREFECT_GPU_DEPLOYMENT"


def backends_from_env(env: Mapping[str, str] | None = None) -> list[Backend]:
    """The Lambda and GPU-pool backends the environment asks for (may be none).

    Raises:
        ConfigurationError: A number is not a number, or the GPU pool has no
            staging URI.
    """
    env = os.environ if env is None else env
    if not env.get(LAMBDA_ENV) and not env.get(GPU_ENV):
        return []
    credentials = _credentials(env.get("LLAMA_PREFECT_AWS_CREDENTIALS"))
    staging = env.get("LLAMA_PREFECT_STAGING_URI") or None
    found: list[Backend] = []
    if env.get(LAMBDA_ENV):
        from llama_prefect.backends.aws_lambda import LambdaBackend

        found.append(
            LambdaBackend(
                function_name=env[LAMBDA_ENV],
                capacity=_number(env, "LLAMA_PREFECT_LAMBDA_CONCURRENCY", 50),
                staging_uri=staging,
                credentials=credentials,
            )
        )
    if env.get(GPU_ENV):
        found.append(_gpu_pool(env, staging, credentials))
    return found


def _gpu_pool(env: Mapping[str, str], staging: str | None, credentials: Any) -> Any:
    from llama_prefect.backends.ecs import ECS_GPU, WorkPoolBackend

    name = env.get("LLAMA_PREFECT_GPU_BACKEND", ECS_GPU)
    default_startup_s = 90 if name == ECS_GPU else 3
    return WorkPoolBackend(
        name=name,
        deployment=env[GPU_ENV],
        capacity=_number(env, "LLAMA_PREFECT_GPU_SLOTS", 1),
        startup_s=float(_number(env, "LLAMA_PREFECT_GPU_STARTUP_S", default_startup_s)),
        staging_uri=staging or "",
        credentials=credentials,
    )


def _credentials(block_name: str | None) -> Any:
    if not block_name:
        return None
    from prefect_aws import AwsCredentials

    return AwsCredentials.load(block_name)


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a whole number, but got {text!r}"
        ) from None
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1, but got {value}")
    return value
