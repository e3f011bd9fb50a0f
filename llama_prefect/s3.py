"""S3 as a video source, a results store and a profile store, through prefect-aws.

Everything that lives in S3 is named by an ``s3://bucket/key`` URI. A flow may take a
prefix (``s3://bucket/videos/``) as its video source: `list_videos` lists the video
files under it, and the URIs themselves travel as the videos' names through the
pipeline, into segments, payloads and the run report. Code that needs a real file
(a decoder) asks `local_path` for one: the object is downloaded once into a local
cache keyed by its URI and ETag, so one worker reads each video once however many
segments it decodes.

Credentials are a prefect-aws `AwsCredentials` block. `use_credentials` sets the ones
this process uses; without it the default boto3 chain (environment, profile, role)
applies, which is what a Lambda function or an ECS task wants. Secrets never leave the
block: nothing here writes them to a payload, a log line or an object.

boto3 and prefect-aws are imported when a function here is first called, not when
the module is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from llama_prefect.errors import ConfigurationError, StorageError

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials

logger = logging.getLogger(__name__)

SCHEME = "s3://"
#: File suffixes listed as videos under a prefix.
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")
#: Environment variable naming the local cache folder for downloaded objects.
CACHE_ENV = "LLAMA_PREFECT_CACHE"

# S3 bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_lock = threading.Lock()
_credentials: AwsCredentials | None = None
_fetch_locks: dict[str, threading.Lock] = {}


@dataclass(frozen=True)
class S3Uri:
    """A parsed ``s3://bucket/key`` URI.

    Attributes:
        bucket: The bucket name.
        key: The object key or prefix, without a leading slash; may be empty.
    """

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """The URI of `parts` below this one, joined with ``/``."""
        key = "/".join([self.key.rstrip("/"), *(p.strip("/") for p in parts)])
        return S3Uri(self.bucket, key.lstrip("/"))


def is_s3_uri(value: object) -> bool:
    """True when `value` is a string that starts with ``s3://``."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_uri(uri: str) -> S3Uri:
    """Parses and checks an ``s3://bucket/key`` URI.

    Keys with ``..`` segments, backslashes or control characters are refused, so a
    key can never name a path outside the folder it is mapped into.

    Raises:
        ConfigurationError: The text is not a valid S3 URI.
    """
    if not is_s3_uri(uri):
        raise ConfigurationError(
            f"an S3 location must look like s3://bucket/key, but got {uri!r}"
        )
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigurationError(
            f"{uri!r} names the bucket {bucket!r}, which is not a valid S3 bucket "
            "name (3-63 lowercase letters, digits, dots and hyphens)"
        )
    if ".." in PurePosixPath(key).parts or "\\" in key or _has_control(key):
        raise ConfigurationError(
            f"{uri!r} has a key with '..', a backslash or a control character; "
            "use plain keys such as s3://bucket/videos/cam1.mp4"
        )
    return S3Uri(bucket, key)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def use_credentials(credentials: AwsCredentials | None) -> None:
    """Sets the prefect-aws credentials this process uses for S3 (None: boto3's)."""
    global _credentials
    with _lock:
        _credentials = credentials


def current_credentials() -> AwsCredentials:
    """The credentials set with `use_credentials`, else a default `AwsCredentials`."""
    from prefect_aws import AwsCredentials

    with _lock:
        return _credentials if _credentials is not None else AwsCredentials()


def s3_client(credentials: AwsCredentials | None = None) -> Any:
    """A boto3 S3 client from prefect-aws credentials (with their endpoint, if any)."""
    creds = credentials or current_credentials()
    return creds.get_s3_client()


def bucket(uri: str | S3Uri, credentials: AwsCredentials | None = None) -> Any:
    """The prefect-aws `S3Bucket` block of `uri`'s bucket, rooted at its key."""
    from prefect_aws.s3 import S3Bucket

    where = uri if isinstance(uri, S3Uri) else parse_uri(uri)
    return S3Bucket(
        bucket_name=where.bucket,
        credentials=credentials or current_credentials(),
        bucket_folder=where.key.rstrip("/"),
    )


# -- video source --------------------------------------------------------------------


def list_videos(prefix: str, credentials: AwsCredentials | None = None) -> list[str]:
    """The URIs of the video files under an S3 prefix, sorted.

    Args:
        prefix: ``s3://bucket/folder/``; every object below it whose name ends in one
            of `VIDEO_SUFFIXES` is listed, in sub-folders too.
        credentials: prefect-aws credentials; default `current_credentials()`.

    Raises:
        ConfigurationError: The URI is invalid, or no video is under it.
        StorageError: S3 refused the listing (missing bucket, no permission).
    """
    where = parse_uri(prefix)
    try:
        objects = bucket(S3Uri(where.bucket, ""), credentials).list_objects(
            folder=where.key
        )
    except Exception as exc:  # botocore's errors carry the reason in their text
        raise StorageError(
            f"cannot list {prefix}: {exc}. Check the bucket name and that the "
            "credentials may call s3:ListBucket on it."
        ) from exc
    found = sorted(
        f"{SCHEME}{where.bucket}/{obj['Key']}"
        for obj in objects
        if obj["Key"].lower().endswith(VIDEO_SUFFIXES)
    )
    if not found:
        raise ConfigurationError(
            f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {prefix}; pass "
            "the prefix of the archive's videos"
        )
    return found


def cache_dir() -> Path:
    """Where downloaded objects are kept: ``$LLAMA_PREFECT_CACHE`` or a temp folder."""
    folder = Path(
        os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "llama-prefect"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def local_path(path: str, credentials: AwsCredentials | None = None) -> str:
    """A local file for `path`: itself when local, a cached download for a URI.

    The cache file is named from a hash of the URI and the object's ETag, so an
    object that changes is downloaded again, and it is written to a temporary name
    and renamed, so a reader never sees half a file.

    Raises:
        StorageError: The object cannot be read.
    """
    if not is_s3_uri(path):
        return path
    where = parse_uri(path)
    client = s3_client(credentials)
    try:
        etag = client.head_object(Bucket=where.bucket, Key=where.key)["ETag"]
    except Exception as exc:
        raise StorageError(
            f"cannot read {path}: {exc}. Check that the object exists and that the "
            "credentials may call s3:GetObject on it."
        ) from exc
    digest = hashlib.sha256(f"{path}\n{etag}".encode()).hexdigest()[:24]
    target = cache_dir() / f"{digest}{PurePosixPath(where.key).suffix}"
    with _lock:
        guard = _fetch_locks.setdefault(str(target), threading.Lock())
    with guard:
        if not target.exists():
            _download(client, where, target)
    return str(target)


def _download(client: Any, where: S3Uri, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
    os.close(fd)
    try:
        client.download_file(where.bucket, where.key, tmp)
        os.replace(tmp, target)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot download {where}: {exc}") from exc
    logger.debug("downloaded %s to %s", where, target)


# -- objects: results, reports, profiles ---------------------------------------------


def put_bytes(uri: str, data: bytes, credentials: AwsCredentials | None = None) -> str:
    """Writes `data` to the object `uri` and returns the URI."""
    where = parse_uri(uri)
    try:
        bucket(S3Uri(where.bucket, ""), credentials).write_path(where.key, data)
    except Exception as exc:
        raise StorageError(
            f"cannot write {uri}: {exc}. Check that the credentials may call "
            "s3:PutObject on it."
        ) from exc
    return uri


def get_bytes(uri: str, credentials: AwsCredentials | None = None) -> bytes:
    """Reads the object `uri`."""
    where = parse_uri(uri)
    try:
        data: bytes = bucket(S3Uri(where.bucket, ""), credentials).read_path(where.key)
    except Exception as exc:
        raise StorageError(
            f"cannot read {uri}: {exc}. Check that the object exists and that the "
            "credentials may call s3:GetObject on it."
        ) from exc
    return data


def put_json(uri: str, value: Any, credentials: AwsCredentials | None = None) -> str:
    """Writes `value` as UTF-8 JSON to `uri` and returns the URI."""
    data = json.dumps(value, indent=1, default=str).encode("utf-8")
    return put_bytes(uri, data, credentials)


def get_json(uri: str, credentials: AwsCredentials | None = None) -> Any:
    """Reads the JSON object at `uri`."""
    return json.loads(get_bytes(uri, credentials).decode("utf-8"))


def load_profiles(location: str | os.PathLike[str]) -> Any:
    """Reads a profile store from a local path or an S3 URI."""
    from llama_prefect.core.profiles import ProfileStore

    text = os.fspath(location)
    if not is_s3_uri(text):
        return ProfileStore.load(text)
    return ProfileStore.from_dict(get_json(text))


def save_profiles(store: Any, location: str | os.PathLike[str]) -> str:
    """Writes a profile store to a local path or an S3 URI; returns where."""
    text = os.fspath(location)
    if not is_s3_uri(text):
        return str(store.save(text))
    return put_json(text, store.to_dict())


def write_report(report: Any, location: str | os.PathLike[str]) -> str:
    """Writes a run report to a local path or an S3 URI; returns where."""
    text = os.fspath(location)
    if not is_s3_uri(text):
        from llama_prefect.report import write_report as write_local

        return str(write_local(report, text))
    return put_json(text, report)
