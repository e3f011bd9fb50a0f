"""Thin adapters that read sampled frames of a segment with PyAV, decord or OpenCV.

The decoder is a knob: the three libraries differ in speed per codec and in how they
seek, but behind `read_frames` they return the same thing. For a segment and a
`sample_every`, every decoder returns frames `start_frame`, `start_frame +
sample_every`, ... below `end_frame`, as one RGB uint8 array, with the same frame
numbers and the same pixels up to decoder rounding (all three wrap FFmpeg's decoders).

Frame numbers are positions in presentation order. PyAV and OpenCV derive them from
each frame's timestamp and the stream's frame rate; decord counts frames from the
start. On a constant-frame-rate file the three agree, which the tests check on H.264
and MPEG-4; on a variable-frame-rate file they may not.

Every decoder seeks to the keyframe at or before the segment's first frame and decodes
forward, so a segment costs the decode of everything from that keyframe to its last
sampled frame, whatever `sample_every` is. Frames that are skipped are decoded but never
converted to RGB.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from llama_prefect.errors import ConfigurationError, VideoError
from llama_prefect.video.segments import Segment

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

__all__ = ["DECODERS", "Frames", "read_frames", "resized_shape"]

logger = logging.getLogger(__name__)

DECODERS: tuple[str, ...] = ("pyav", "decord", "opencv")
"""Names accepted by `read_frames(decoder=...)`."""

_MIN_WIDTH_PX = 8

# A reader yields (frame number, RGB frame of shape (H, W, 3) uint8) for each wanted
# frame it finds, in increasing order.
_Reader = Callable[[Segment, list[int]], Iterator[tuple[int, np.ndarray]]]


class Frames(NamedTuple):
    """Sampled frames of one segment.

    Attributes:
        indices: Frame number in the video of each frame, increasing.
        array: The frames, shape (N, H, W, 3), dtype uint8, RGB channel order, where N
            is `len(indices)`.
    """

    indices: list[int]
    array: np.ndarray


def read_frames(
    segment: Segment, *, decoder: str, sample_every: int, width_px: int | None = None
) -> Frames:
    """Decode every `sample_every`-th frame of a segment, optionally downscaled.

    Args:
        segment: The frames to read: `start_frame` up to `end_frame` (exclusive).
        decoder: One of `DECODERS`: "pyav", "decord" or "opencv".
        sample_every: Keep one frame in this many, starting with `start_frame`; >= 1.
        width_px: Target width in pixels. Frames wider than this are shrunk with
            area interpolation, keeping the aspect ratio with an even height; narrower
            frames are never enlarged. None keeps the native size.

    Returns:
        The frame numbers and an array of shape (N, H, W, 3), uint8 RGB, where N is
        `ceil(segment.num_frames / sample_every)`.

    Raises:
        ConfigurationError: Unknown decoder, `sample_every` < 1 or `width_px` < 8.
        VideoError: The file cannot be opened, or the decoder found fewer frames
            than the segment claims (a truncated file, or one probed differently).
    """
    _check_knobs(decoder, sample_every, width_px)
    wanted = list(range(max(0, segment.start_frame), segment.end_frame, sample_every))
    out_h, out_w = resized_shape(segment.height_px, segment.width_px, width_px)
    if not wanted:
        return Frames(indices=[], array=np.empty((0, out_h, out_w, 3), np.uint8))

    indices: list[int] = []
    array = np.empty((len(wanted), out_h, out_w, 3), dtype=np.uint8)
    for index, rgb in _READERS[decoder](segment, wanted):
        array[len(indices)] = _resize(rgb, out_h, out_w)
        indices.append(index)

    if indices != wanted:
        missing = sorted(set(wanted) - set(indices))
        raise VideoError(
            f"{segment.video}: decoder {decoder!r} did not return frames {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} of segment {segment.index} (frames "
            f"{segment.start_frame}-{segment.end_frame - 1}). The file may be "
            "truncated or have a variable frame rate; try another decoder or "
            "re-encode it with `ffmpeg -i in -r <fps> out.mp4`."
        )
    return Frames(indices=indices, array=array)


def resized_shape(
    height_px: int, width_px: int, target_width_px: int | None
) -> tuple[int, int]:
    """Output (height, width) in pixels for a frame shrunk to `target_width_px`.

    The height keeps the aspect ratio and is rounded to an even number (at least 2).
    A target of None, or one not smaller than `width_px`, keeps the native size.
    """
    if target_width_px is None or target_width_px >= width_px:
        return height_px, width_px
    height = round(height_px * target_width_px / width_px / 2) * 2
    return max(2, height), target_width_px


def _check_knobs(decoder: str, sample_every: int, width_px: int | None) -> None:
    """Raise `ConfigurationError` for a knob value `read_frames` cannot use."""
    if decoder not in DECODERS:
        raise ConfigurationError(
            f"decoder must be one of {', '.join(DECODERS)}, but got {decoder!r}. "
            "Fix the op's decoder knob."
        )
    if isinstance(sample_every, bool) or not isinstance(sample_every, int):
        raise ConfigurationError(
            f"sample_every must be an int >= 1, but got {sample_every!r}."
        )
    if sample_every < 1:
        raise ConfigurationError(
            f"sample_every must be >= 1 (1 keeps every frame), but got {sample_every}."
        )
    if width_px is not None and width_px < _MIN_WIDTH_PX:
        raise ConfigurationError(
            f"width_px must be None (native size) or >= {_MIN_WIDTH_PX}, but got "
            f"{width_px}."
        )


def _resize(rgb: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """Shrink one (H, W, 3) frame with area interpolation; a no-op at native size."""
    if rgb.shape[0] == height_px and rgb.shape[1] == width_px:
        return rgb
    import cv2

    return cv2.resize(rgb, (width_px, height_px), interpolation=cv2.INTER_AREA)


def _read_pyav(segment: Segment, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with PyAV: seek to the keyframe before, decode forward."""
    import av

    want = set(wanted)
    try:
        container = av.open(segment.video)
    except av.FFmpegError as exc:
        raise _open_error(segment, "pyav", exc) from exc

    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = _pyav_numbered(container, stream, segment, segment.start_frame)
        first = next(frames, None)
        if first is None:
            return
        if first[0] > wanted[0]:
            # The seek landed past the segment's start (a sparse or missing index):
            # decode from the beginning of the file instead.
            logger.debug(
                "pyav seek overshot to frame %d in %s", first[0], segment.video
            )
            frames = _pyav_numbered(container, stream, segment, 0)
        else:
            frames = itertools.chain([first], frames)

        for index, frame in frames:
            if index > wanted[-1]:
                break
            if index in want:
                # Two timestamps can round to one number on a variable-rate file;
                # the first frame keeps it.
                want.discard(index)
                yield index, frame.to_ndarray(format="rgb24")


def _pyav_numbered(
    container: InputContainer, stream: VideoStream, segment: Segment, frame: int
) -> Iterator[tuple[int, Any]]:
    """Seek near `frame` and yield (frame number, av.VideoFrame) from there on.

    A frame's number is its timestamp, less the stream's start time, times the frame
    rate. A frame without a timestamp takes the number after the previous one.
    """
    start_pts = stream.start_time or 0
    pts_per_frame = 1.0 / (segment.fps * float(stream.time_base or 1))
    target_pts = start_pts + int(frame * pts_per_frame)
    container.seek(target_pts, stream=stream, backward=True, any_frame=False)

    index = -1
    for decoded in container.decode(stream):
        if decoded.pts is None:
            index += 1
        else:
            index = round((decoded.pts - start_pts) / pts_per_frame)
        yield index, decoded


def _read_decord(
    segment: Segment, wanted: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with decord: an accurate seek, then next/skip_frames.

    Reading sequentially with `skip_frames` avoids `get_batch`, which re-seeks for
    every index and ran several times slower here.
    """
    import decord

    try:
        reader = decord.VideoReader(segment.video, ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own DECORDError, a RuntimeError
        raise _open_error(segment, "decord", exc) from exc

    last = min(wanted[-1], len(reader) - 1)
    step = wanted[1] - wanted[0] if len(wanted) > 1 else 1
    reader.seek_accurate(wanted[0])
    for index in range(wanted[0], last + 1, step):
        yield index, _as_numpy(reader.next())
        if step > 1 and index + step <= last:
            reader.skip_frames(step - 1)


def _as_numpy(frame: Any) -> np.ndarray:
    """Turn a decord frame into numpy whatever bridge a caller set globally."""
    if hasattr(frame, "asnumpy"):
        return frame.asnumpy()
    if hasattr(frame, "numpy"):
        return frame.numpy()
    return np.asarray(frame)


def _read_opencv(
    segment: Segment, wanted: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with OpenCV: grab() every frame, retrieve() wanted ones."""
    import cv2

    capture = cv2.VideoCapture(segment.video, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise _open_error(segment, "opencv", "cv2.VideoCapture could not open it")
    try:
        if wanted[0] > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
        want = set(wanted)
        for index in range(wanted[0], wanted[-1] + 1):
            if not capture.grab():
                break
            if index in want:
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _open_error(segment: Segment, decoder: str, cause: object) -> VideoError:
    """A `VideoError` for a file that a decoder could not open."""
    return VideoError(
        f"{segment.video} cannot be opened with decoder {decoder!r}: {cause}. Check "
        "that the file exists and is a video (llama_prefect.video.segments.probe "
        "says why it is not), or try another decoder."
    )


_READERS: dict[str, _Reader] = {
    "pyav": _read_pyav,
    "decord": _read_decord,
    "opencv": _read_opencv,
}
