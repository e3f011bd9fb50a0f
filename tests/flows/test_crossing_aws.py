"""The crossing pipeline with its videos, profiles and report in (moto) S3, on Lambda.

The archive is an S3 prefix; the profile store and the run report are S3 objects.
The Lambda backend is the real one with an in-process client that runs the real
handler on each JSON payload, and Lambda is profiled cheaper than the local CPU, so
the per-segment ops go there: the handler reads each video from S3 by its URI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from aws_moto import InProcessLambda
from llama_prefect.flows.crossing import PIPELINE, crossing

from llama_prefect import s3
from llama_prefect.backends.aws_lambda import LambdaBackend
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import LlamaTaskRunner
from llama_prefect.video.samples import find_vtest

pytestmark = [pytest.mark.prefect, pytest.mark.video, pytest.mark.aws]

PLOT = "fidelity.png"
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]


@pytest.fixture
def street(tmp_path) -> Path:
    source = find_vtest()
    if source is None or shutil.which("ffmpeg") is None:
        pytest.fail("vtest.avi and ffmpeg are needed: run `make system`")
    out = tmp_path / "street.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", "20", "-t", "6"]
        + ["-i", str(source), *H264, str(out)],
        check=True,
    )
    return out


def _profiles() -> ProfileStore:
    """One configuration per op: local CPU for split and aggregate, Lambda else."""
    store = ProfileStore("crossing")
    for op, spec in PIPELINE.ops.items():
        cloud = op in ("motion", "people", "faces")
        config = spec.reference_configuration("lambda" if cloud else "local-cpu")
        if op == "faces":  # the Haar model needs no torch weights
            config = type(config).of(
                config.backend, {**config.as_dict(), "model": "haar"}
            )
        store.seed(op, config, 0.002 if cloud else 0.01)
    return store


def test_the_crossing_flow_reads_s3_runs_on_lambda_and_writes_s3(
    prefect_server, moto, street
):
    bucket = moto.new_bucket()
    client = moto.client("s3")
    client.upload_file(str(street), bucket, "archive/cam 1/street.mp4")
    client.put_object(Bucket=bucket, Key="archive/readme.txt", Body=b"not a video")
    profiles_uri = s3.save_profiles(
        _profiles(), f"s3://{bucket}/profiles/crossing.json"
    )
    report_uri = f"s3://{bucket}/reports/latest.json"
    fake = InProcessLambda()
    runner = LlamaTaskRunner(
        PIPELINE,
        profile_path=profiles_uri,
        backends=[LambdaBackend(client=fake, capacity=4)],
    )

    report = crossing.with_options(task_runner=runner)(
        videos=f"s3://{bucket}/archive/",
        slo_s=600.0,
        accuracy_floor=0.0,
        segment_s=2.0,
        report_path=report_uri,
    )

    video_uri = f"s3://{bucket}/archive/cam 1/street.mp4"
    (entry,) = report["videos"]
    assert entry["video"] == video_uri and entry["errors"] == []
    assert entry["answer"]["video"] == video_uri
    assert entry["answer"]["segments"] == 3 and entry["answer"]["max_people"] > 0
    on_lambda = [r for r in report["invocations"] if r["backend"] == "lambda"]
    assert {r["op"] for r in on_lambda} >= {"motion", "people"}
    # One request per attempt that started: the seeds are far too fast, so some
    # invocations straggle and get a duplicate, sent to Lambda too.
    assert {p["invocation"] for p in fake.payloads} == {
        r["task_run_id"] for r in on_lambda
    }
    assert len(on_lambda) <= len(fake.payloads) <= sum(r["attempts"] for r in on_lambda)
    assert all(
        p["kwargs"]["segment"]["data"]["video"] == video_uri for p in fake.payloads
    )
    assert s3.get_json(report_uri)["videos"][0]["answer"] == entry["answer"]
    assert not Path("s3:").exists()  # nothing was written to a mangled local path
    plots = client.list_objects_v2(Bucket=bucket, Prefix="reports/")["Contents"]
    assert f"reports/{PLOT}" in {o["Key"] for o in plots}
    learned = s3.load_profiles(profiles_uri)
    motion = [c for c in learned.configurations("motion") if c.backend == "lambda"]
    assert learned.profile("motion", motion[0]).observations == 3
