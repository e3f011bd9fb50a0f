"""The Lambda handler on real footage stored in (moto) S3 answers as the local backend.

The handler runs in-process, as the Lambda runtime would call it, on a request that
went through JSON both ways; the video is read from moto's S3 by URI. The same op
body then runs as the local backend runs it, on the file on disk. The outputs must be
equal. The last test sends the same request through the Lambda backend's boto3 call
to moto, which returns the handler's answer queued for it.
"""

from __future__ import annotations

import json

import pytest

from llama_prefect import handler
from llama_prefect.backends.aws_lambda import LambdaBackend
from llama_prefect.backends.base import RemoteCall
from llama_prefect.backends.remote import build_request, read_response
from llama_prefect.core.pipeline import Configuration
from llama_prefect.wire import ref_of

pytestmark = [pytest.mark.aws, pytest.mark.video]

PEOPLE_KNOBS = {"decoder": "pyav", "sample_every": 5, "width_px": 768}
MOTION_KNOBS = {"decoder": "opencv", "sample_every": 2, "width_px": 160}


@pytest.fixture
def footage(moto, vtest_dir):
    """The vtest clip on disk and the same bytes in a moto bucket, both probed."""
    from llama_prefect.video.segments import probe, split

    local = vtest_dir / "vtest_h264.mp4"
    bucket = moto.new_bucket()
    moto.client("s3").upload_file(str(local), bucket, "archive/cam 1/vtest.mp4")
    uri = f"s3://{bucket}/archive/cam 1/vtest.mp4"
    return {
        "local": split(probe(local), 1.5),
        "remote": split(probe(uri), 1.5),
        "uri": uri,
    }


def _request(task, segment, knobs, memory_mb=1769):
    call = RemoteCall(
        invocation_id="inv-video",
        op=task.name,
        function=ref_of(task.fn),
        kwargs={"segment": segment, **knobs},
        config=Configuration.of("lambda", {**knobs, "memory_mb": memory_mb}),
        predicted_s=5.0,
    )
    return call, json.loads(json.dumps(build_request(call, None)))


@pytest.mark.parametrize("op", ["people", "motion"])
def test_the_handler_on_s3_footage_answers_as_the_local_backend(footage, op):
    from llama_prefect.flows import crossing

    task = getattr(crossing, op)
    knobs = PEOPLE_KNOBS if op == "people" else MOTION_KNOBS
    for local_seg, remote_seg in zip(footage["local"], footage["remote"], strict=True):
        call, request = _request(task, remote_seg, knobs)
        assert request["kwargs"]["segment"]["data"]["video"] == footage["uri"]

        response = json.loads(json.dumps(handler.lambda_handler(request, None)))
        remote = read_response(response, call)
        local = task.fn(segment=local_seg, **knobs)

        assert response["ok"] is True
        assert remote == local


def test_the_people_counts_are_real_not_empty(footage):
    from llama_prefect.flows import crossing

    seg = footage["remote"][0]
    call, request = _request(crossing.people, seg, PEOPLE_KNOBS)
    result = read_response(handler.handle(request), call)
    assert len(result.counts) == len(range(seg.start_frame, seg.end_frame, 5))
    assert sum(result.counts) > 0  # pedestrians cross in this part of vtest.avi


def test_the_lambda_backend_through_moto_returns_the_local_answer(moto, footage):
    from llama_prefect.flows import crossing

    seg_local, seg_remote = footage["local"][1], footage["remote"][1]
    call, request = _request(crossing.people, seg_remote, PEOPLE_KNOBS, 1769)
    moto.create_function("llama-prefect-op-1769", 1769)
    moto.queue_lambda_results(handler.handle(request))

    outcome = LambdaBackend(credentials=moto.credentials).run(call)

    assert outcome.value == crossing.people.fn(segment=seg_local, **PEOPLE_KNOBS)
    assert outcome.cost_usd > 0 and outcome.details["function"].endswith("-1769")
