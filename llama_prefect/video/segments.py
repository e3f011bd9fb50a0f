"""Videos and the segments a pipeline fans out over.

A video is probed once into a `VideoInfo`, then `split` cuts it into consecutive
`Segment`s of a fixed number of frames; every segment is one invocation's input for the
per-segment ops (motion, people, faces). Both models are frozen and serialize to JSON,
so they travel as Prefect task parameters and show in the UI.

Frame numbers are zero-based positions in presentation order. A segment covers
`start_frame` up to but not including `end_frame`. The frame count comes from the
container's packets, not from its header, because headers are often wrong or absent.

Assumes a constant frame rate: times are `frame / fps`. A variable-frame-rate file is
probed with its average rate, so its times drift from the true timestamps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from llama_prefect.errors import ConfigurationError, VideoError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

__all__ = ["Segment", "VideoInfo", "probe", "split"]


class VideoInfo(BaseModel):
    """What a pipeline needs to know about one video file.

    Attributes:
        path: Path of the file, as a string.
        fps: Average frame rate of the video stream, frames per second.
        num_frames: Frames in the video stream, counted from its packets.
        width_px: Frame width in pixels.
        height_px: Frame height in pixels.
        codec: FFmpeg's name of the video codec, e.g. "h264", "mpeg4", "msmpeg4".
    """

    model_config = ConfigDict(frozen=True)

    path: str
    fps: float
    num_frames: int
    width_px: int
    height_px: int
    codec: str

    @property
    def duration_s(self) -> float:
        """Length of the video in seconds, `num_frames / fps`."""
        return self.num_frames / self.fps


class Segment(BaseModel):
    """A run of consecutive frames of one video: the unit of per-segment ops.

    Attributes:
        video: Path of the video file.
        index: Position of this segment in its video, from 0.
        start_frame: First frame of the segment.
        end_frame: Frame just past the last one (exclusive).
        fps: Frame rate of the video, frames per second.
        width_px: Native frame width in pixels.
        height_px: Native frame height in pixels.
    """

    model_config = ConfigDict(frozen=True)

    video: str
    index: int
    start_frame: int
    end_frame: int
    fps: float
    width_px: int
    height_px: int

    @property
    def num_frames(self) -> int:
        """Frames in the segment."""
        return self.end_frame - self.start_frame

    @property
    def start_s(self) -> float:
        """Time of the first frame, seconds from the start of the video."""
        return self.start_frame / self.fps

    @property
    def end_s(self) -> float:
        """Time just past the last frame, seconds from the start of the video."""
        return self.end_frame / self.fps


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Open a video with PyAV and describe its first video stream.

    The frame count is the number of non-empty packets in the video stream. Demuxing
    reads the file but decodes nothing, so it costs a few milliseconds per thousand
    frames, and unlike the header's claim it matches what a decoder returns.

    Args:
        path: Path of the video file.

    Returns:
        The stream's frame rate, trusted frame count, size and codec name.

    Raises:
        VideoError: The file is missing, empty, not a video container, has no video
            stream, or has a video stream without frames.
    """
    import av

    file = Path(path)
    _check_file(file)
    try:
        with av.open(str(file)) as container:
            info = _describe(container, file)
    except av.FFmpegError as exc:
        raise VideoError(
            f"{file} cannot be read as a video: {exc}. Check that it is a complete "
            "video file (ffprobe shows what FFmpeg makes of it)."
        ) from exc

    if info.num_frames == 0:
        raise VideoError(
            f"{file} has a video stream with 0 frames; nothing to analyse."
        )
    return info


def split(info: VideoInfo, segment_s: float) -> list[Segment]:
    """Cut a video into consecutive segments of `round(segment_s * fps)` frames.

    The segments cover every frame exactly once, in order; the last one holds what is
    left and may be shorter. A segment never has fewer than one frame.

    Args:
        info: The probed video.
        segment_s: Wanted segment length in seconds; must be positive.

    Returns:
        The segments, indexed from 0.

    Raises:
        ConfigurationError: `segment_s` is not a positive finite number.
    """
    if not (math.isfinite(segment_s) and segment_s > 0):
        raise ConfigurationError(
            f"segment_s must be a positive number of seconds, but got {segment_s!r}. "
            "Pass e.g. segment_s=5.0."
        )
    frames_per_segment = max(1, round(segment_s * info.fps))
    starts = range(0, info.num_frames, frames_per_segment)
    return [
        Segment(
            video=info.path,
            index=index,
            start_frame=start,
            end_frame=min(start + frames_per_segment, info.num_frames),
            fps=info.fps,
            width_px=info.width_px,
            height_px=info.height_px,
        )
        for index, start in enumerate(starts)
    ]


def _check_file(file: Path) -> None:
    """Raise `VideoError` unless `file` is an existing, non-empty regular file."""
    if not file.exists():
        raise VideoError(
            f"{file} does not exist. Check the path and the working folder."
        )
    if not file.is_file():
        raise VideoError(
            f"{file} is not a regular file. Pass a video file, not a folder."
        )
    if file.stat().st_size == 0:
        raise VideoError(
            f"{file} is empty (0 bytes). The copy or download that made it probably "
            "failed; fetch the file again."
        )


def _describe(container: InputContainer, file: Path) -> VideoInfo:
    """Describe the first video stream of an open container."""
    if not container.streams.video:
        raise VideoError(
            f"{file} has no video stream (streams: {len(container.streams)}). "
            "Pass a file with video, e.g. an .mp4 or .avi from a camera."
        )
    stream = container.streams.video[0]
    return VideoInfo(
        path=os.fspath(file),
        fps=_stream_fps(stream, file),
        num_frames=_count_packets(container, stream),
        width_px=stream.codec_context.width,
        height_px=stream.codec_context.height,
        codec=stream.codec_context.name,
    )


def _stream_fps(stream: VideoStream, file: Path) -> float:
    """Average frame rate of a PyAV video stream, in frames per second."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate or float(rate) <= 0:
        raise VideoError(
            f"{file} does not state a frame rate (got {rate!r}). Remux it with a rate, "
            "e.g. `ffmpeg -r 25 -i in -c copy out.mp4`."
        )
    return float(rate)


def _count_packets(container: InputContainer, stream: VideoStream) -> int:
    """Count the non-empty packets of `stream`; the demuxer ends with an empty one."""
    return sum(1 for packet in container.demux(stream) if packet.size > 0)
