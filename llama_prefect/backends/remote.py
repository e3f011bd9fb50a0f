"""What the remote backends share: building requests and reading responses.

A request carries the op body's import path and its encoded keyword arguments; when
their JSON passes `llama_prefect.wire.INLINE_LIMIT_BYTES` they are written to the
backend's S3 staging prefix and the request names the object instead. The response
is the handler's answer (see `llama_prefect.handler`), inline or in S3.

An error the op body raised on the remote side comes back as the same
`llama_prefect.errors` class when it is one of ours (so a `VideoError` stays
deterministic for the retry policy), else as a `RemoteError` naming its type.
"""

from __future__ import annotations

import json
from typing import Any

from llama_prefect import errors, wire
from llama_prefect.backends.base import RemoteCall
from llama_prefect.s3 import S3Uri, parse_uri


def staging_key(staging_uri: str | None, call: RemoteCall, name: str) -> str | None:
    """The S3 URI of one staging object of `call`, or None without staging."""
    if not staging_uri:
        return None
    base: S3Uri = parse_uri(staging_uri)
    return str(base.join(call.invocation_id, f"{call.attempt}-{name}.json"))


def build_request(call: RemoteCall, staging_uri: str | None) -> dict[str, Any]:
    """The JSON request for `call`, its arguments staged in S3 when too large.

    Raises:
        ConfigurationError: The arguments are too large to send inline and the
            backend has no staging prefix.
    """
    encoded = wire.encode(call.kwargs)
    request: dict[str, Any] = {
        "format": wire.WIRE_FORMAT,
        "invocation": call.invocation_id,
        "op": call.op,
        "function": call.function,
    }
    result_uri = staging_key(staging_uri, call, "result")
    if result_uri:
        request["result_uri"] = result_uri
    text = json.dumps(encoded)
    if len(text) <= wire.INLINE_LIMIT_BYTES:
        request["kwargs"] = encoded
        return request
    kwargs_uri = staging_key(staging_uri, call, "kwargs")
    if kwargs_uri is None:
        raise errors.ConfigurationError(
            f"{call.op}: the arguments take {len(text)} bytes of JSON, more than "
            f"{wire.INLINE_LIMIT_BYTES} may travel inline; give the backend a "
            "staging_uri (s3://bucket/prefix) so they travel through S3"
        )
    from llama_prefect import s3

    request["kwargs_uri"] = s3.put_bytes(kwargs_uri, text.encode("utf-8"))
    return request


def read_response(response: dict[str, Any], call: RemoteCall) -> Any:
    """The op's return value from a handler response; raises the op's error.

    Raises:
        LlamaError: The op body raised one of ours (same class, same message).
        RemoteError: It raised anything else, or the response is malformed.
    """
    if response.get("ok") is True:
        if "result_uri" in response:
            from llama_prefect import s3

            return wire.decode(s3.get_json(response["result_uri"]))
        return wire.decode(response.get("result"))
    error = response.get("error") or {}
    kind = str(error.get("type", "unknown"))
    message = f"{call.op} failed on {call.config.backend}: {error.get('message', '')}"
    ours = getattr(errors, kind, None)
    if (
        isinstance(ours, type)
        and issubclass(ours, errors.LlamaError)
        and ours not in (errors.RemoteError, errors.ReplanError)
    ):
        raise ours(message)
    raise errors.RemoteError(
        f"{message} ({kind})",
        error_type=kind,
        deterministic=bool(error.get("deterministic")),
    )
