"""Per-video results of archive runs, stored so that an interrupted run can resume.

Each video's result is one JSON file, named by the SHA-256 of the video's bytes, in a
folder named by the pipeline and its version tag:

    RESULTS_DIR/PIPELINE/VERSION_TAG/SHA256.json

The version tag joins the pipeline's version (bumped when an op's body or the meaning
of its answer changes) and a short hash of the parameters that change the answer
(segment length, window length, crowd threshold). The SLO, the objective and the
accuracy floor choose configurations, not what the answer means, so they are not in
the key: a rerun with another SLO reuses the results.

A result is written to a temporary file in the same folder, flushed to disk, then
renamed over its final name, so a reader sees either no result or a whole one, even
when the writer is killed midway. Because the name is the content hash, a video has
at most one result per version tag however often it is processed; two paths holding
the same bytes share one result. Temporary files left by a killed writer are ignored
and removed by `ResultStore.clean_partials`.

Only answered videos are stored: a video that failed is processed again by the next
run, which then either answers it or reports the same error.

A video from an S3 prefix is keyed the same way, by the SHA-256 of its bytes: it is
fetched into the local cache first (`llama_prefect.s3.local_path`, which the pipeline
reads from anyway), so keying an already answered S3 video costs one download.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llama_prefect.errors import ConfigurationError

RESULT_FORMAT = 1
_PARTIAL_PREFIX = ".partial-"
_CHUNK_BYTES = 1 << 20


def content_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def video_key(video: str) -> str:
    """The content key of a video: the SHA-256 of its bytes, local or in S3."""
    if video.startswith("s3://"):
        from llama_prefect import s3

        return content_sha256(s3.local_path(video))
    return content_sha256(video)


def version_tag(version: str, answer_parameters: Mapping[str, Any]) -> str:
    """The folder name of one pipeline version and the parameters that shape answers.

    Args:
        version: The pipeline's version, e.g. ``"1"``.
        answer_parameters: Parameters that change the answer, JSON-serializable.
    """
    if not version or "/" in version:
        raise ConfigurationError(
            f"a pipeline version must be non-empty text without '/', but got "
            f"{version!r}"
        )
    text = json.dumps(dict(answer_parameters), sort_keys=True, default=str)
    return f"v{version}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class StoredResult:
    """One stored result and where it lies."""

    key: str
    path: Path
    data: dict[str, Any]


class ResultStore:
    """The results of one pipeline version under one root folder.

    Args:
        root: The results folder (created on first write).
        pipeline: The pipeline's name.
        tag: The version tag from `version_tag`.
    """

    def __init__(self, root: str | os.PathLike[str], pipeline: str, tag: str) -> None:
        self.root = Path(root)
        self.pipeline = pipeline
        self.tag = tag
        self.folder = self.root / pipeline / tag

    def path_of(self, key: str) -> Path:
        """Where the result with content key `key` lives."""
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result for `key`, or None when there is none."""
        try:
            return dict(json.loads(self.path_of(key).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def put(self, key: str, result: Mapping[str, Any]) -> Path:
        """Stores `result` under `key` atomically, replacing any earlier one.

        The record gets ``format``, ``key``, ``pipeline``, ``version_tag`` and
        ``stored`` (UTC time) added.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            **result,
            "format": RESULT_FORMAT,
            "key": key,
            "pipeline": self.pipeline,
            "version_tag": self.tag,
            "stored": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=_PARTIAL_PREFIX)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path_of(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_folder(self.folder)
        return self.path_of(key)

    def results(self) -> Iterator[StoredResult]:
        """Every whole result of this version, in key order (partial files skipped)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            if path.name.startswith(_PARTIAL_PREFIX):
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            yield StoredResult(path.stem, path, data)

    def clean_partials(self) -> int:
        """Removes temporary files a killed writer left; returns how many."""
        if not self.folder.is_dir():
            return 0
        partials = list(self.folder.glob(f"{_PARTIAL_PREFIX}*"))
        for path in partials:
            path.unlink(missing_ok=True)
        return len(partials)


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable (POSIX); a no-op where folders cannot open."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
