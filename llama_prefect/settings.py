"""Run settings: what one pipeline run asks for, validated before any work starts.

The same models check the command line, the flow's parameters (from Python, from
`prefect deployment run -p`, from a schedule or the UI) and the runner's constructor,
so a bad value fails the same way everywhere: with a `ConfigurationError` that names
the setting, the value received and what is allowed. Nothing falls back to a default
when a value is bad.

The annotated types below (`SloSeconds`, `VideoSourceText`, ...) are also the flow's
parameter annotations, so the parameter schema that `prefect deploy` stores carries the
same bounds and descriptions: the Prefect server refuses a bad value when the run is
created, and the UI shows each parameter's description.

A video source is a local folder, a local video file, or an ``s3://bucket/prefix``
URI (listed by `llama_prefect.sources` through `llama_prefect.s3`). The results
folder of a resumable archive run must be local.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from llama_prefect.errors import ConfigurationError

#: An S3 bucket name: 3-63 lowercase letters, digits, dots and dashes, alphanumeric at
#: both ends (the AWS naming rules, less the rarely relevant IP-address rule).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: A Prefect block document name: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class VideoSource:
    """Where the videos of a run come from.

    Attributes:
        text: The source as given.
        kind: ``local`` (a folder or one file) or ``s3`` (a bucket and key prefix).
        path: The local path, for ``local``.
        bucket: The bucket, for ``s3``.
        prefix: The key prefix, for ``s3`` (may be empty: the whole bucket).
    """

    text: str
    kind: Literal["local", "s3"]
    path: Path | None = None
    bucket: str | None = None
    prefix: str | None = None


def parse_video_source(text: str, *, must_exist: bool = True) -> VideoSource:
    """Parses and checks a video source.

    Args:
        text: A local folder or file, or ``s3://bucket/prefix``.
        must_exist: Require a local source to exist now.

    Raises:
        ConfigurationError: For an empty value, another URI scheme, a malformed S3
            URI, or (with `must_exist`) a local path that does not exist.
    """
    if not text or not text.strip():
        raise ConfigurationError(
            "videos must name a folder, a video file or an s3://bucket/prefix, but "
            "got an empty value"
        )
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            raise ConfigurationError(
                f"videos: {text!r} has no valid S3 bucket name ({bucket!r}); write "
                "s3://BUCKET/PREFIX with a bucket of 3-63 lowercase letters, digits, "
                "dots or dashes"
            )
        return VideoSource(text, "s3", bucket=bucket, prefix=prefix)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"videos: the {scheme}:// scheme is not supported (got {text!r}); give a "
            "local folder or file, or an s3://bucket/prefix"
        )
    path = Path(text).expanduser()
    if must_exist and not path.exists():
        raise ConfigurationError(missing_videos(text))
    return VideoSource(text, "local", path=path)


def missing_videos(text: str) -> str:
    """What to say of a local videos path that does not exist.

    Only the sample archive's own folder is something `make samples` would make.
    """
    head = f"videos must be a video file or a folder of them, but {text} does not exist"
    if Path(text).name == "samples":
        return f"{head}; run `make samples` to build the sample archive there"
    return f"{head}; pass an existing file or folder"


def _video_source_text(text: str) -> str:
    parse_video_source(text)
    return text


def _local_folder(text: str | None) -> str | None:
    if text is not None and "://" in text:
        raise ConfigurationError(
            f"results_dir must be a local folder; results in object stores are not "
            f"built yet, but got {text!r}"
        )
    return text


def _block_name(name: str | None) -> str | None:
    if name is not None and not _BLOCK_NAME.match(name):
        raise ConfigurationError(
            f"block names hold lowercase letters, digits and dashes, but got {name!r}; "
            "give the name the block was saved under"
        )
    return name


SloSeconds = Annotated[
    float,
    Field(
        gt=0,
        allow_inf_nan=False,
        title="SLO (s)",
        description="Seconds the whole run may take: one deadline for the archive.",
    ),
]
ObjectiveName = Annotated[
    Literal["cost", "latency", "cheapest"],
    Field(
        title="Objective",
        description="cost: the cheapest configuration that meets each invocation's "
        "target; latency: always the fastest; cheapest: ignore targets.",
    ),
]
AccuracyFloor = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        title="Accuracy floor",
        description="Configurations that agree with the op's reference "
        "configuration less than this, in [0, 1], are never chosen.",
    ),
]
VideoSourceText = Annotated[
    str,
    Field(
        min_length=1,
        title="Videos",
        description="A folder of videos, one video file, or an s3://bucket/prefix.",
    ),
    AfterValidator(_video_source_text),
]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
BlockName = Annotated[str | None, AfterValidator(_block_name)]


def _check(model: type[BaseModel], what: str, hint: str, values: dict[str, Any]) -> Any:
    """Validates `values` with `model`, raising `ConfigurationError` when they fail."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: "
            f"{_reason(err)} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid {what}: {problems}. {hint}") from None


def _reason(err: Any) -> str:
    """The message of one pydantic error, without pydantic's 'Value error,' prefix."""
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ConfigurationError):
        return str(ctx_error)
    return str(err["msg"])


class RunSettings(BaseModel):
    """The settings of one run that the runner needs.

    Attributes:
        slo_s: Seconds the whole run may take; finite and above zero.
        objective: ``cost``, ``latency`` or ``cheapest``.
        accuracy_floor: Least accuracy a configuration must have, in [0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slo_s: SloSeconds
    objective: ObjectiveName = "cost"
    accuracy_floor: AccuracyFloor = 0.0

    @classmethod
    def check(cls, **values: Any) -> RunSettings:
        """Validates `values`, raising `ConfigurationError` with a readable message."""
        return _check(
            cls,
            "run settings",
            "Use a finite --slo-s above 0, --objective cost, latency or cheapest, and "
            "--accuracy-floor in [0, 1].",
            values,
        )


class CrossingParameters(RunSettings):
    """Every parameter of the crossing flow, as a deployment or schedule passes them.

    Attributes:
        videos: A folder, a video file or an ``s3://bucket/prefix``.
        segment_s: Length of the segments a video is cut into, in seconds.
        window_s: Length of the windows people are counted over, in seconds.
        crowd_threshold: Mean people in a window from which it counts as crowded.
        report_path: Where the JSON run report is written.
        results_dir: Folder of the per-video results that let an archive run resume;
            None keeps no results and processes every video.
        backend_settings: Name of a saved ``llama-backend-settings`` block, or None
            for every local backend.
        price_catalog: Name of a saved ``llama-price-catalog`` block, or None for
            the price file shipped with the package.
        profile_store: Name of a saved ``llama-profile-store`` block, or None for
            the runner's default location.
    """

    videos: VideoSourceText
    segment_s: PositiveSeconds = 4.0
    window_s: PositiveSeconds = 10.0
    crowd_threshold: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 4.0
    report_path: Annotated[str, Field(min_length=1)] = "runs/latest/report.json"
    results_dir: Annotated[str | None, AfterValidator(_local_folder)] = None
    backend_settings: BlockName = None
    price_catalog: BlockName = None
    profile_store: BlockName = None

    @classmethod
    def check(cls, **values: Any) -> CrossingParameters:
        """Validates the flow's parameters; raises `ConfigurationError` on a bad one."""
        return _check(
            cls,
            "crossing parameters",
            "Give videos as an existing folder or file (or s3://bucket/prefix), slo_s "
            "and segment_s finite and above 0, objective cost, latency or cheapest, "
            "accuracy_floor in [0, 1], and block names as saved.",
            values,
        )
