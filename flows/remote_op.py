"""The flow a GPU work pool runs for one remote invocation.

A `WorkPoolBackend` starts this flow's deployment with `run_deployment`: the ECS
worker of an ``ecs`` pool runs it in a GPU container on EC2, the worker of a
``process`` pool on a GPU machine runs it in a local process (the warm variant). The
flow reads the request from S3, runs the op body with `llama_prefect.handler.handle`
and writes the response back to S3, where the backend reads it. The task engine of
the invocation itself stays in the calling flow's process.

Deploy it once per pool, for example::

    prefect deploy flows/remote_op.py:remote_op -n ecs-gpu -p llama-gpu
"""

from __future__ import annotations

from prefect import flow

from llama_prefect import s3
from llama_prefect.handler import handle


@flow(name="llama-remote-op", log_prints=False, persist_result=False)
def remote_op(request_uri: str, response_uri: str) -> str:
    """Runs the op body of the request at `request_uri`; writes the response.

    Args:
        request_uri: ``s3://`` URI of the JSON request (see `llama_prefect.handler`).
        response_uri: ``s3://`` URI the JSON response is written to.

    Returns:
        `response_uri`.
    """
    response = handle(s3.get_json(request_uri))
    return s3.put_json(response_uri, response)
