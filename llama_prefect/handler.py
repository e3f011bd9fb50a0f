"""The remote side of an invocation: run one op body from a JSON request.

A request names the op body (``function``, an import path), its keyword arguments
(``kwargs``, encoded by `llama_prefect.wire`, or ``kwargs_uri`` when they were too
large to send inline) and where a large result may be written (``result_uri``). The
handler imports the body, runs it, and answers with the encoded result, or the S3 URI
it wrote the result to, the seconds the body took and its peak memory; or with the
error's type and message.

The Prefect task engine does not run here: the flow process keeps the task run's
state, retries and logs. So this module needs no Prefect API and no Prefect import
of its own (the op's module may import Prefect to declare its tasks).

`lambda_handler` is the AWS Lambda entry point (``llama_prefect.handler.lambda_handler``
in the image's CMD); the work-pool flow in ``llama_prefect.flows.remote_op`` calls
`handle` too.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from typing import Any

from llama_prefect import errors, wire

logger = logging.getLogger(__name__)

#: Errors that would recur on the same input anywhere (not worth another backend).
DETERMINISTIC = (errors.VideoError, errors.ConfigurationError)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Runs the op body a request names and returns the response.

    Args:
        request: ``format``, ``function``, ``kwargs`` or ``kwargs_uri``, and
            optionally ``result_uri`` and ``invocation`` (an id used in logs).

    Returns:
        ``{"format", "ok": True, "result" or "result_uri", "duration_s",
        "max_rss_mb"}`` on success; ``{"format", "ok": False, "error": {"type",
        "message", "deterministic"}, "duration_s"}`` when the body raised.
    """
    started = time.perf_counter()
    try:
        fn = wire.op_function(_field(request, "function"))
        kwargs = _kwargs(request)
        logger.info("invocation %s: %s", request.get("invocation", "?"), fn.__name__)
        value = fn(**kwargs)
        response = _result(request, wire.encode(value))
    except Exception as exc:  # every failure becomes an answer, never a crash
        response = {"ok": False, "error": _error(exc)}
    response["format"] = wire.WIRE_FORMAT
    response["duration_s"] = time.perf_counter() - started
    response["max_rss_mb"] = _max_rss_mb()
    return response


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """AWS Lambda entry point: the event is the request, the return the response."""
    return handle(event)


def _field(request: dict[str, Any], name: str) -> Any:
    if request.get("format") != wire.WIRE_FORMAT:
        raise errors.ConfigurationError(
            f"request format {request.get('format')!r} is not {wire.WIRE_FORMAT}; "
            "deploy the same llama-prefect version as the flow uses"
        )
    if name not in request:
        raise errors.ConfigurationError(f"the request has no {name!r}")
    return request[name]


def _kwargs(request: dict[str, Any]) -> dict[str, Any]:
    if "kwargs_uri" in request:
        from llama_prefect import s3

        data = s3.get_json(request["kwargs_uri"])
    else:
        data = _field(request, "kwargs")
    kwargs = wire.decode(data)
    if not isinstance(kwargs, dict):
        raise errors.ConfigurationError("the request's kwargs must be a JSON object")
    return kwargs


def _result(request: dict[str, Any], encoded: Any) -> dict[str, Any]:
    text = json.dumps(encoded)
    if len(text) <= wire.INLINE_LIMIT_BYTES or not request.get("result_uri"):
        return {"ok": True, "result": encoded}
    from llama_prefect import s3

    uri = s3.put_bytes(request["result_uri"], text.encode("utf-8"))
    return {"ok": True, "result_uri": uri}


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "deterministic": isinstance(exc, DETERMINISTIC),
    }


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
