"""AWS Lambda: serverless CPU, billed per millisecond of duration times memory.

One invocation is one synchronous ``Invoke`` of a deployed function (a container image
holding this package; its handler is `llama_prefect.handler.lambda_handler`). The
Prefect task engine stays in the flow process: the function gets only the op body's
import path, its arguments as JSON and where to put a large result, so it needs no
Prefect API. The client comes from a prefect-aws `AwsCredentials` block.

Memory is a knob (``memory_mb``): Lambda gives CPU in proportion to memory, about one
vCPU at 1,769 MB. A function's memory is fixed when it is deployed, so each memory
size is its own function, named by `function_name` (default
``llama-prefect-op-{memory_mb}``, the names `infra/cloudformation.yaml` creates).

Cost is what AWS bills: the billed duration from the invocation's ``REPORT`` log line
(requested with ``LogType=Tail``) times the memory in GB, times the price per
GB-second, plus the request fee, all from the price file.

What ends in re-planning on another backend (`ReplanError`), so no invocation is lost:

* throttling and capacity errors (HTTP 429, ``TooManyRequestsException``, ENI and
  EC2 limits) and service errors: the whole backend cools down for `cooldown_s`;
* a function that is not deployed: the backend cools down for ten times as long,
  with a warning that names the missing function;
* an invocation predicted to pass the function's timeout (at most the 15-minute
  limit), a function timeout, an out-of-memory or other runtime crash, and a read
  timeout: only this invocation avoids Lambda from then on.

Errors the op body raised (a broken video) are not the backend's fault: they fail
the task run with the op's own error.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llama_prefect.backends.base import RemoteBackend, RemoteCall, RemoteOutcome
from llama_prefect.backends.remote import build_request, read_response
from llama_prefect.core.pricing import MEMORY_KNOB, PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError, RemoteError, ReplanError

logger = logging.getLogger(__name__)

LAMBDA = "lambda"
#: Lambda's hard limit on one invocation, in seconds.
MAX_TIMEOUT_S = 900.0
#: Memory at which a function gets one full vCPU, in MB.
FULL_VCPU_MB = 1769
#: Memory sizes offered as the ``memory_mb`` knob by default (ours).
MEMORY_SIZES_MB = (1024, 1769, 3008)
#: Smallest and largest memory Lambda allows, in MB.
MEMORY_RANGE_MB = (128, 10240)

_THROTTLES = {
    "TooManyRequestsException",
    "ThrottlingException",
    "EC2ThrottledException",
    "ENILimitReachedException",
    "SubnetIPAddressLimitReachedException",
    "ServiceException",
    "ResourceNotReadyException",
    "ResourceConflictException",
}
_REPORT = {
    "billed_ms": re.compile(r"Billed Duration:\s*([0-9.]+)\s*ms"),
    "duration_ms": re.compile(r"\bDuration:\s*([0-9.]+)\s*ms"),
    "memory_mb": re.compile(r"Memory Size:\s*([0-9]+)\s*MB"),
    "max_memory_used_mb": re.compile(r"Max Memory Used:\s*([0-9]+)\s*MB"),
    "init_ms": re.compile(r"Init Duration:\s*([0-9.]+)\s*ms"),
}


@dataclass(frozen=True)
class LambdaBackend(RemoteBackend):
    """Runs invocations on AWS Lambda functions.

    Attributes:
        name: Backend name in configurations and the price file.
        capacity: Concurrent invocations allowed (the function's concurrency).
        startup_s: Invoke overhead of a warm function plus S3 transfers, in seconds
            (ours; feedback corrects the op's profile for what remains).
        function_name: Function name, ``{memory_mb}`` replaced by the knob's value.
        timeout_s: The functions' configured timeout, at most 900 s.
        default_memory_mb: Memory used when a configuration has no ``memory_mb``.
        staging_uri: ``s3://bucket/prefix`` for arguments and results too large
            for the payload; None to refuse them.
        cooldown_s: Seconds the backend is not planned on after throttling.
        credentials: prefect-aws `AwsCredentials`; None for boto3's default chain.
        prices: The price catalog; the packaged one when None.
        client: A boto3 Lambda client to use instead of one built from
            `credentials` (tests pass a stubbed one).
    """

    name: str = LAMBDA
    capacity: int = 50
    startup_s: float = 0.3
    function_name: str = "llama-prefect-op-{memory_mb}"
    timeout_s: float = MAX_TIMEOUT_S
    default_memory_mb: int = FULL_VCPU_MB
    staging_uri: str | None = None
    cooldown_s: float = 30.0
    credentials: Any = field(default=None, repr=False, compare=False)
    prices: PriceCatalog | None = field(default=None, repr=False, compare=False)
    client: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ConfigurationError(
                f"timeout_s must be in (0, {MAX_TIMEOUT_S:.0f}] (Lambda's 15-minute "
                f"limit), but got {self.timeout_s!r}"
            )

    # -- one invocation ----------------------------------------------------------------

    def run(self, call: RemoteCall) -> RemoteOutcome:
        """Invokes the function for `call`'s memory size and returns the outcome.

        Raises:
            ReplanError: Lambda could not take or finish it (see the module doc).
            LlamaError: The op body raised one of ours; RemoteError anything else.
        """
        memory_mb = self.memory_of(call)
        if call.predicted_s > self.timeout_s:
            raise ReplanError(
                f"{call.op} is predicted to take {call.predicted_s:.3g} s, past the "
                f"function's {self.timeout_s:.3g} s limit",
                backend=self.name,
                whole_backend=False,
            )
        payload = json.dumps(build_request(call, self.staging_uri)).encode("utf-8")
        response = self._invoke(self.function_for(memory_mb), payload)
        report = parse_report(response.get("LogResult"))
        body = json.loads(response["Payload"].read() or b"null")
        cost_usd = self.cost_usd(report, body, memory_mb)
        if response.get("FunctionError"):
            raise self._function_error(call, body, cost_usd)
        value = read_response(body, call)
        logger.debug(
            "%s on %s: billed %s ms at %s MB, $%.8f",
            call.op,
            self.function_for(memory_mb),
            report.get("billed_ms"),
            memory_mb,
            cost_usd,
        )
        details: dict[str, Any] = {"function": self.function_for(memory_mb)}
        details.update({"memory_mb": memory_mb, **report})
        return RemoteOutcome(value, cost_usd, _body_seconds(body), details)

    def memory_of(self, call: RemoteCall) -> int:
        """The memory size `call` runs with, in MB (checked against Lambda's range)."""
        memory_mb = int(call.config.as_dict().get(MEMORY_KNOB, self.default_memory_mb))
        low, high = MEMORY_RANGE_MB
        if not low <= memory_mb <= high:
            raise ConfigurationError(
                f"memory_mb must be in [{low}, {high}] for Lambda, but got {memory_mb}"
            )
        return memory_mb

    def function_for(self, memory_mb: int) -> str:
        """The function name for one memory size."""
        return self.function_name.format(memory_mb=memory_mb)

    def cost_usd(self, report: dict[str, float], body: Any, memory_mb: int) -> float:
        """Dollars billed: billed ms x GB x price per GB-second + the request fee.

        The billed duration comes from the REPORT log line; without one, from the
        handler's own timing rounded up to the millisecond.
        """
        billed_ms = report.get("billed_ms")
        if billed_ms is None:
            billed_ms = math.ceil(_body_seconds(body) * 1000.0)
        memory = report.get("memory_mb", memory_mb)
        return self._prices.memory_cost_usd(self.name, int(billed_ms), float(memory))

    # -- boto3 -------------------------------------------------------------------------

    @cached_property
    def _prices(self) -> PriceCatalog:
        return self.prices or PriceCatalog.load()

    @cached_property
    def _client(self) -> Any:
        if self.client is not None:
            return self.client
        from botocore.config import Config

        from llama_prefect.s3 import current_credentials

        creds = self.credentials or current_credentials()
        params = creds.aws_client_parameters.get_params_override()
        # One attempt only: a throttled call is planned elsewhere, not retried
        # here; the read timeout must outlast the function's own timeout.
        ours = Config(
            read_timeout=int(self.timeout_s) + 30,
            connect_timeout=10,
            retries={"max_attempts": 1, "mode": "standard"},
        )
        params["config"] = params["config"].merge(ours) if "config" in params else ours
        if creds.region_name:
            params["region_name"] = creds.region_name
        return creds.get_boto3_session().client("lambda", **params)

    def _invoke(self, function: str, payload: bytes) -> dict[str, Any]:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            ReadTimeoutError,
        )

        try:
            response: dict[str, Any] = self._client.invoke(
                FunctionName=function,
                InvocationType="RequestResponse",
                LogType="Tail",
                Payload=payload,
            )
            return response
        except ClientError as exc:
            raise self._client_error(function, exc) from exc
        except ReadTimeoutError as exc:
            raise ReplanError(
                f"no answer from {function} within {self.timeout_s + 30:.0f} s",
                backend=self.name,
                whole_backend=False,
            ) from exc
        except ConnectionError as exc:
            raise ReplanError(
                f"cannot reach Lambda for {function}: {exc}",
                backend=self.name,
                cooldown_s=self.cooldown_s,
            ) from exc

    def _client_error(self, function: str, exc: Any) -> Exception:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _THROTTLES or status == 429 or status >= 500:
            return ReplanError(
                f"Lambda refused {function} ({code or status}); planning elsewhere "
                f"for {self.cooldown_s:.0f} s",
                backend=self.name,
                cooldown_s=self.cooldown_s,
            )
        if code == "ResourceNotFoundException":
            logger.warning(
                "Lambda function %s does not exist; deploy infra/cloudformation.yaml "
                "or set LambdaBackend(function_name=...)",
                function,
            )
            return ReplanError(
                f"Lambda function {function} does not exist",
                backend=self.name,
                cooldown_s=self.cooldown_s * 10,
            )
        return ConfigurationError(f"Lambda refused {function}: {code}: {exc}")

    def _function_error(
        self, call: RemoteCall, body: Any, cost_usd: float
    ) -> Exception:
        """The error for a response with ``FunctionError`` set (a crashed handler)."""
        body = body if isinstance(body, dict) else {}
        kind = str(body.get("errorType", ""))
        message = str(body.get("errorMessage", ""))
        if "timed out" in message.lower() or kind.startswith(("Sandbox.", "Runtime.")):
            return ReplanError(
                f"{call.op} did not finish on Lambda ({kind or 'error'}: {message})",
                backend=self.name,
                whole_backend=False,
                cost_usd=cost_usd,
            )
        return RemoteError(
            f"{call.op}: the Lambda handler crashed ({kind}: {message})",
            error_type=kind,
        )


def _body_seconds(body: Any) -> float:
    """Seconds the handler says the op body ran (0 when it does not say)."""
    return float(body.get("duration_s", 0.0)) if isinstance(body, dict) else 0.0


def parse_report(log_result: str | None) -> dict[str, float]:
    """The figures of the REPORT line in a base64 ``LogResult`` (empty if none)."""
    if not log_result:
        return {}
    try:
        text = base64.b64decode(log_result).decode("utf-8", errors="replace")
    except ValueError:
        return {}
    lines = [line for line in text.splitlines() if line.startswith("REPORT")]
    if not lines:
        return {}
    found = {}
    for key, pattern in _REPORT.items():
        match = pattern.search(lines[-1])
        if match:
            found[key] = float(match.group(1))
    return found


def seed_lambda_profiles(
    store: ProfileStore,
    op: str,
    *,
    source_backend: str = "local-cpu",
    memory_sizes_mb: tuple[int, ...] = MEMORY_SIZES_MB,
    backend: str = LAMBDA,
) -> int:
    """Seeds Lambda profiles of `op` from its single-slot profiles on a CPU backend.

    A function with `m` MB gets ``min(1, m / 1769)`` of a vCPU, so an op measured at
    `t` seconds per unit on one core is seeded at ``t * max(1, 1769 / m)``; above
    1,769 MB a single-threaded body runs no faster. This is an estimate from the
    vCPU share alone: it ignores the Lambda machine's clock against the local one
    and the cold start, which online feedback then corrects.

    Returns:
        The number of configurations seeded.
    """
    from llama_prefect.core.pipeline import THREADS_KNOB, Configuration

    seeded = 0
    for config in store.configurations(op):
        knobs = config.as_dict()
        if config.backend != source_backend or int(knobs.get(THREADS_KNOB, 1)) != 1:
            continue
        prof = store.profile(op, config)
        s_per_unit = store.predict_s_per_unit(op, config)
        fixed_s = store.predict_s(op, config, 0.0)
        for memory_mb in memory_sizes_mb:
            target = Configuration.of(backend, {**knobs, MEMORY_KNOB: memory_mb})
            scale = max(1.0, FULL_VCPU_MB / memory_mb)
            store.seed(
                op,
                target,
                s_per_unit * scale,
                accuracy=prof.accuracy,
                fixed_s=fixed_s * scale,
            )
            seeded += 1
    return seeded
