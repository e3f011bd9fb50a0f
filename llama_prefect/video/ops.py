"""The bodies of the video ops: motion filter, people count, face count, aggregation.

Each op is a pure function of a `Segment` (or of the per-segment results) and its knob
values, and returns a frozen pydantic model that serializes to JSON. Nothing here knows
about Prefect or backends: the flows wrap these functions in tasks, and the chosen knobs
arrive as keyword arguments.

Knobs shared by the per-segment ops: `decoder` and `sample_every` (see
`llama_prefect.video.decoders.read_frames`), `width_px` (frames are shrunk to this
width, never enlarged), `device` ("cpu" or "cuda") for the torch code, and `threads`
for the OpenCV detectors.

Note:
    `threads` is the number of cores an OpenCV detector uses. To make that true, the
    first OpenCV detector call sets OpenCV's own worker pool to one thread with
    `cv2.setNumThreads(1)`. That setting is process-wide, so other OpenCV code in the
    same process also runs single-threaded afterwards unless it sets its own value.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from llama_prefect.errors import BackendUnavailableError, ConfigurationError
from llama_prefect.video.decoders import read_frames
from llama_prefect.video.segments import Segment, VideoInfo

__all__ = [
    "FaceResult",
    "MotionResult",
    "PeopleResult",
    "VideoAnswer",
    "aggregate",
    "count_faces",
    "count_people",
    "motion_score",
    "mtcnn_available",
]

logger = logging.getLogger(__name__)

FACE_MODELS: tuple[str, ...] = ("haar", "mtcnn")
"""Names accepted by `count_faces(model=...)`."""

# A pixel counts as changed when its grey level moves by more than this, of 255.
_CHANGED_LEVEL = 25.0
# ITU-R BT.601 luma weights for R, G, B.
_LUMA = (0.299, 0.587, 0.114)
# HOG people detector settings. On vtest.avi at its native 768 px width they give
# 2.8 people per sampled frame on average (3 to 7 are visible; the far ones are too
# small for the 64x128 window).
_HOG_PADDING_PX = (8, 8)
_HOG_SCALE = 1.05
_HOG_MIN_WEIGHT = 0.5
_NMS_MAX_IOU = 0.3
# Haar settings: OpenCV's usual ones for frontal faces.
_HAAR_SCALE = 1.1
_HAAR_MIN_NEIGHBORS = 5
_MTCNN_MIN_PROB = 0.9

_mtcnn_lock = threading.Lock()
_mtcnn_models: dict[str, Any] = {}


class MotionResult(BaseModel):
    """Whether a segment has motion.

    Attributes:
        moving: True when `score` exceeds the op's threshold.
        score: Largest fraction of pixels (0 to 1) that changed between two
            consecutive sampled frames.
        frames: Number of sampled frames compared.
    """

    model_config = ConfigDict(frozen=True)

    moving: bool
    score: float
    frames: int


class PeopleResult(BaseModel):
    """People counted in the sampled frames of one segment.

    Attributes:
        frame_indices: Frame number in the video of each sampled frame.
        times_s: Time of each sampled frame, seconds from the start of the video.
        counts: People detected in each sampled frame.
    """

    model_config = ConfigDict(frozen=True)

    frame_indices: list[int]
    times_s: list[float]
    counts: list[int]


class FaceResult(BaseModel):
    """Faces counted in the sampled frames of one segment.

    Attributes:
        frame_indices: Frame number in the video of each sampled frame.
        counts: Faces detected in each sampled frame.
        model: The detector used, one of `FACE_MODELS`.
    """

    model_config = ConfigDict(frozen=True)

    frame_indices: list[int]
    counts: list[int]
    model: str


class VideoAnswer(BaseModel):
    """The pipeline's answer for one video: how busy it is, window by window.

    Attributes:
        video: Path of the video.
        duration_s: Length of the video in seconds.
        window_s: Length of one window in seconds.
        people_per_window: Mean people count over the sampled frames of each window;
            0 for a window with no sampled frames (its segments had no motion).
        max_people: Most people detected in any one sampled frame.
        faces_seen: Most faces detected in any one sampled frame.
        crowded_windows: Windows whose mean people count reaches the crowd threshold.
        crowded: True when at least one window is crowded.
        segments: Segments the video was split into.
        segments_with_motion: Segments that passed the motion filter.
        segments_with_people: Segments with at least one person in a sampled frame.
    """

    model_config = ConfigDict(frozen=True)

    video: str
    duration_s: float
    window_s: float
    people_per_window: list[float]
    max_people: int
    faces_seen: int
    crowded_windows: int
    crowded: bool
    segments: int
    segments_with_motion: int
    segments_with_people: int


def motion_score(
    segment: Segment,
    *,
    decoder: str = "pyav",
    sample_every: int = 2,
    width_px: int = 320,
    device: str = "cpu",
    threshold: float = 0.01,
) -> MotionResult:
    """Decide whether a segment moves, by differencing sampled frames in torch.

    Frames become grey levels (BT.601 luma, 0 to 255, float32) on `device`; a pixel
    whose level differs by more than 25 between two consecutive sampled frames counts
    as changed. The score is the largest changed fraction over all pairs.

    Args:
        segment: The frames to examine.
        decoder: Decoder knob, one of `DECODERS`.
        sample_every: Compare every `sample_every`-th frame; >= 1.
        width_px: Shrink frames to this width first (never enlarged).
        device: Torch device, "cpu" or "cuda" (optionally "cuda:N").
        threshold: The segment moves when the score exceeds this fraction, 0 to 1.

    Returns:
        The verdict, the score and the number of frames compared. A segment with
        fewer than two sampled frames scores 0 and does not move.

    Raises:
        ConfigurationError: Bad device name, threshold or decoder knob.
        BackendUnavailableError: `device` is CUDA and torch sees no CUDA device.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(
            f"threshold is a fraction of pixels in [0, 1], but got {threshold!r}."
        )
    torch_device = _torch_device(device)
    frames = read_frames(
        segment, decoder=decoder, sample_every=sample_every, width_px=width_px
    )
    if len(frames.indices) < 2:
        return MotionResult(moving=False, score=0.0, frames=len(frames.indices))

    score = _largest_changed_fraction(frames.array, torch_device)
    return MotionResult(
        moving=score > threshold, score=score, frames=len(frames.indices)
    )


def count_people(
    segment: Segment,
    *,
    decoder: str = "pyav",
    sample_every: int = 5,
    width_px: int = 640,
    win_stride_px: int = 8,
    threads: int = 1,
) -> PeopleResult:
    """Count pedestrians in sampled frames with OpenCV's HOG people detector.

    The detector scans windows of 64x128 pixels at scales 1.05 apart, stepping
    `win_stride_px` pixels; boxes with an SVM weight above 0.5 survive, and boxes
    that overlap another by more than 0.3 IoU are merged by non-maximum suppression.

    Args:
        segment: The frames to examine.
        decoder: Decoder knob, one of `DECODERS`.
        sample_every: Count every `sample_every`-th frame; >= 1.
        width_px: Shrink frames to this width first (never enlarged). People shorter
            than about 100 pixels after shrinking are not found.
        win_stride_px: Step of the detection window in pixels; smaller finds more
            people and costs roughly quadratically more.
        threads: Worker threads (cores); the sampled frames are split between them,
            one detector per thread.

    Returns:
        Frame numbers, their times in seconds, and a count per frame.

    Raises:
        ConfigurationError: Bad knob value.

    Note:
        Shrinking loses people fast: on vtest.avi (768x576) the mean count per frame
        was 2.8 at 768 px, 1.3 at 640 px and under 0.5 at 480 px and below (stride
        8). The default of 640 px is a cost choice, not an accuracy one.
    """
    _check_positive(win_stride_px=win_stride_px, threads=threads)
    frames = read_frames(
        segment, decoder=decoder, sample_every=sample_every, width_px=width_px
    )
    counts = _map_split(
        lambda chunk: _hog_people_counts(chunk, win_stride_px), frames.array, threads
    )
    return PeopleResult(
        frame_indices=frames.indices,
        times_s=[index / segment.fps for index in frames.indices],
        counts=counts,
    )


def count_faces(
    segment: Segment,
    *,
    decoder: str = "pyav",
    sample_every: int = 10,
    width_px: int = 640,
    model: str = "haar",
    device: str = "cpu",
    threads: int = 1,
) -> FaceResult:
    """Count faces in sampled frames with a Haar cascade or MTCNN.

    "haar" is OpenCV's frontal-face cascade (CPU only; `threads` splits the frames as
    in `count_people`). "mtcnn" is facenet-pytorch's MTCNN on `device`, loaded once
    per process and device; faces with a probability above 0.9 count.

    Args:
        segment: The frames to examine.
        decoder: Decoder knob, one of `DECODERS`.
        sample_every: Count every `sample_every`-th frame; >= 1.
        width_px: Shrink frames to this width first (never enlarged).
        model: "haar" or "mtcnn".
        device: Torch device for MTCNN, "cpu" or "cuda"; must be "cpu" for "haar".
        threads: Worker threads for "haar".

    Returns:
        Frame numbers, a face count per frame, and the model name.

    Raises:
        ConfigurationError: Bad knob value, or "haar" with a non-CPU device.
        BackendUnavailableError: MTCNN cannot be imported, or CUDA is missing.

    Note:
        MTCNN ignores `threads`: torch already spreads each frame over its own
        intra-op pool (`torch.get_num_threads()`), and frames are run one at a time,
        which was as fast as batching them on 2 cores and keeps memory flat.
    """
    _check_positive(threads=threads)
    if model not in FACE_MODELS:
        raise ConfigurationError(
            f"model must be one of {', '.join(FACE_MODELS)}, but got {model!r}."
        )
    if model == "haar" and device != "cpu":
        raise ConfigurationError(
            f"model 'haar' runs on the CPU only, but device={device!r}. Pass "
            "device='cpu', or model='mtcnn' to use a GPU."
        )
    torch_device = _torch_device(device) if model == "mtcnn" else "cpu"

    frames = read_frames(
        segment, decoder=decoder, sample_every=sample_every, width_px=width_px
    )
    if model == "haar":
        counts = _map_split(_haar_face_counts, frames.array, threads)
    else:
        counts = _mtcnn_face_counts(frames.array, torch_device)
    return FaceResult(frame_indices=frames.indices, counts=counts, model=model)


def mtcnn_available() -> bool:
    """True when facenet-pytorch (and the torch and torchvision it needs) imports."""
    try:
        import facenet_pytorch  # noqa: F401
    except Exception:  # an ImportError, or a torchvision operator missing at import
        return False
    return True


def aggregate(
    info: VideoInfo,
    people: list[PeopleResult],
    faces: list[FaceResult],
    *,
    segments: int,
    segments_with_motion: int,
    window_s: float = 10.0,
    crowd_threshold: float = 4.0,
) -> VideoAnswer:
    """Combine per-segment results into the answer for one video.

    The video is cut into `ceil(duration_s / window_s)` windows. A sampled frame falls
    into the window that holds its time; each window reports the mean people count of
    its sampled frames, or 0 when it has none (its segments were filtered out).

    Args:
        info: The probed video.
        people: People results of the segments that were counted, in any order.
        faces: Face results of the segments that were counted, in any order.
        segments: Segments the video was split into.
        segments_with_motion: Segments that passed the motion filter.
        window_s: Window length in seconds; > 0.
        crowd_threshold: A window is crowded when its mean count is at least this.

    Returns:
        The video's answer.

    Raises:
        ConfigurationError: `window_s` is not positive.
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise ConfigurationError(
            f"window_s must be a positive number of seconds, but got {window_s!r}."
        )
    means = _window_means(people, info.duration_s, window_s)
    crowded_windows = sum(mean >= crowd_threshold for mean in means)
    return VideoAnswer(
        video=info.path,
        duration_s=info.duration_s,
        window_s=window_s,
        people_per_window=means,
        max_people=max((max(r.counts, default=0) for r in people), default=0),
        faces_seen=max((max(r.counts, default=0) for r in faces), default=0),
        crowded_windows=crowded_windows,
        crowded=crowded_windows > 0,
        segments=segments,
        segments_with_motion=segments_with_motion,
        segments_with_people=sum(any(r.counts) for r in people),
    )


def _window_means(
    people: list[PeopleResult], duration_s: float, window_s: float
) -> list[float]:
    """Mean people count per window of `window_s` seconds; 0 where nothing sampled."""
    # round() keeps 30.0 / 10.0 from becoming 3.0000000001 and a fourth window.
    num_windows = max(1, math.ceil(round(duration_s / window_s, 9)))
    totals = [0] * num_windows
    samples = [0] * num_windows
    for result in people:
        for time_s, count in zip(result.times_s, result.counts, strict=True):
            window = min(int(time_s // window_s), num_windows - 1)
            totals[window] += count
            samples[window] += 1
    return [t / n if n else 0.0 for t, n in zip(totals, samples, strict=True)]


def _check_positive(**knobs: int) -> None:
    """Raise `ConfigurationError` unless every knob is an int >= 1."""
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be an int >= 1, but got {value!r}.")


def _torch_device(device: str) -> str:
    """Check a torch device name; CUDA must be present when asked for."""
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigurationError(
            f"device must be 'cpu' or 'cuda' (or 'cuda:N'), but got {device!r}."
        )
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device={device!r} was asked for, but torch sees no CUDA device on this "
            "machine. Use device='cpu', or run the op on a GPU backend."
        )
    return device


def _largest_changed_fraction(frames: np.ndarray, device: str) -> float:
    """Largest fraction of changed pixels between consecutive frames.

    Args:
        frames: Shape (N, H, W, 3), uint8 RGB, N >= 2.
        device: Torch device to compute on.
    """
    import torch

    with torch.inference_mode():
        rgb = torch.from_numpy(frames).to(device)
        weights = torch.tensor(_LUMA, dtype=torch.float32, device=device)
        grey = rgb.to(torch.float32) @ weights  # (N, H, W)
        changed = (grey[1:] - grey[:-1]).abs() > _CHANGED_LEVEL
        return float(changed.float().mean(dim=(1, 2)).max().item())


def _map_split(
    count: Callable[[np.ndarray], list[int]], frames: np.ndarray, threads: int
) -> list[int]:
    """Run `count` over `frames` split into `threads` contiguous chunks, in order."""
    _serial_opencv()
    if threads == 1 or len(frames) < 2:
        return count(frames)
    chunks = np.array_split(frames, min(threads, len(frames)))
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        return [n for counts in pool.map(count, chunks) for n in counts]


def _serial_opencv() -> None:
    """Turn off OpenCV's internal worker pool, so `threads` decides the cores used."""
    import cv2

    if cv2.getNumThreads() != 1:
        logger.debug("setting cv2.setNumThreads(1); the threads knob parallelizes")
        cv2.setNumThreads(1)


def _hog_people_counts(frames: np.ndarray, win_stride_px: int) -> list[int]:
    """People per frame with a fresh HOG detector (one per thread).

    Args:
        frames: Shape (N, H, W, 3), uint8 RGB.
        win_stride_px: Step of the detection window in pixels.
    """
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))
    counts = []
    for frame in frames:
        boxes, weights = hog.detectMultiScale(
            frame,
            winStride=(win_stride_px, win_stride_px),
            padding=_HOG_PADDING_PX,
            scale=_HOG_SCALE,
        )
        counts.append(_boxes_after_nms(boxes, np.ravel(weights)))
    return counts


def _boxes_after_nms(boxes: Any, weights: np.ndarray) -> int:
    """Boxes (x, y, w, h) left after the weight cut and non-maximum suppression."""
    if len(boxes) == 0:
        return 0
    import cv2

    kept = cv2.dnn.NMSBoxes(
        [list(map(int, box)) for box in boxes],
        weights.astype(float).tolist(),
        _HOG_MIN_WEIGHT,
        _NMS_MAX_IOU,
    )
    return len(kept)


def _haar_face_counts(frames: np.ndarray) -> list[int]:
    """Faces per frame with a fresh Haar cascade (one per thread).

    Args:
        frames: Shape (N, H, W, 3), uint8 RGB.
    """
    import cv2
    from cv2 import data as cv2_data

    cascade = cv2.CascadeClassifier(
        cv2_data.haarcascades + "haarcascade_frontalface_default.xml"
    )
    counts = []
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        faces = cascade.detectMultiScale(
            grey, scaleFactor=_HAAR_SCALE, minNeighbors=_HAAR_MIN_NEIGHBORS
        )
        counts.append(len(faces))
    return counts


def _mtcnn_face_counts(frames: np.ndarray, device: str) -> list[int]:
    """Faces per frame with the cached MTCNN on `device`.

    Args:
        frames: Shape (N, H, W, 3), uint8 RGB.
        device: Torch device the model lives on.
    """
    detector = _mtcnn(device)
    counts = []
    for frame in frames:
        _, probs = detector.detect(frame)
        # facenet-pytorch gives None, or an array that may hold None, for no face.
        found = [] if probs is None else probs
        counts.append(sum(p is not None and p > _MTCNN_MIN_PROB for p in found))
    return counts


def _mtcnn(device: str) -> Any:
    """The process's MTCNN for `device`, built on first use (about 2 s on a CPU)."""
    with _mtcnn_lock:
        if device not in _mtcnn_models:
            if not mtcnn_available():
                raise BackendUnavailableError(
                    "model 'mtcnn' needs facenet-pytorch, which does not import here. "
                    "Install it with `pip install facenet-pytorch --no-deps` beside "
                    "torch and torchvision, or use model='haar'."
                )
            import torch
            from facenet_pytorch import MTCNN

            # The runner runs one invocation per core; torch's own intra-op threads
            # on top of that oversubscribe the CPU and slow MTCNN tenfold.
            if device == "cpu":
                torch.set_num_threads(1)
            _mtcnn_models[device] = MTCNN(keep_all=True, device=device)
            logger.debug("loaded MTCNN on %s", device)
        return _mtcnn_models[device]
