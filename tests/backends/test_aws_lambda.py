"""The Lambda backend: its boto3 calls, error handling and cost accounting.

The boto3 call path runs against a moto server on loopback; moto's Invoke returns
responses that the real handler produced in-process (moto runs no handler code
without Docker). Throttling, timeouts and crashes, which moto cannot produce, come
from botocore's Stubber on a real Lambda client.
"""

from __future__ import annotations

import base64
import io
import json
import math

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from llama_prefect import handler, wire
from llama_prefect.backends.aws_lambda import (
    FULL_VCPU_MB,
    LambdaBackend,
    parse_report,
    seed_lambda_profiles,
)
from llama_prefect.backends.base import RemoteCall
from llama_prefect.backends.remote import build_request
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import (
    ConfigurationError,
    RemoteError,
    ReplanError,
    VideoError,
)
from llama_prefect.video.segments import VideoInfo, split

pytestmark = pytest.mark.aws

INFO = VideoInfo(
    path="s3://bucket/videos/cam1.mp4",
    fps=10.0,
    num_frames=95,
    width_px=768,
    height_px=576,
    codec="h264",
)


def _call(
    memory_mb=1024, predicted_s=2.0, function="llama_prefect.video.segments:split"
):
    return RemoteCall(
        invocation_id="inv-1",
        op="split",
        function=function,
        kwargs={"info": INFO, "segment_s": 4.0},
        config=Configuration.of("lambda", {"memory_mb": memory_mb}),
        predicted_s=predicted_s,
    )


def _report_log(billed_ms, memory_mb, duration_ms=None):
    duration_ms = duration_ms or billed_ms - 0.4
    text = (
        "START RequestId: abc Version: $LATEST\n"
        "END RequestId: abc\n"
        f"REPORT RequestId: abc\tDuration: {duration_ms} ms\t"
        f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\t"
        "Max Memory Used: 180 MB\tInit Duration: 812.1 ms\n"
    )
    return base64.b64encode(text.encode()).decode()


def _payload(value):
    data = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def _stubbed():
    import boto3

    client = boto3.client(
        "lambda",
        region_name="us-east-1",
        aws_access_key_id="AKIATESTTESTTEST",
        aws_secret_access_key="test-secret-key",
    )
    return client, Stubber(client)


# -- the boto3 call path, against moto ------------------------------------------


def test_invoke_against_moto_sends_json_by_reference_and_decodes_the_answer(moto):
    backend = LambdaBackend(credentials=moto.credentials)
    call = _call(memory_mb=1024)
    moto.create_function("llama-prefect-op-1024", 1024)
    answer = handler.handle(json.loads(json.dumps(build_request(call, None))))
    moto.queue_lambda_results(answer)
    sent = []
    backend._client.meta.events.register(
        "provide-client-params.lambda.Invoke", lambda params, **_: sent.append(params)
    )

    outcome = backend.run(call)

    assert outcome.value == split(INFO, 4.0)
    params = sent[0]
    assert params["FunctionName"] == "llama-prefect-op-1024"
    assert params["InvocationType"] == "RequestResponse"
    assert params["LogType"] == "Tail"
    request = json.loads(params["Payload"])
    assert request["function"] == "llama_prefect.video.segments:split"
    assert request["kwargs"]["info"]["data"]["path"] == "s3://bucket/videos/cam1.mp4"
    # moto sends no REPORT line: billed from the handler's time, rounded up to 1 ms.
    billed_ms = math.ceil(answer["duration_s"] * 1000)
    expected = PriceCatalog.load().memory_cost_usd("lambda", billed_ms, 1024)
    assert outcome.cost_usd == pytest.approx(expected)


def test_a_missing_function_replans_with_a_long_cooldown_and_a_warning(caplog):
    # moto's Invoke without Docker answers for any name, so this one is stubbed.
    client, stub = _stubbed()
    stub.add_client_error(
        "invoke", service_error_code="ResourceNotFoundException", http_status_code=404
    )
    backend = LambdaBackend(client=client, cooldown_s=5.0)
    with stub, pytest.raises(ReplanError, match="does not exist") as caught:
        backend.run(_call(memory_mb=3008))
    assert caught.value.whole_backend and caught.value.cooldown_s == 50.0
    assert "deploy infra/cloudformation.yaml" in caplog.text


def test_large_arguments_and_results_travel_through_s3_not_the_payload(moto):
    bucket = moto.new_bucket()
    staging = f"s3://{bucket}/staging"
    big = VideoInfo(**{**INFO.model_dump(), "num_frames": 400_000})
    call = RemoteCall(
        invocation_id="inv-big",
        op="split",
        function="llama_prefect.video.segments:split",
        kwargs={"info": big, "segment_s": 1.0, "pad": "x" * (300 * 1024)},
        config=Configuration.of("lambda", {"memory_mb": 1024}),
        predicted_s=1.0,
    )
    with pytest.raises(ConfigurationError, match="staging_uri"):
        build_request(call, None)

    request = build_request(call, staging)
    assert "kwargs" not in request and request["kwargs_uri"].startswith(staging)
    assert len(json.dumps(request)) < 1024

    request["kwargs_uri"] = _stage_kwargs_for_split(request, big)
    response = handler.handle(request)
    assert set(response) >= {"ok", "result_uri"} and "result" not in response
    from llama_prefect.backends.remote import read_response

    assert read_response(response, call) == split(big, 1.0)


def _stage_kwargs_for_split(request, info):
    # The padding argument exists only to make the payload large; split takes two.
    from llama_prefect import s3

    return s3.put_json(
        request["kwargs_uri"], wire.encode({"info": info, "segment_s": 1.0})
    )


# -- errors, with a stubbed client ---------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("TooManyRequestsException", 429),
        ("ServiceException", 500),
        ("EC2ThrottledException", 502),
    ],
)
def test_throttling_and_service_errors_cool_the_whole_backend_down(code, status):
    client, stub = _stubbed()
    stub.add_client_error("invoke", service_error_code=code, http_status_code=status)
    backend = LambdaBackend(client=client, cooldown_s=12.0)
    with stub, pytest.raises(ReplanError) as caught:
        backend.run(_call())
    assert caught.value.backend == "lambda"
    assert caught.value.whole_backend and caught.value.cooldown_s == 12.0


def test_a_function_timeout_replans_this_invocation_and_keeps_its_cost():
    client, stub = _stubbed()
    body = {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 900.00 seconds",
    }
    stub.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "LogResult": _report_log(900000, 1024),
            "Payload": _payload(body),
        },
    )
    with stub, pytest.raises(ReplanError) as caught:
        LambdaBackend(client=client).run(_call())
    assert not caught.value.whole_backend
    expected = 900.0 * 1.0 * 0.0000166667 + 0.0000002
    assert caught.value.cost_usd == pytest.approx(expected)


def test_out_of_memory_replans_this_invocation_elsewhere():
    client, stub = _stubbed()
    body = {"errorType": "Runtime.OutOfMemory", "errorMessage": "Runtime exited"}
    stub.add_response(
        "invoke",
        {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(body)},
    )
    with stub, pytest.raises(ReplanError) as caught:
        LambdaBackend(client=client).run(_call())
    assert not caught.value.whole_backend


def test_a_crashed_handler_is_a_remote_error_not_a_replan():
    client, stub = _stubbed()
    body = {"errorType": "ImportModuleError", "errorMessage": "No module named x"}
    stub.add_response(
        "invoke",
        {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(body)},
    )
    with stub, pytest.raises(RemoteError, match="ImportModuleError"):
        LambdaBackend(client=client).run(_call())


def test_the_op_bodys_own_error_comes_back_as_the_same_error():
    client, stub = _stubbed()
    call = RemoteCall(
        invocation_id="inv-2",
        op="split",
        function="llama_prefect.video.segments:probe",
        kwargs={"path": "/no/such/video.mp4"},
        config=Configuration.of("lambda", {"memory_mb": 1024}),
        predicted_s=1.0,
    )
    answer = handler.handle(build_request(call, None))
    assert answer["ok"] is False and answer["error"]["deterministic"] is True
    stub.add_response("invoke", {"StatusCode": 200, "Payload": _payload(answer)})
    with stub, pytest.raises(VideoError, match="does not exist"):
        LambdaBackend(client=client).run(call)


def test_an_invocation_predicted_past_the_time_limit_is_never_sent():
    client, stub = _stubbed()  # no responses queued: any call would fail the test
    backend = LambdaBackend(client=client, timeout_s=300)
    with stub, pytest.raises(ReplanError, match="past the function's 300 s") as caught:
        backend.run(_call(predicted_s=301.0))
    assert not caught.value.whole_backend


def test_the_timeout_cannot_pass_lambdas_fifteen_minute_limit():
    with pytest.raises(ConfigurationError, match="15-minute"):
        LambdaBackend(timeout_s=901)


# -- cost ----------------------------------------------------------------------------


def _price_file():
    from importlib import resources

    text = resources.files("llama_prefect.data").joinpath("prices.json").read_text()
    return json.loads(text)["backends"]["lambda"]


def test_a_million_invocations_cost_what_the_price_file_says_to_the_cent():
    # Constructed case: 1,000,000 invocations at 1,536 MB, each billed 1,237 ms.
    # By hand from the price file: 1e6 x 1.237 s x 1.5 GB = 1,855,500 GB-s
    # x $0.0000166667 = $30.92506..., plus 1e6 x $0.0000002 = $0.20: $31.13.
    raw = _price_file()
    prices = PriceCatalog.load()
    client, stub = _stubbed()
    backend = LambdaBackend(client=client, prices=prices)
    answer = {"format": 1, "ok": True, "result": [], "duration_s": 1.2}
    stub.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "LogResult": _report_log(1237, 1536, duration_ms=1236.2),
            "Payload": _payload(answer),
        },
    )
    with stub:
        outcome = backend.run(_call(memory_mb=1536))

    by_hand = 1_855_500 * raw["usd_per_gb_s"] + 1_000_000 * raw["usd_per_invocation"]
    assert round(by_hand, 2) == 31.13
    assert round(outcome.cost_usd * 1_000_000, 2) == 31.13
    assert outcome.details["billed_ms"] == 1237 and outcome.details["memory_mb"] == 1536


def test_the_planned_cost_rounds_up_to_the_millisecond_and_uses_memory():
    prices = PriceCatalog.load()
    raw = _price_file()
    config = Configuration.of("lambda", {"memory_mb": 2048})
    planned = prices.config_cost_usd(config, 0.1004)  # billed as 101 ms
    by_hand = 0.101 * 2.0 * raw["usd_per_gb_s"] + raw["usd_per_invocation"]
    assert planned == pytest.approx(by_hand, rel=1e-12)
    # Without the memory knob, Lambda is priced per 1,769 MB slot.
    plain = prices.config_cost_usd(Configuration.of("lambda", {}), 2.0)
    assert plain == pytest.approx(
        2.0 * raw["usd_per_slot_s"] + raw["usd_per_invocation"]
    )


def test_parse_report_reads_the_billing_figures():
    report = parse_report(_report_log(1237, 1536, duration_ms=1236.2))
    assert report == {
        "billed_ms": 1237.0,
        "duration_ms": 1236.2,
        "memory_mb": 1536.0,
        "max_memory_used_mb": 180.0,
        "init_ms": 812.1,
    }
    assert parse_report(None) == {} and parse_report("bm90IGEgcmVwb3J0") == {}


# -- profiles ------------------------------------------------------------------------


def test_lambda_profiles_scale_with_the_cpu_share_of_the_memory_size():
    store = ProfileStore("p")
    one = Configuration.of("local-cpu", {"sample_every": 5, "threads": 1})
    two = Configuration.of("local-cpu", {"sample_every": 5, "threads": 2})
    store.seed("people", one, 0.04, accuracy=0.9)
    store.seed("people", two, 0.025, accuracy=0.9)

    seeded = seed_lambda_profiles(
        store, "people", memory_sizes_mb=(885, FULL_VCPU_MB, 3008)
    )

    assert seeded == 3  # the two-thread configuration is not copied
    lam = {
        int(c.as_dict()["memory_mb"]): store.predict_s_per_unit("people", c)
        for c in store.configurations("people")
        if c.backend == "lambda"
    }
    assert lam[FULL_VCPU_MB] == pytest.approx(0.04)
    assert lam[3008] == pytest.approx(0.04)  # one thread gains nothing past 1 vCPU
    assert lam[885] == pytest.approx(0.04 * FULL_VCPU_MB / 885)
