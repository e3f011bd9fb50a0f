"""Videos and the segments a pipeline fans out over.

A video is probed once into a `VideoInfo`, then `split` cuts it into consecutive
`Segment`s of a fixed number of frames; every segment is one invocation's input for the
per-segment ops (motion, people, faces). Both models are frozen and serialize to JSON,
so they travel as Prefect task parameters and show in the UI.

Frame numbers are zero-based positions in presentation order: frame i is the i-th
picture a full decode from the start returns. A segment covers `start_frame` up to but
not including `end_frame`. The frame count comes from the container's packets, not
from its header, because headers are often wrong or absent. Probing also records
where keyframes sit in that order (`VideoInfo.keyframes`), and each segment carries
the keyframe at or before its first frame (its anchor): a decoder seeks to the anchor
and counts frames from there, so frame numbers stay exact on variable-frame-rate files
where a timestamp times the frame rate would not.

`width_px` and `height_px` are the upright size: a file whose display matrix says
"turn 90 degrees" (phones write this) has `rotation_deg` 90 and its stored width and
height swapped; the decoders turn every frame upright.

Times in seconds are `frame / fps` with the average rate, so on a variable-frame-rate
file (`constant_rate` False) they drift from the true timestamps.

`probe` runs in a decode worker process (`llama_prefect.video.isolation`), so a
demuxer that crashes or hangs on a broken file fails that probe alone.
"""

from __future__ import annotations

import bisect
import math
import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from llama_prefect.errors import ConfigurationError, VideoError
from llama_prefect.video import isolation

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

__all__ = ["Segment", "VideoInfo", "probe", "probe_here", "split"]

#: Most keyframes `VideoInfo.keyframes` lists. A file with more (an all-intra file
#: lists every frame) keeps keyframes spaced `num_frames / MAX_ANCHORS` frames apart
#: or more, which costs a seek at most that many extra decoded frames.
MAX_ANCHORS = 1024
ROTATIONS = (0, 90, 180, 270)


class VideoInfo(BaseModel):
    """What a pipeline needs to know about one video file.

    Attributes:
        path: Path of the file, as a string.
        fps: Average frame rate of the video stream, frames per second.
        num_frames: Frames in the video stream, counted from its packets.
        width_px: Frame width in pixels.
        height_px: Frame height in pixels.
        codec: FFmpeg's name of the video codec, e.g. "h264", "mpeg4", "msmpeg4".
        rotation_deg: Degrees clockwise the stored frames turn to stand upright: 0,
            90, 180 or 270. `width_px` and `height_px` are already the upright size.
        constant_rate: False when the gaps between frame timestamps vary.
        keyframes: (frame number, timestamp in the stream's time base) of keyframes,
            in order, at most `MAX_ANCHORS` of them; empty when the file has no
            timestamps to seek by.
        declared_frames: Frames the container's header declares (0 when it
            declares none); more than `num_frames` in a file that was cut short.
    """

    model_config = ConfigDict(frozen=True)

    path: str
    fps: float
    num_frames: int
    width_px: int
    height_px: int
    codec: str
    rotation_deg: int = 0
    constant_rate: bool = True
    keyframes: tuple[tuple[int, int], ...] = ()
    declared_frames: int = 0

    @property
    def duration_s(self) -> float:
        """Length of the video in seconds, `num_frames / fps`."""
        return self.num_frames / self.fps

    @property
    def cut_short(self) -> bool:
        """True when the file holds under 98% of the frames its header declares."""
        return self.num_frames < 0.98 * self.declared_frames


class Segment(BaseModel):
    """A run of consecutive frames of one video: the unit of per-segment ops.

    Attributes:
        video: Path of the video file.
        index: Position of this segment in its video, from 0.
        start_frame: First frame of the segment.
        end_frame: Frame just past the last one (exclusive).
        fps: Frame rate of the video, frames per second.
        width_px: Upright frame width in pixels.
        height_px: Upright frame height in pixels.
        rotation_deg: Degrees clockwise the stored frames turn to stand upright.
        constant_rate: False for a variable-frame-rate video.
        anchor_frame: Number of the keyframe at or before `start_frame` that a
            decoder seeks to (0 with no `anchor_pts`: decode from the start).
        anchor_pts: That keyframe's timestamp in the stream's time base, or None.
    """

    model_config = ConfigDict(frozen=True)

    video: str
    index: int
    start_frame: int
    end_frame: int
    fps: float
    width_px: int
    height_px: int
    rotation_deg: int = 0
    constant_rate: bool = True
    anchor_frame: int = 0
    anchor_pts: int | None = None

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
    """Describe the first video stream of a file, in a decode worker process.

    The frame count is the number of non-empty packets in the video stream. Demuxing
    reads the file but decodes nothing, so it costs a few milliseconds per thousand
    frames, and unlike the header's claim it matches what a decoder returns. The
    first frame is decoded to learn the display rotation.

    Args:
        path: Path of the video file, or an ``s3://`` URI (downloaded into the local
            cache by `llama_prefect.s3.local_path`; the info keeps the URI).

    Returns:
        The stream's frame rate, trusted frame count, upright size, codec, rotation
        and keyframes.

    Raises:
        VideoError: The file is missing, empty, not a video container, has no video
            stream, or has a video stream without frames; `DecoderCrashError` or
            `DecodeTimeoutError` when the demuxer crashed or hung on it.
        TransientError: The decode worker was lost for another reason.
    """
    named = os.fspath(path)
    if named.startswith("s3://"):  # an S3 video is fetched once, named by its URI
        from llama_prefect.s3 import local_path

        return probe(local_path(named)).model_copy(update={"path": named})
    file = Path(path)
    _check_file(file)
    if not isolation.isolated():
        return probe_here(file)
    info, _ = isolation.call(
        "probe",
        {"path": os.fspath(file)},
        video=os.fspath(file),
        what="its container (probe)",
        budget_s=isolation.probe_budget_s(file.stat().st_size),
    )
    assert isinstance(info, VideoInfo)
    return info


def probe_here(path: str | os.PathLike[str]) -> VideoInfo:
    """`probe` in this process, with no protection against a crash or a hang."""
    import av

    file = Path(path)
    _check_file(file)
    try:
        with av.open(str(file)) as container:
            info = _describe(container, file)
        if info.num_frames == 0:
            raise VideoError(
                f"{file} has a video stream with 0 frames; nothing to analyse."
            )
        with av.open(str(file)) as container:
            return _upright(info, _first_frame_rotation(container, file))
    except av.FFmpegError as exc:
        raise VideoError(
            f"{file} cannot be read as a video: {exc}. Check that it is a complete "
            "video file (ffprobe shows what FFmpeg makes of it)."
        ) from exc


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
        segment_of(info, index, start, min(start + frames_per_segment, info.num_frames))
        for index, start in enumerate(starts)
    ]


def segment_of(
    info: VideoInfo, index: int, start_frame: int, end_frame: int
) -> Segment:
    """The segment of `info` from `start_frame` to `end_frame`, with its anchor."""
    anchor_frame, anchor_pts = 0, None
    numbers = [number for number, _ in info.keyframes]
    at = bisect.bisect_right(numbers, start_frame) - 1
    if at >= 0:
        anchor_frame, anchor_pts = info.keyframes[at]
    return Segment(
        video=info.path,
        index=index,
        start_frame=start_frame,
        end_frame=end_frame,
        fps=info.fps,
        width_px=info.width_px,
        height_px=info.height_px,
        rotation_deg=info.rotation_deg,
        constant_rate=info.constant_rate,
        anchor_frame=anchor_frame,
        anchor_pts=anchor_pts,
    )


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
    """Describe the first video stream of an open container, as stored."""
    if not container.streams.video:
        raise VideoError(
            f"{file} has no video stream (streams: {len(container.streams)}). "
            "Pass a file with video, e.g. an .mp4 or .avi from a camera."
        )
    stream = container.streams.video[0]
    count, timestamps, keyframe_pts = _scan_packets(container, stream)
    return VideoInfo(
        path=os.fspath(file),
        fps=_stream_fps(stream, file),
        num_frames=count,
        width_px=stream.codec_context.width,
        height_px=stream.codec_context.height,
        codec=stream.codec_context.name,
        constant_rate=_constant_rate(timestamps),
        keyframes=_anchors(timestamps, keyframe_pts, count),
        declared_frames=max(int(stream.frames or 0), 0),
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


def _scan_packets(
    container: InputContainer, stream: VideoStream
) -> tuple[int, list[int], list[int]]:
    """Frames, sorted timestamps and keyframe timestamps, from the stream's packets.

    Empty packets (the demuxer ends with one) and packets the demuxer marks to
    discard hold no frame and are not counted.
    """
    count = 0
    timestamps: list[int] = []
    keyframe_pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue
        count += 1
        if packet.pts is not None:
            timestamps.append(packet.pts)
            if packet.is_keyframe:
                keyframe_pts.append(packet.pts)
    timestamps.sort()
    return count, timestamps if len(timestamps) == count else [], keyframe_pts


def _constant_rate(timestamps: list[int]) -> bool:
    """True when the gaps between sorted timestamps agree within 1% (or one tick)."""
    gaps = [b - a for a, b in zip(timestamps, timestamps[1:], strict=False)]
    if len(gaps) < 2:
        return True
    median = statistics.median(gaps)
    return max(gaps) - min(gaps) <= max(1.0, 0.01 * median)


def _anchors(
    timestamps: list[int], keyframe_pts: list[int], count: int
) -> tuple[tuple[int, int], ...]:
    """(frame number, pts) of keyframes, at most `MAX_ANCHORS` of them.

    A keyframe's number is the count of frames presented before it. Without a
    timestamp for every packet there is nothing exact to seek by, and none is kept.
    """
    if not timestamps or len(timestamps) != count:
        return ()
    distinct = sorted(set(keyframe_pts))
    gap = 0 if len(distinct) <= MAX_ANCHORS else math.ceil(count / MAX_ANCHORS)
    kept: list[tuple[int, int]] = []
    for pts in distinct:
        number = bisect.bisect_left(timestamps, pts)
        if not kept or number - kept[-1][0] >= gap:
            kept.append((number, pts))
    return tuple(kept)


def _first_frame_rotation(container: InputContainer, file: Path) -> int:
    """Clockwise degrees that turn the first decoded frame upright."""
    frame = next(container.decode(container.streams.video[0]), None)
    if frame is None:
        raise VideoError(
            f"{file} has video packets but not one of them decodes into a frame; the "
            "stream is corrupt. Re-encode the file from its source."
        )
    # FFmpeg reports the display matrix as counter-clockwise degrees.
    degrees = round(-float(getattr(frame, "rotation", 0) or 0)) % 360
    return min(ROTATIONS, key=lambda r: min(abs(r - degrees), 360 - abs(r - degrees)))


def _upright(info: VideoInfo, rotation_deg: int) -> VideoInfo:
    """`info` with its rotation, and width and height swapped for a quarter turn."""
    if rotation_deg in (90, 270):
        return info.model_copy(
            update={
                "rotation_deg": rotation_deg,
                "width_px": info.height_px,
                "height_px": info.width_px,
            }
        )
    return info.model_copy(update={"rotation_deg": rotation_deg})
