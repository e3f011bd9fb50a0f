"""What the remote path adds to an op body, measured side by side in one run.

The people op runs on the same segments of real footage (vtest.avi) three ways:

* ``local``: the op body called directly on the file on disk (the local backend);
* ``remote-cold``: through `LambdaBackend` with the video in S3 and an empty
  download cache: the request is built and JSON-encoded, the real handler decodes it,
  fetches the video from S3, runs the body and encodes the answer, and the backend
  decodes it;
* ``remote-warm``: the same with the video already in the cache.

S3 is a moto server on loopback and the Lambda client runs the handler in this
process, so the figures leave out the network and Lambda's own start-up: they are
the cost of the proxy, the wire format and the S3 fetch alone.

Run: ``.venv/bin/python bench/remote_overhead.py --segments 6``
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class _InProcessLambda:
    """A Lambda client whose Invoke runs the real handler here."""

    def invoke(self, **params: Any) -> dict[str, Any]:
        from llama_prefect import handler

        answer = handler.lambda_handler(json.loads(params["Payload"]), None)
        log = "REPORT RequestId: x\tBilled Duration: 1 ms\tMemory Size: 1769 MB"
        return {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(answer).encode()),
            "LogResult": base64.b64encode(log.encode()).decode(),
        }


def _clip(folder: Path) -> Path:
    from llama_prefect.video.samples import find_vtest

    source = find_vtest()
    if source is None:
        raise SystemExit("vtest.avi not found: apt-get install opencv-doc")
    out = folder / "street.mp4"
    codec = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", "20", "-t", "24"]
        + ["-i", str(source), *codec, str(out)],
        check=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=6)
    args = parser.parse_args()

    import boto3
    from llama_prefect.flows.crossing import people
    from moto.server import ThreadedMotoServer
    from prefect_aws import AwsCredentials

    from llama_prefect import s3
    from llama_prefect.backends.aws_lambda import LambdaBackend
    from llama_prefect.backends.base import RemoteCall
    from llama_prefect.core.pipeline import Configuration
    from llama_prefect.video.segments import probe, split
    from llama_prefect.wire import ref_of

    work = Path(tempfile.mkdtemp(prefix="remote-overhead-"))
    os.environ[s3.CACHE_ENV] = str(work / "cache")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    creds = AwsCredentials(
        aws_access_key_id="AKIABENCHBENCH",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": url},
    )
    s3.use_credentials(creds)
    try:
        clip = _clip(work)
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIABENCHBENCH",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="bench-videos")
        client.upload_file(str(clip), "bench-videos", "street.mp4")
        local = split(probe(clip), 4.0)[: args.segments]
        remote = split(probe("s3://bench-videos/street.mp4"), 4.0)[: args.segments]
        knobs = {"decoder": "pyav", "sample_every": 5, "width_px": 768}
        backend = LambdaBackend(client=_InProcessLambda())

        def through_lambda(segment: Any) -> Any:
            call = RemoteCall(
                "bench",
                "people",
                ref_of(people.fn),
                {"segment": segment, **knobs},
                Configuration.of("lambda", {**knobs, "memory_mb": 1769}),
                5.0,
            )
            return backend.run(call).value

        paths = {
            "local": lambda i: people.fn(segment=local[i], **knobs),
            "remote-cold": lambda i: through_lambda(remote[i]),
            "remote-warm": lambda i: through_lambda(remote[i]),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        outputs: dict[str, list[Any]] = {name: [] for name in paths}
        names = list(paths)
        for i in range(len(local)):
            # Round-robin, starting at a different path each time, so that a
            # machine getting busier or quieter weighs on every path alike.
            for name in names[i % 3 :] + names[: i % 3]:
                if name == "remote-cold":  # this call downloads the video again
                    for cached in (work / "cache").glob("*"):
                        cached.unlink()
                elif name == "remote-warm":
                    s3.local_path(remote[i].video)  # make sure it is cached
                start = time.perf_counter()
                outputs[name].append(paths[name](i))
                times[name].append(time.perf_counter() - start)
        rows = [(n, statistics.median(times[n]), outputs[n]) for n in names]
        extra_ms = {
            n: statistics.median(
                (t - b) * 1000 for t, b in zip(times[n], times["local"], strict=True)
            )
            for n in names
        }
    finally:
        s3.use_credentials(None)
        server.stop()

    base_s = rows[0][1]
    same = all(r[2] == rows[0][2] for r in rows)
    print(f"people op on {args.segments} segments of 4 s (vtest.avi, 768x576)")
    print(f"{'path':<12} {'median_s':>9} {'x local':>8} {'median extra_ms':>16}")
    for name, median_s, _ in rows:
        ratio = median_s / base_s
        print(f"{name:<12} {median_s:9.3f} {ratio:8.2f} {extra_ms[name]:16.1f}")
    print(f"outputs identical across paths: {same}")


if __name__ == "__main__":
    main()
