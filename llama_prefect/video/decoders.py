"""Thin adapters that read sampled frames of a segment with PyAV, decord or OpenCV.

The decoder is a knob: the three libraries differ in speed per codec and in how they
seek, but behind `read_frames` they return the same thing. For a segment and a
`sample_every`, every decoder returns frames `start_frame`, `start_frame +
sample_every`, ... below `end_frame`, upright, as one RGB uint8 array, with the same
frame numbers and the same pixels up to decoder rounding (all three wrap FFmpeg's
decoders). `read_batch` reads any set of frame numbers of a video in one call.

Frame numbers are positions in presentation order (see `segments`), and each decoder
is made to keep them exact, also on variable-frame-rate files:

* PyAV seeks to the segment's anchor keyframe by its timestamp and counts decoded
  frames from there; when the seek misses the anchor it decodes from the start.
* decord numbers frames by their sorted timestamps itself; its `seek_accurate` and
  `get_batch` are used as they are. Its own frame count (from the header when there
  is one) is never used: reading stops at the trusted count or at the end of data.
* OpenCV seeks by frame number, which it turns into a timestamp with the average
  rate. That is exact only at a constant rate, so on a variable-frame-rate file the
  adapter grabs every frame from the start instead (slower, and exact).

Rotation: PyAV ignores a file's display matrix, decord 0.6 applies it by itself, and
OpenCV applies it unless told not to. The adapters turn PyAV's frames by the probed
`rotation_deg`, switch OpenCV's own turning off and turn its frames the same way, and
take decord's as they come; the tests check that all three come out upright.

`read_frames` and `read_batch` decode in a worker process
(`llama_prefect.video.isolation`), so a decoder that crashes or hangs on a bad file
fails that call alone, within a time bound; `read_frames_here` and `read_batch_here`
do the same work in this process. A decoder that raises on corrupt data ends the call
with a `VideoError` that names the file, the decoder and the frames.

Every decoder seeks to the keyframe at or before the segment's first frame and decodes
forward, so a segment costs the decode of everything from that keyframe to its last
sampled frame, whatever `sample_every` is. Frames that are skipped are decoded but never
converted to RGB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from llama_prefect.errors import (
    ConfigurationError,
    LlamaError,
    TransientError,
    VideoError,
    is_deterministic,
)
from llama_prefect.video import isolation
from llama_prefect.video.segments import Segment, VideoInfo, segment_of

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame

__all__ = [
    "DECODERS",
    "Frames",
    "read_batch",
    "read_batch_here",
    "read_frames",
    "read_frames_here",
    "resized_shape",
]

logger = logging.getLogger(__name__)

DECODERS: tuple[str, ...] = ("pyav", "decord", "opencv")
"""Names accepted by `read_frames(decoder=...)`."""

#: Most frame data one call may return, in MB, unless
#: ``LLAMA_PREFECT_MAX_FRAMES_MB`` says otherwise (ours: 2 GB).
MAX_FRAMES_MB = 2048.0
MAX_FRAMES_ENV = "LLAMA_PREFECT_MAX_FRAMES_MB"

_MIN_WIDTH_PX = 8

#: Set to 1 to let FFmpeg's own messages about damaged data reach the terminal
#: (OpenCV's and decord's builds print them; PyAV's does not). Off by default: a
#: damaged file fails or is cut short with a message of ours that names it, and
#: FFmpeg's lines (``ac-tex damaged at 7 1``) only interleave with the run's log.
DECODER_LOGS_ENV = "LLAMA_PREFECT_DECODER_LOGS"
#: OpenCV reads it when it first opens a file with FFmpeg; -8 is FFmpeg's quiet.
_OPENCV_FFMPEG_LEVEL = "OPENCV_FFMPEG_LOGLEVEL"


def _quiet_ffmpeg() -> bool:
    """Whether FFmpeg's own messages are kept off the terminal (see above)."""
    if os.environ.get(DECODER_LOGS_ENV, "").strip() == "1":
        return False
    os.environ.setdefault(_OPENCV_FFMPEG_LEVEL, "-8")  # a user's own level stands
    return True


# A reader yields (frame number, upright RGB frame of shape (H, W, 3) uint8) for each
# wanted frame it finds, in increasing order.
_Reader = Callable[[Segment, list[int]], Iterator[tuple[int, np.ndarray]]]


class Frames(NamedTuple):
    """Sampled frames of one segment.

    Attributes:
        indices: Frame number in the video of each frame, increasing.
        array: The frames, shape (N, H, W, 3), dtype uint8, RGB channel order,
            upright, where N is `len(indices)`.
    """

    indices: list[int]
    array: np.ndarray


def read_frames(
    segment: Segment, *, decoder: str, sample_every: int, width_px: int | None = None
) -> Frames:
    """Decode every `sample_every`-th frame of a segment, upright, maybe downscaled.

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
        VideoError: The file cannot be opened, the decoder failed on its data or
            found fewer frames than the segment claims (a truncated or corrupt file),
            the frames would pass `MAX_FRAMES_MB`, or the decoder crashed
            (`DecoderCrashError`) or hung (`DecodeTimeoutError`).
        TransientError: The decode worker was lost for another reason, or an I/O
            error that may pass.
    """
    _check_knobs(decoder, sample_every, width_px)
    segment = _local(segment)
    wanted = _sampled(segment, sample_every)
    _check_size(segment, len(wanted), width_px)
    if not wanted or not isolation.isolated():
        return read_frames_here(
            segment, decoder=decoder, sample_every=sample_every, width_px=width_px
        )
    indices, array = isolation.call(
        "read_frames",
        {
            "segment": segment,
            "decoder": decoder,
            "sample_every": sample_every,
            "width_px": width_px,
        },
        video=segment.video,
        what=_what(segment),
        budget_s=_budget_s(segment, decoder, wanted[-1]),
        out_shape=_out_shape(segment, len(wanted), width_px),
    )
    assert array is not None
    return Frames(indices=indices, array=array)


def read_frames_here(
    segment: Segment,
    *,
    decoder: str,
    sample_every: int,
    width_px: int | None = None,
    out: np.ndarray | None = None,
) -> Frames:
    """`read_frames` in this process, with no protection against a crash or hang.

    `out`, when given, is the uint8 array of shape (N, H, W, 3) to fill.
    """
    _check_knobs(decoder, sample_every, width_px)
    wanted = _sampled(segment, sample_every)
    _check_size(segment, len(wanted), width_px)
    return _read_wanted(segment, wanted, _READERS[decoder], decoder, width_px, out)


def read_batch(
    info: VideoInfo,
    indices: Sequence[int],
    *,
    decoder: str,
    width_px: int | None = None,
) -> Frames:
    """Decode any frame numbers of a video in one call (batched sampling).

    Args:
        info: The probed video.
        indices: Frame numbers to read, each in [0, `info.num_frames`); repeats and
            order do not matter.
        decoder: One of `DECODERS`. decord reads them with its `get_batch`; PyAV and
            OpenCV decode forward from the keyframe before the first one.
        width_px: As for `read_frames`.

    Returns:
        The sorted, distinct frame numbers and their frames, upright.

    Raises:
        ConfigurationError: A frame number outside the video, or a bad knob.
        VideoError, TransientError: As for `read_frames`.
    """
    wanted = _checked_batch(info, indices, decoder, width_px)
    if info.path.startswith("s3://"):
        from llama_prefect.s3 import local_path

        info = info.model_copy(update={"path": local_path(info.path)})
    if not wanted or not isolation.isolated():
        return read_batch_here(info, wanted, decoder=decoder, width_px=width_px)
    segment = segment_of(info, 0, wanted[0], wanted[-1] + 1)
    found, array = isolation.call(
        "read_batch",
        {"info": info, "indices": wanted, "decoder": decoder, "width_px": width_px},
        video=info.path,
        what=f"a batch of {len(wanted)} frames ({wanted[0]}-{wanted[-1]})",
        budget_s=_budget_s(segment, decoder, wanted[-1]),
        out_shape=_out_shape(segment, len(wanted), width_px),
    )
    assert array is not None
    return Frames(indices=found, array=array)


def read_batch_here(
    info: VideoInfo,
    indices: Sequence[int],
    *,
    decoder: str,
    width_px: int | None = None,
    out: np.ndarray | None = None,
) -> Frames:
    """`read_batch` in this process, with no protection against a crash or hang."""
    wanted = _checked_batch(info, indices, decoder, width_px)
    if not wanted:
        height, width = resized_shape(info.height_px, info.width_px, width_px)
        return Frames(indices=[], array=np.empty((0, height, width, 3), np.uint8))
    segment = segment_of(info, 0, wanted[0], wanted[-1] + 1)
    reader = _BATCH_READERS[decoder]
    return _read_wanted(segment, wanted, reader, decoder, width_px, out)


def _local(segment: Segment) -> Segment:
    """The segment with its video as a local file (an S3 video is fetched once)."""
    if not segment.video.startswith("s3://"):
        return segment
    from llama_prefect.s3 import local_path

    return segment.model_copy(update={"video": local_path(segment.video)})


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


def _sampled(segment: Segment, sample_every: int) -> list[int]:
    return list(range(max(0, segment.start_frame), segment.end_frame, sample_every))


def _checked_batch(
    info: VideoInfo, indices: Sequence[int], decoder: str, width_px: int | None
) -> list[int]:
    """Sorted distinct frame numbers, after checking the knobs and the range."""
    _check_knobs(decoder, 1, width_px)
    wanted = sorted(set(indices))
    outside = [i for i in wanted if not 0 <= i < info.num_frames]
    if outside:
        raise ConfigurationError(
            f"frame numbers must lie in [0, {info.num_frames}) for {info.path}, but "
            f"got {outside[:5]}. Take them from the probed VideoInfo.num_frames."
        )
    segment = segment_of(info, 0, wanted[0], wanted[-1] + 1) if wanted else None
    if segment is not None:
        _check_size(segment, len(wanted), width_px)
    return wanted


def _check_size(segment: Segment, frames: int, width_px: int | None) -> None:
    """Raise `VideoError` when the frames of one call would pass the memory cap."""
    height, width = resized_shape(segment.height_px, segment.width_px, width_px)
    needed_mb = frames * height * width * 3 / (1024 * 1024)
    limit_mb = float(os.environ.get(MAX_FRAMES_ENV) or MAX_FRAMES_MB)
    if needed_mb > limit_mb:
        raise VideoError(
            f"{segment.video}: {frames} frames of {width}x{height} px from "
            f"{_what(segment)} would take {needed_mb:.0f} MB, more than the "
            f"{limit_mb:.0f} MB one read may hold. Shrink them with width_px, sample "
            f"fewer with sample_every or shorter segments, or raise {MAX_FRAMES_ENV}."
        )


def _what(segment: Segment) -> str:
    return (
        f"segment {segment.index} (frames {segment.start_frame}-"
        f"{segment.end_frame - 1})"
    )


def _budget_s(segment: Segment, decoder: str, last_frame: int) -> float:
    """Time bound of one read: every frame from where decoding starts to the last.

    decord also demuxes the whole file when it opens it, which gets the allowance
    of a probe on top.
    """
    from_start = decoder == "opencv" and not segment.constant_rate
    first = 0 if from_start or segment.anchor_pts is None else segment.anchor_frame
    budget_s = isolation.decode_budget_s(
        last_frame + 1 - first, segment.width_px, segment.height_px
    )
    if decoder == "decord":
        size_bytes = (
            os.stat(segment.video).st_size if os.path.exists(segment.video) else 0
        )
        budget_s += isolation.probe_budget_s(size_bytes)
    return budget_s


def _out_shape(
    segment: Segment, frames: int, width_px: int | None
) -> tuple[int, int, int, int]:
    """Shape of the frames array of a read: (N, H, W, 3)."""
    height, width = resized_shape(segment.height_px, segment.width_px, width_px)
    return (frames, height, width, 3)


def _read_wanted(
    segment: Segment,
    wanted: list[int],
    reader: _Reader,
    decoder: str,
    width_px: int | None,
    out: np.ndarray | None = None,
) -> Frames:
    """Run one reader over `wanted` frames into `out` (or a new array); checked."""
    shape = _out_shape(segment, len(wanted), width_px)
    _, out_h, out_w, _ = shape
    if out is not None and (out.shape != shape or out.dtype != np.uint8):
        raise ConfigurationError(
            f"out must be a uint8 array of shape {shape}, but got {out.dtype} "
            f"{out.shape}."
        )
    array = np.empty(shape, dtype=np.uint8) if out is None else out
    indices: list[int] = []
    if not wanted:
        return Frames(indices=indices, array=array)
    try:
        for index, rgb in reader(segment, wanted):
            array[len(indices)] = _resize(rgb, out_h, out_w)
            indices.append(index)
    except LlamaError:
        raise
    except Exception as exc:  # each library raises its own kinds on bad data
        raise _decode_error(segment, decoder, indices, exc) from exc

    if indices != wanted:
        missing = sorted(set(wanted) - set(indices))
        raise VideoError(
            f"{segment.video}: decoder {decoder!r} did not return frames {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} of {_what(segment)}. The file may "
            "be truncated or corrupt there; try another decoder or re-encode it with "
            "`ffmpeg -i in -r <fps> out.mp4`."
        )
    return Frames(indices=indices, array=array)


def _decode_error(
    segment: Segment, decoder: str, indices: list[int], exc: Exception
) -> LlamaError:
    """Our error for a library exception raised while decoding `segment`."""
    after = f"after frame {indices[-1]}" if indices else "before its first frame"
    where = f"{segment.video}: decoder {decoder!r} failed on {_what(segment)} {after}"
    ours_to_retry = isinstance(exc, (OSError, MemoryError)) and not is_deterministic(
        exc
    )
    if ours_to_retry and type(exc).__module__.split(".")[0] != "av":
        return TransientError(f"{where}: {type(exc).__name__}: {exc}. Retrying.")
    return VideoError(
        f"{where}: {type(exc).__name__}: {exc}. The data there is corrupt; try "
        "another decoder, or re-encode the file from its source."
    )


def _upright(rgb: np.ndarray, rotation_deg: int) -> np.ndarray:
    """Turn one stored (H, W, 3) frame clockwise by `rotation_deg` (0 is a no-op)."""
    if rotation_deg == 0:
        return rgb
    return np.rot90(rgb, k=-(rotation_deg // 90))


def _resize(rgb: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """Shrink one (H, W, 3) frame with area interpolation; a no-op at native size."""
    if rgb.shape[0] == height_px and rgb.shape[1] == width_px:
        return rgb
    import cv2

    return cv2.resize(
        np.ascontiguousarray(rgb), (width_px, height_px), interpolation=cv2.INTER_AREA
    )


# -- PyAV ------------------------------------------------------------------------------


def _read_pyav(segment: Segment, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with PyAV: seek to the anchor keyframe, count forward."""
    want = set(wanted)
    for index, frame in _pyav_numbered(segment):
        if index > wanted[-1]:
            break
        if index in want:
            yield (
                index,
                _upright(frame.to_ndarray(format="rgb24"), segment.rotation_deg),
            )


def _pyav_numbered(segment: Segment) -> Iterator[tuple[int, VideoFrame]]:
    """(frame number, frame) from the segment's anchor on, or from the file start.

    After the seek, frames before the anchor's timestamp (the seek landed on an
    earlier keyframe) are passed over; when the first frame at or past it is not the
    anchor itself (the seek overshot, a broken index), the file is decoded from its
    start, where the numbers are plain positions.
    """
    if segment.anchor_pts is not None and segment.anchor_frame > 0:
        with _pyav_open(segment) as container:
            stream = container.streams.video[0]
            container.seek(
                segment.anchor_pts, stream=stream, backward=True, any_frame=False
            )
            numbered = _from_anchor(
                container.decode(stream), segment.anchor_frame, segment.anchor_pts
            )
            first = next(numbered, None)
            if first is not None:
                yield first
                yield from numbered
                return
        logger.debug("pyav seek missed the anchor in %s; from the start", segment.video)
    with _pyav_open(segment) as container:
        yield from enumerate(container.decode(container.streams.video[0]))


def _from_anchor(
    decoded: Iterator[VideoFrame], anchor_frame: int, anchor_pts: int
) -> Iterator[tuple[int, VideoFrame]]:
    """Number frames from the anchor keyframe on; yield nothing if it is not met."""
    index: int | None = None
    for frame in decoded:
        if index is None:
            if frame.pts is not None and frame.pts < anchor_pts:
                continue
            if frame.pts != anchor_pts:
                return
            index = anchor_frame
        else:
            index += 1
        yield index, frame


def _pyav_open(segment: Segment) -> InputContainer:
    import av

    try:
        container = av.open(segment.video)
    except av.FFmpegError as exc:
        raise _open_error(segment, "pyav", exc) from exc
    container.streams.video[0].thread_type = "AUTO"
    return container


# -- decord ----------------------------------------------------------------------------


def _read_decord(
    segment: Segment, wanted: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with decord: an accurate seek, then next/skip_frames.

    decord turns frames upright by the display matrix itself. Reading sequentially
    with `skip_frames` avoids `get_batch`, which re-seeks for every index and ran
    several times slower here. `wanted` must be evenly spaced.
    """
    reader = _decord_open(segment)
    step = wanted[1] - wanted[0] if len(wanted) > 1 else 1
    reader.seek_accurate(wanted[0])
    for index in wanted:
        try:
            frame = reader.next()
        except StopIteration:  # the data ends before the trusted count says
            return
        yield index, _as_numpy(frame)
        if step > 1 and index + step <= wanted[-1]:
            reader.skip_frames(step - 1)


def _read_decord_batch(
    segment: Segment, wanted: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with decord's own batched read, `get_batch`."""
    reader = _decord_open(segment)
    batch = _as_numpy(reader.get_batch(wanted))
    yield from zip(wanted, batch, strict=True)


def _decord_open(segment: Segment) -> Any:
    import decord

    if _quiet_ffmpeg():
        decord.logging.set_level(decord.logging.QUIET)
    try:
        return decord.VideoReader(segment.video, ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own DECORDError, a RuntimeError
        raise _open_error(segment, "decord", exc) from exc


def _as_numpy(frame: Any) -> np.ndarray:
    """Turn a decord frame into numpy whatever bridge a caller set globally."""
    if hasattr(frame, "asnumpy"):
        return frame.asnumpy()
    if hasattr(frame, "numpy"):
        return frame.numpy()
    return np.asarray(frame)


# -- OpenCV ----------------------------------------------------------------------------


def _read_opencv(
    segment: Segment, wanted: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield wanted frames with OpenCV: grab() every frame, retrieve() wanted ones.

    At a constant rate OpenCV's own seek by frame number is used; on a
    variable-frame-rate file every frame is grabbed from the start.
    """
    import cv2

    _quiet_ffmpeg()  # before OpenCV's first FFmpeg open in this process
    capture = cv2.VideoCapture(segment.video, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise _open_error(segment, "opencv", "cv2.VideoCapture could not open it")
    try:
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        start = wanted[0] if segment.constant_rate else 0
        if start > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        want = set(wanted)
        for index in range(start, wanted[-1] + 1):
            if not capture.grab():
                break
            if index in want:
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield index, _upright(rgb, segment.rotation_deg)
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
_BATCH_READERS: dict[str, _Reader] = {
    "pyav": _read_pyav,
    "decord": _read_decord_batch,
    "opencv": _read_opencv,
}
