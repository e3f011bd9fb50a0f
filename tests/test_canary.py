"""A canary secret planted in the AWS credentials shows up nowhere it should not.

The credentials' secret key is a unique canary. A flow then runs an invocation on the
Lambda backend (boto3 through moto's server, which returns the answer the real
handler gave in-process), stages a large argument and writes its run report in S3,
and publishes its artifacts. Every request body sent to AWS, every log record (ours,
Prefect's and the flow run's logs as stored by the server), every artifact, the
report and every object left in the bucket are searched for the canary.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from aws_moto import credentials_for
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from llama_prefect import handler, s3, wire
from llama_prefect.backends.aws_lambda import LambdaBackend
from llama_prefect.backends.base import RemoteCall
from llama_prefect.backends.remote import build_request
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pytestmark = [pytest.mark.prefect, pytest.mark.aws]

CANARY = f"canary-{uuid.uuid4().hex}"
REMOTE = Configuration.of("lambda", {"memory_mb": 1024})


def _pipeline() -> Pipeline:
    p = Pipeline("canary")
    p.add_op(
        OpSpec(
            "measure",
            backends=("lambda",),
            backend_knobs={"lambda": {"memory_mb": (1024,)}},
            group_of=lambda params: "g",
        )
    )
    return p


PIPELINE = _pipeline()


def _measure_fn(text: str) -> dict:
    return {"length": len(text), "words": len(text.split())}


@task(name="measure")
def measure(text: str) -> dict:
    return _measure_fn(text)


setattr(measure.fn, OP_ATTRIBUTE, "measure")


@flow
def canary_flow(text: str, report_uri: str) -> dict:
    from llama_prefect.report import build_report, publish_artifacts

    value = measure.submit(text).result()
    runner = FlowRunContext.get().task_runner
    report = build_report(
        pipeline="canary",
        records=runner.records(),
        videos=[],
        slo_s=60.0,
        latency_s=runner.elapsed_s(),
        settings=runner.run_settings,
    )
    s3.write_report(report, report_uri)
    publish_artifacts(report)
    return {"value": value, "report": report}


def _found(needle: str, haystack: object) -> bool:
    return needle in (haystack if isinstance(haystack, str) else repr(haystack))


def test_the_scan_finds_a_planted_canary():
    # The searches below would catch a leak: the canary is found where it is put.
    assert _found(CANARY, {"x": [f"prefix {CANARY} suffix"]})
    assert not _found(CANARY, {"x": "nothing here"})


def test_the_credentials_secret_reaches_no_payload_log_artifact_or_report(
    prefect_server, moto_url, tmp_path: Path, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(wire.MODULES_ENV, measure.fn.__module__)
    creds = credentials_for(moto_url, secret=CANARY)
    assert creds.aws_secret_access_key.get_secret_value() == CANARY
    s3.use_credentials(creds)
    try:
        sent, report, run_id = _run_flow(creds, moto_url, tmp_path)
        stored = _bucket_contents(creds, report["bucket"])
    finally:
        s3.use_credentials(None)

    with get_client(sync_client=True) as client:
        logs = client.read_logs()
        artifacts = client.read_artifacts()
        task_runs = client.read_task_runs()
        flow_run = client.read_flow_run(run_id)

    assert sent, "no request reached AWS: the test would prove nothing"
    assert any(b'"function"' in body for body in sent)  # the Lambda payload
    for body in sent:
        assert CANARY.encode() not in body
    assert not _found(CANARY, caplog.text)
    assert not _found(CANARY, [log.message for log in logs])
    assert artifacts and not _found(CANARY, [a.data for a in artifacts])
    assert not _found(CANARY, json.dumps(report["report"], default=str))
    assert not _found(CANARY, [(tr.name, tr.task_inputs) for tr in task_runs])
    assert not _found(CANARY, flow_run.parameters)
    assert stored and not any(CANARY.encode() in data for data in stored.values())
    assert not _found(CANARY, repr(LambdaBackend(credentials=creds)))


def _run_flow(creds, moto_url, tmp_path):
    from aws_moto import MotoAws

    aws = MotoAws(moto_url, creds)
    bucket = aws.new_bucket()
    aws.create_function("llama-prefect-op-1024", 1024)
    text = "a large argument " * 20_000  # staged in S3, not sent inline
    call = RemoteCall(
        "x", "measure", wire.ref_of(measure.fn), {"text": text}, REMOTE, 1
    )
    staging = f"s3://{bucket}/staging"
    request = build_request(call, staging)
    aws.queue_lambda_results(handler.handle(request))

    backend = LambdaBackend(credentials=creds, staging_uri=staging)
    sent: list[bytes] = []
    backend._client.meta.events.register(
        "before-send", lambda request, **_: sent.append(bytes(request.body or b""))
    )
    s3.s3_client(creds).meta.events.register(
        "before-send", lambda request, **_: sent.append(_body_bytes(request.body))
    )
    store = ProfileStore("canary")
    store.seed("measure", REMOTE, 0.001)
    runner = LlamaTaskRunner(
        PIPELINE,
        profile_path=store.save(tmp_path / "p.json"),
        backends=[backend],
        slo_s=60.0,
    )
    report_uri = f"s3://{bucket}/reports/latest.json"
    state = canary_flow.with_options(task_runner=runner)(
        text=text, report_uri=report_uri, return_state=True
    )
    out = state.result()
    assert out["value"] == _measure_fn(text)
    return (
        sent,
        {"report": out["report"], "bucket": bucket},
        state.state_details.flow_run_id,
    )


def _body_bytes(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if hasattr(body, "read") and hasattr(body, "seek"):
        position = body.tell()
        data = body.read()
        body.seek(position)
        return data if isinstance(data, bytes) else str(data).encode()
    return str(body).encode()


def _bucket_contents(creds, bucket: str) -> dict[str, bytes]:
    client = s3.s3_client(creds)
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listing
    }
