"""A moto server on 127.0.0.1 for the AWS tests, started and stopped by the tests.

moto 5 in server mode answers S3, ECS, IAM and Lambda's control plane. Its Lambda
``Invoke`` runs no handler code without Docker: with ``use_docker`` off it returns
the results queued through its ``lambda-simple`` API, which the tests fill with
responses the real handler produced in-process.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"


@dataclass
class MotoAws:
    """A running moto server and credentials that point at it."""

    url: str
    credentials: Any

    def client(self, service: str) -> Any:
        return self.credentials.get_boto3_session().client(
            service, endpoint_url=self.url, region_name=REGION
        )

    def new_bucket(self) -> str:
        name = f"llama-test-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(Bucket=name)
        return name

    def queue_lambda_results(self, *results: Any) -> None:
        """Queues what moto's next Lambda invocations return, in order."""
        import requests

        body = {"results": [json.dumps(r) for r in results], "region": REGION}
        answer = requests.post(
            f"{self.url}/moto-api/static/lambda-simple/response", json=body, timeout=10
        )
        answer.raise_for_status()

    def create_function(self, name: str, memory_mb: int) -> str:
        """Creates the function in moto unless an earlier test of the session did."""
        lam = self.client("lambda")
        if name in {f["FunctionName"] for f in lam.list_functions()["Functions"]}:
            return name
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=f"role-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    pass\n")
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
            MemorySize=memory_mb,
            Timeout=900,
        )
        return name


def credentials_for(url: str, secret: str = "test-secret-key") -> Any:
    from prefect_aws import AwsCredentials

    return AwsCredentials(
        aws_access_key_id="AKIATESTTESTTEST",
        aws_secret_access_key=secret,
        region_name=REGION,
        aws_client_parameters={"endpoint_url": url},
    )


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The URL of a moto server on a free loopback port, for the whole session."""
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    config = {"lambda": {"use_docker": False}}
    requests.post(f"{url}/moto-api/config", json=config, timeout=10).raise_for_status()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoAws]:
    """Credentials for the moto server, set as this process's S3 credentials.

    The environment points boto3 at moto too, so nothing can reach real AWS.
    """
    from llama_prefect import s3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    aws = MotoAws(moto_url, credentials_for(moto_url))
    s3.use_credentials(aws.credentials)
    try:
        yield aws
    finally:
        s3.use_credentials(None)


class InProcessLambda:
    """A Lambda client whose Invoke runs the real handler in this process.

    It takes the JSON payload the backend built, hands it to
    `llama_prefect.handler.lambda_handler` as the Lambda runtime would, and answers
    with the handler's JSON and a REPORT log line billing `billed_ms`. The first
    `throttle_first` calls are refused as a throttled Lambda refuses them.
    """

    def __init__(self, *, billed_ms: int = 250, throttle_first: int = 0) -> None:
        import threading

        self.billed_ms = billed_ms
        self.throttle_first = throttle_first
        self.payloads: list[dict] = []
        self._lock = threading.Lock()

    def invoke(self, **params: Any) -> dict:
        import base64

        from botocore.exceptions import ClientError

        from llama_prefect import handler

        with self._lock:
            self.payloads.append(json.loads(params["Payload"]))
            throttled = len(self.payloads) <= self.throttle_first
        if throttled:
            error = {
                "Error": {"Code": "TooManyRequestsException", "Message": "Rate"},
                "ResponseMetadata": {"HTTPStatusCode": 429},
            }
            raise ClientError(error, "Invoke")  # type: ignore[arg-type]
        answer = handler.lambda_handler(json.loads(params["Payload"]), None)
        memory = params["FunctionName"].rsplit("-", 1)[-1]
        log = (
            f"REPORT RequestId: x\tBilled Duration: {self.billed_ms} ms\t"
            f"Memory Size: {memory} MB"
        )
        return {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(answer).encode()),
            "LogResult": base64.b64encode(log.encode()).decode(),
        }
