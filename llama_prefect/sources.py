"""Video sources: the videos a run processes, listed from a folder, a file or S3.

`list_videos` turns a video source (see `llama_prefect.settings.parse_video_source`)
into the sorted list of videos a run processes. Local folders are listed by file
suffix; one file is taken as it is.

Each kind of source has a lister in `LISTERS`: ``local`` lists a folder, ``s3``
lists the video objects under a prefix (`llama_prefect.s3.list_videos`, with the
run's AWS credentials; boto3 is imported only then).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llama_prefect.errors import ConfigurationError
from llama_prefect.settings import VideoSource, missing_videos, parse_video_source

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")

Lister = Callable[[VideoSource], list[str]]


def _list_local(source: VideoSource) -> list[str]:
    path = source.path
    assert path is not None
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise ConfigurationError(missing_videos(source.text))
    found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise ConfigurationError(
            f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {source.text}; pass "
            "a folder that holds videos (its subfolders are not searched), a video "
            "file or an s3:// prefix"
        )
    return found


def _list_s3(source: VideoSource) -> list[str]:
    from llama_prefect import s3

    return s3.list_videos(source.text)


#: Listers by source kind.
LISTERS: dict[str, Lister] = {"local": _list_local, "s3": _list_s3}


def list_videos(source: str | Path) -> list[str]:
    """The videos of a source: a folder's video files (sorted), or the one file.

    Raises:
        ConfigurationError: For a malformed or missing source, a folder without
            videos, or a kind of source whose lister is not built.
    """
    parsed = parse_video_source(str(source), must_exist=False)
    lister = LISTERS.get(parsed.kind)
    if lister is None:
        raise ConfigurationError(
            f"videos: listing {parsed.kind}:// sources is not built yet (got "
            f"{parsed.text!r}); copy the videos to a local folder and pass that folder"
        )
    return lister(parsed)
