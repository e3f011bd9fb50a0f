"""What crosses the network to a remote backend: JSON requests and responses.

A remote invocation sends the op body's import path, its keyword arguments and
nothing else; the answer carries the op's return value or its error. Both are plain
JSON: no pickle ever crosses the network, so neither side runs code the other chose
beyond importing a named function or model class from an allowed module.

Values are encoded as JSON with two tagged forms for what JSON lacks:

* a pydantic model becomes ``{"$model": "module:Class", "data": {...}}`` (its
  ``model_dump(mode="json")``), decoded with ``Class.model_validate``;
* a dataclass becomes ``{"$dataclass": "module:Class", "fields": {...}}``, each field
  encoded in turn.

Large data does not belong in a payload: arrays are refused (write them to S3 and
pass the URI), and a request or response whose JSON passes `INLINE_LIMIT_BYTES`
travels as an S3 object named in the payload instead.

Names are resolved only inside the modules listed in `allowed_modules` (the package
itself, plus ``$LLAMA_PREFECT_REMOTE_MODULES``, a comma-separated list of module
prefixes for user pipelines).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Any

from llama_prefect.errors import ConfigurationError

#: Version of the request and response format.
WIRE_FORMAT = 1
#: JSON larger than this travels through S3 (ours: far below Lambda's 6 MB).
INLINE_LIMIT_BYTES = 256 * 1024
#: Environment variable with extra module prefixes that may be imported remotely.
MODULES_ENV = "LLAMA_PREFECT_REMOTE_MODULES"

_MODEL = "$model"
_DATACLASS = "$dataclass"


def allowed_modules() -> tuple[str, ...]:
    """Module prefixes whose functions and classes may be named in a payload."""
    extra = [m.strip() for m in os.environ.get(MODULES_ENV, "").split(",")]
    return ("llama_prefect", *[m for m in extra if m])


def ref_of(obj: Any) -> str:
    """The ``module:qualname`` import path of a function or class."""
    module, qualname = getattr(obj, "__module__", None), obj.__qualname__
    if not module or "<locals>" in qualname:
        raise ConfigurationError(
            f"{obj!r} cannot be named in a remote payload: define it at the top "
            "level of a module"
        )
    return f"{module}:{qualname}"


def resolve(ref: str) -> Any:
    """Imports the object a ``module:qualname`` path names, from allowed modules only.

    Raises:
        ConfigurationError: The path is malformed, outside the allowed modules, or
            names nothing.
    """
    module, _, qualname = ref.partition(":")
    allowed = allowed_modules()
    if not qualname or not any(
        module == p or module.startswith(p + ".") for p in allowed
    ):
        raise ConfigurationError(
            f"{ref!r} is not a 'module:name' path inside the allowed modules "
            f"{list(allowed)}; add the pipeline's module to ${MODULES_ENV}"
        )
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{ref!r} names nothing in {module}") from None
    return obj


def encode(value: Any) -> Any:
    """Turns `value` into JSON-ready data (see the module docstring for the forms)."""
    from pydantic import BaseModel

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, BaseModel):
        return {_MODEL: ref_of(type(value)), "data": value.model_dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
        return {_DATACLASS: ref_of(type(value)), "fields": fields}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return _encode_mapping(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return encode(value.item())  # a numpy scalar
    raise ConfigurationError(
        f"a {type(value).__name__} cannot travel in a remote payload; pass plain "
        "values, pydantic models or dataclasses, and write large data such as "
        "arrays to S3 and pass its URI"
    )


def _encode_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or key in (_MODEL, _DATACLASS):
            raise ConfigurationError(
                f"remote payloads take dicts with text keys other than {_MODEL!r} "
                f"and {_DATACLASS!r}, but got the key {key!r}"
            )
        out[key] = encode(item)
    return out


def decode(data: Any) -> Any:
    """Rebuilds what `encode` produced."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if _MODEL in data:
        return _model_class(data[_MODEL]).model_validate(data["data"])
    if _DATACLASS in data:
        cls = resolve(data[_DATACLASS])
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ConfigurationError(f"{data[_DATACLASS]!r} is not a dataclass")
        return cls(**{k: decode(v) for k, v in data["fields"].items()})
    return {k: decode(v) for k, v in data.items()}


def _model_class(ref: str) -> Any:
    from pydantic import BaseModel

    cls = resolve(ref)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ConfigurationError(f"{ref!r} is not a pydantic model class")
    return cls


def op_function(ref: str) -> Any:
    """The plain function an op body path names (a Prefect task's ``fn`` if a task)."""
    obj = resolve(ref)
    fn = getattr(obj, "fn", obj)
    if not callable(fn):
        raise ConfigurationError(f"{ref!r} is not a function or a Prefect task")
    return fn
