"""Pedestrian crossing analytics: is this crossing crowded, and when?

The pipeline, per video of an archive:

    split -> motion -> people -> faces -> aggregate
                 \\-> (no motion: the segment stops here)
                           \\-> (no people: no face stage) -> aggregate

* ``split`` probes the video (trusted frame count) and cuts it into segments
  (the fan-out).
* ``motion`` measures frame differences in torch; segments without motion stop there.
* ``people`` counts pedestrians with OpenCV's HOG detector on sampled frames.
* ``faces`` runs only on segments where people were seen (Haar cascade or MTCNN).
* ``aggregate`` turns the counts into people per time window and a crowded verdict.

Failures end one invocation, never the run. A video that cannot be probed ends at
``split``; a segment that cannot be decoded ends at its op, and the video's answer is
aggregated from its other segments (its entry in the report says which failed). A
deterministic failure (a corrupt file: `VideoError`) is not retried; a transient one
(a lost decode worker, an I/O error) is retried up to `TRANSIENT_RETRIES` times by
Prefect's task engine. Every failure is listed in the run report's ``failures``.

Every op's knobs (decoder, sampling, resolution, stride, model, threads, device) are
task parameters that `LlamaTaskRunner` sets per invocation. The flow submits every task,
because a plain call would bypass the runner, and it decides the branches itself as
results arrive, so a branch that does not fire creates no task run.

As an archive job the flow resumes: with ``results_dir`` set, each video's answer is
stored as soon as it arrives, keyed by the video's content and `PIPELINE_VERSION`,
and a rerun processes only the videos without a stored answer (see
`llama_prefect.archive`). Its parameters are validated by
`llama_prefect.settings.CrossingParameters`; their annotations carry the same bounds
into the deployment's parameter schema.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_prefect.tuning.reuse import (
    ArchiveSignature,
    Match,
    nearest_profile,
    stored_signature,
)
from prefect import flow, task
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture

from llama_prefect import s3
from llama_prefect.backends.aws_lambda import LAMBDA, MEMORY_SIZES_MB
from llama_prefect.backends.ecs import ECS_GPU, GPU_POOL
from llama_prefect.backends.local import LOCAL_CPU, LOCAL_GPU
from llama_prefect.core.pipeline import OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import VideoError, is_deterministic
from llama_prefect.paths import PLOTS_SUFFIX
from llama_prefect.retries import TRANSIENT_RETRIES, error_of, retry_transient
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner
from llama_prefect.settings import (
    AccuracyFloor,
    CrossingParameters,
    ObjectiveName,
    PositiveSeconds,
    SloSeconds,
    VideoSourceText,
)
from llama_prefect.sources import list_videos as _list_source
from llama_prefect.video import ops as video_ops
from llama_prefect.video.segments import Segment, VideoInfo, probe
from llama_prefect.video.segments import split as split_video

logger = logging.getLogger(__name__)

#: Version of the pipeline's answers: bump it when an op's body or the meaning of an
#: answer changes, so archive runs stop reusing results of the old version.
PIPELINE_VERSION = "1"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")
DEVICES = {LOCAL_CPU: "cpu", LOCAL_GPU: "cuda", ECS_GPU: "cuda", GPU_POOL: "cuda"}
#: Backends of the torch ops, and of the CPU-only people detector. The cloud ones
#: take part only in runs that configure them (`llama_prefect.backends.cloud`).
TORCH_BACKENDS = (LOCAL_CPU, LOCAL_GPU, LAMBDA, ECS_GPU, GPU_POOL)
CPU_BACKENDS = (LOCAL_CPU, LAMBDA)
#: Lambda's memory size is a knob of every op that may run there.
CLOUD_KNOBS = {LAMBDA: {"memory_mb": MEMORY_SIZES_MB}}
DECODERS = ("pyav", "decord", "opencv")
#: Seconds an invocation spends in Prefect's task engine outside its op's body (state
#: changes through the API, result handling). Measured here, on 2 cores with a local
#: server: the report's latency less the task run's running time was 12 ms (median
#: over 255 invocations), and an aggregate whose body takes under 1 ms spent 4 ms
#: running. Exploration calls the bodies directly, so this is added to every seed.
TASK_OVERHEAD_S = 0.015
#: A short input, at least this share of a segment from its keyframe on: the people
#: detection that runs beside the light ops' trials works on one (ours).
SHORT_INPUT_SHARE = 0.125


def _segment_frames(parameters: Mapping[str, Any]) -> float:
    return float(parameters["segment"].num_frames)


def _segment_megapixels(parameters: Mapping[str, Any]) -> float:
    """Work of a detector over a segment: its frames' native pixels, in millions."""
    seg = parameters["segment"]
    return seg.num_frames * seg.width_px * seg.height_px / 1e6


def _decoded_megapixels(parameters: Mapping[str, Any]) -> float:
    """Work of decoding a segment: the frames from its anchor keyframe on, in Mpx.

    A decoder seeks to the keyframe at or before the segment's first frame and decodes
    from there, so a segment far from its keyframe costs more than its own frames.
    """
    seg = parameters["segment"]
    frames = seg.end_frame - getattr(seg, "anchor_frame", seg.start_frame)
    return frames * seg.width_px * seg.height_px / 1e6


def _short_segment(seg: Segment, sample_every: Iterable[int] = (1,)) -> Segment:
    """The first frames of `seg`'s keyframe interval: little to decode, little work.

    Its length is a multiple of every value of `sample_every`, so each configuration
    samples the same share of its frames as of a full segment's. It is not a fit
    input of the light ops' studies (see `_keyframe_segment`): it is the background
    work beside their trials.
    """
    step = math.lcm(*sample_every)
    wanted = max(2, round(seg.num_frames * SHORT_INPUT_SHARE))
    frames = -(-wanted // step) * step
    start = seg.anchor_frame
    return seg.model_copy(update={"start_frame": start, "end_frame": start + frames})


def _segment_video(parameters: Mapping[str, Any]) -> str:
    return str(parameters["segment"].video)


def build_pipeline() -> Pipeline:
    """Declares the crossing pipeline: ops, knob spaces, edges and their priors."""
    p = Pipeline("crossing")
    p.add_op(
        OpSpec(
            "split",
            unit="video",
            group_of=lambda params: str(params["video"]),
        )
    )
    p.add_op(
        OpSpec(
            "motion",
            knobs={
                "decoder": DECODERS,
                "sample_every": (1, 2, 4),
                "width_px": (320, 160),
                "device": ("cpu",),
            },
            unit="decoded megapixel",
            backends=TORCH_BACKENDS,
            backend_knobs=CLOUD_KNOBS,
            device_by_backend=DEVICES,
            reference={"sample_every": 1, "width_px": 320},
            units_of=_decoded_megapixels,
            group_of=_segment_video,
        )
    )
    p.add_op(
        OpSpec(
            "people",
            knobs={
                "decoder": DECODERS,
                "sample_every": (2, 5, 10),
                "width_px": (768, 640),
                "win_stride_px": (8, 16),
                "threads": (1, 2),
            },
            unit="megapixel",
            backends=CPU_BACKENDS,
            backend_knobs=CLOUD_KNOBS,
            # HOG finds people at least 128 px tall: below the native 768 px of the
            # street footage it misses about half of them.
            reference={"sample_every": 2, "width_px": 768, "win_stride_px": 8},
            units_of=_segment_megapixels,
            group_of=_segment_video,
        )
    )
    p.add_op(
        OpSpec(
            "faces",
            knobs={
                "decoder": DECODERS,
                "sample_every": (5, 10, 20),
                "width_px": (640, 320),
                "model": ("haar", "mtcnn"),
                "threads": (1, 2),
                "device": ("cpu",),
            },
            unit="decoded megapixel",
            backends=TORCH_BACKENDS,
            backend_knobs=CLOUD_KNOBS,
            device_by_backend=DEVICES,
            reference={"sample_every": 5, "width_px": 640, "model": "mtcnn"},
            # Its cheap configurations look at a frame or two of a segment, so what
            # grows with the segment is the decoding, which starts at the keyframe.
            units_of=_decoded_megapixels,
            group_of=_segment_video,
        )
    )
    p.add_op(
        OpSpec(
            "aggregate",
            unit="video",
            gather=True,
            group_of=lambda params: str(params["info"].path),
        )
    )
    p.add_edge("split", "motion", fanout=10)
    p.add_edge("motion", "people", fire_prob=0.8)
    p.add_edge("people", "faces", fire_prob=0.7)
    p.add_edge("faces", "aggregate")
    p.add_edge("people", "aggregate")
    return p


PIPELINE = build_pipeline()


def _op(name: str) -> Any:
    """Marks a task's function as the body of pipeline op `name`."""

    def mark(fn: Any) -> Any:
        setattr(fn, OP_ATTRIBUTE, name)
        return fn

    return mark


@dataclass
class VideoSplit:
    """What `split` returns: the probed video and its segments."""

    info: VideoInfo
    segments: list[Segment]


def _run_logger() -> Any:
    """The task run's logger (seen in the UI), or the module's outside a run."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


@task(name="split", retries=TRANSIENT_RETRIES, retry_condition_fn=retry_transient)
@_op("split")
def split(video: str, segment_s: float = 4.0) -> VideoSplit:
    """Probes `video` and cuts it into segments of `segment_s` seconds."""
    info = probe(video)
    if info.cut_short:
        _run_logger().warning(
            "%s: its header declares %d frames but the file holds %d (cut short?); "
            "the answer covers the %.1f s that are there",
            video,
            info.declared_frames,
            info.num_frames,
            info.duration_s,
        )
    return VideoSplit(info, split_video(info, segment_s))


@task(
    name="motion",
    retries=TRANSIENT_RETRIES,
    retry_condition_fn=retry_transient,
    task_run_name="motion-{segment.index} {decoder} s{sample_every} w{width_px} "
    "{device}",
)
@_op("motion")
def motion(
    segment: Segment,
    decoder: str = "pyav",
    sample_every: int = 2,
    width_px: int = 320,
    device: str = "cpu",
) -> video_ops.MotionResult:
    """Tells whether anything moves in `segment` (torch frame differencing)."""
    return video_ops.motion_score(
        segment,
        decoder=decoder,
        sample_every=sample_every,
        width_px=width_px,
        device=device,
    )


@task(
    name="people",
    retries=TRANSIENT_RETRIES,
    retry_condition_fn=retry_transient,
    task_run_name=(
        "people-{segment.index} {decoder} s{sample_every} w{width_px} "
        "ws{win_stride_px} t{threads}"
    ),
)
@_op("people")
def people(
    segment: Segment,
    decoder: str = "pyav",
    sample_every: int = 5,
    width_px: int = 640,
    win_stride_px: int = 8,
    threads: int = 1,
) -> video_ops.PeopleResult:
    """Counts pedestrians on sampled frames of `segment` (OpenCV HOG)."""
    return video_ops.count_people(
        segment,
        decoder=decoder,
        sample_every=sample_every,
        width_px=width_px,
        win_stride_px=win_stride_px,
        threads=threads,
    )


@task(
    name="faces",
    retries=TRANSIENT_RETRIES,
    retry_condition_fn=retry_transient,
    task_run_name=(
        "faces-{segment.index} {model} {decoder} s{sample_every} w{width_px} "
        "t{threads} {device}"
    ),
)
@_op("faces")
def faces(
    segment: Segment,
    decoder: str = "pyav",
    sample_every: int = 10,
    width_px: int = 640,
    model: str = "haar",
    threads: int = 1,
    device: str = "cpu",
) -> video_ops.FaceResult:
    """Counts faces on sampled frames of a segment where people were seen."""
    return video_ops.count_faces(
        segment,
        decoder=decoder,
        sample_every=sample_every,
        width_px=width_px,
        model=model,
        threads=threads,
        device=device,
    )


@task(name="aggregate", retries=TRANSIENT_RETRIES, retry_condition_fn=retry_transient)
@_op("aggregate")
def aggregate(
    info: VideoInfo,
    people_results: list[video_ops.PeopleResult],
    face_results: list[video_ops.FaceResult],
    segments: int,
    segments_with_motion: int,
    window_s: float = 10.0,
    crowd_threshold: float = 4.0,
) -> video_ops.VideoAnswer:
    """Turns one video's counts into people per window and a crowded verdict."""
    return video_ops.aggregate(
        info,
        people_results,
        face_results,
        segments=segments,
        segments_with_motion=segments_with_motion,
        window_s=window_s,
        crowd_threshold=crowd_threshold,
    )


def list_videos(source: str | Path) -> list[str]:
    """The video files of a folder or an S3 prefix (sorted), or the one file named."""
    return _list_source(source)


@dataclass
class _VideoState:
    """Progress of one video through the pipeline inside the flow."""

    path: str
    info: VideoInfo | None = None
    segments: int = 0
    outstanding: int = 0
    with_motion: int = 0
    people: list[video_ops.PeopleResult] = field(default_factory=list)
    faces: list[video_ops.FaceResult] = field(default_factory=list)
    answer: video_ops.VideoAnswer | None = None
    errors: list[str] = field(default_factory=list)
    failed_segments: list[int] = field(default_factory=list)


class _Orchestrator:
    """Submits the pipeline's tasks as results arrive and decides the branches."""

    def __init__(
        self,
        segment_s: float,
        window_s: float,
        crowd_threshold: float,
        on_done: Callable[[_VideoState], None] | None = None,
    ):
        self.segment_s = segment_s
        self.window_s = window_s
        self.crowd_threshold = crowd_threshold
        self.on_done = on_done
        self.pending: dict[PrefectFuture[Any], tuple[str, _VideoState, Any]] = {}
        self.failures: list[dict[str, Any]] = []

    def start(self, videos: Iterable[str]) -> list[_VideoState]:
        states = [_VideoState(v) for v in videos]
        for state in states:
            self._submit("split", state, None, split.submit(state.path, self.segment_s))
        return states

    def run(self) -> None:
        while self.pending:
            for fut in _first_done(list(self.pending)):
                kind, state, item = self.pending.pop(fut)
                value = _result_or_error(fut)
                if isinstance(value, _Failed):
                    self._on_failure(kind, state, item, value)
                else:
                    getattr(self, f"_on_{kind}")(state, item, value)
                if kind != "split" and kind != "aggregate":
                    state.outstanding -= 1
                if kind != "aggregate":
                    self._maybe_aggregate(state)
                if self._over(kind, state, value) and self.on_done is not None:
                    self.on_done(state)

    @staticmethod
    def _over(kind: str, state: _VideoState, value: Any) -> bool:
        """True when nothing more will run for the video of this result."""
        return kind == "aggregate" or (kind == "split" and isinstance(value, _Failed))

    def _submit(self, kind: str, state: _VideoState, item: Any, fut: Any) -> None:
        self.pending[fut] = (kind, state, item)
        if kind not in ("split", "aggregate"):
            state.outstanding += 1

    def _on_split(self, state: _VideoState, _: Any, value: VideoSplit) -> None:
        state.info, state.segments = value.info, len(value.segments)
        for seg in value.segments:
            self._submit("motion", state, seg, motion.submit(seg))

    def _on_motion(self, state: _VideoState, seg: Segment, value: Any) -> None:
        if value.moving:
            state.with_motion += 1
            self._submit("people", state, seg, people.submit(seg))

    def _on_people(self, state: _VideoState, seg: Segment, value: Any) -> None:
        state.people.append(value)
        if any(count > 0 for count in value.counts):
            self._submit("faces", state, seg, faces.submit(seg))

    def _on_faces(self, state: _VideoState, _: Any, value: Any) -> None:
        state.faces.append(value)

    def _on_aggregate(self, state: _VideoState, _: Any, value: Any) -> None:
        state.answer = value

    def _on_failure(
        self, kind: str, state: _VideoState, item: Any, failed: _Failed
    ) -> None:
        state.errors.append(f"{kind}: {failed.message}")
        segment = item.index if isinstance(item, Segment) else None
        if segment is not None:
            state.failed_segments.append(segment)
        self.failures.append(
            {
                "video": state.path,
                "op": kind,
                "segment": segment,
                "frames": [item.start_frame, item.end_frame]
                if segment is not None
                else None,
                "task_run_id": str(failed.task_run_id),
                "error_type": failed.error_type,
                "message": failed.message,
                "deterministic": failed.deterministic,
            }
        )

    def _maybe_aggregate(self, state: _VideoState) -> None:
        if state.info is None or state.outstanding > 0 or state.answer is not None:
            return
        if any(
            kind == "aggregate" and s is state for kind, s, _ in self.pending.values()
        ):
            return
        people_sorted = sorted(state.people, key=lambda r: r.frame_indices[:1])
        fut = aggregate.submit(
            state.info,
            people_sorted,
            state.faces,
            state.segments,
            state.with_motion,
            self.window_s,
            self.crowd_threshold,
        )
        self._submit("aggregate", state, None, fut)


@dataclass
class _Failed:
    """A failed task run, as the flow records it."""

    message: str
    error_type: str
    deterministic: bool
    task_run_id: Any


def _result_or_error(fut: PrefectFuture[Any]) -> Any:
    try:
        return fut.result()
    except Exception as exc:  # a failed task run: recorded, the archive goes on
        error = exc
        state = getattr(fut, "state", None)
        held = error_of(state) if state is not None else None
        if held is not None:
            error = held  # type: ignore[assignment]
        return _Failed(
            message=f"{type(error).__name__}: {error}",
            error_type=type(error).__name__,
            deterministic=is_deterministic(error),
            task_run_id=fut.task_run_id,
        )


def _first_done(futures: list[PrefectFuture[Any]]) -> list[PrefectFuture[Any]]:
    """The futures that are done, waiting for at least one."""
    wrapped: dict[Any, PrefectFuture[Any]] = {
        getattr(f, "wrapped_future", None): f for f in futures
    }
    if all(isinstance(w, concurrent.futures.Future) for w in wrapped):
        done, _ = concurrent.futures.wait(
            list(wrapped), return_when=concurrent.futures.FIRST_COMPLETED
        )
        return [wrapped[w] for w in done]
    futures[0].wait()
    return [futures[0]]


@flow(
    name="crossing",
    task_runner=LlamaTaskRunner(PIPELINE),  # type: ignore[arg-type]
    log_prints=True,
)
def crossing(
    videos: VideoSourceText = "samples",
    slo_s: SloSeconds = 120.0,
    objective: ObjectiveName = "cost",
    accuracy_floor: AccuracyFloor = 0.8,
    segment_s: PositiveSeconds = 4.0,
    window_s: PositiveSeconds = 10.0,
    crowd_threshold: float = 4.0,
    report_path: str = "runs/latest/report.json",
    results_dir: str | None = None,
    backend_settings: str | None = None,
    price_catalog: str | None = None,
    profile_store: str | None = None,
) -> dict[str, Any]:
    """Answers "is this crossing crowded?" for every video of an archive.

    Args:
        videos: A folder of videos, one video file, or an ``s3://bucket/prefix``.
        slo_s: Seconds the whole archive may take (one deadline for the run).
        objective: ``cost`` (cheapest that meets each target), ``latency`` or
            ``cheapest``.
        accuracy_floor: Configurations less accurate than this against each op's
            reference configuration are never chosen, in [0, 1].
        segment_s: Length of the segments a video is cut into.
        window_s: Length of the time windows people are counted over.
        crowd_threshold: Mean people in a window from which it counts as crowded.
        report_path: Where the JSON run report is written.
        results_dir: Folder of per-video results; set it for an archive run that
            resumes where an interrupted one stopped. None processes every video.
        backend_settings: Name of a saved ``llama-backend-settings`` block.
        price_catalog: Name of a saved ``llama-price-catalog`` block.
        profile_store: Name of a saved ``llama-profile-store`` block.

    Returns:
        The run report.
    """
    params = CrossingParameters.check(
        videos=videos,
        slo_s=slo_s,
        objective=objective,
        accuracy_floor=accuracy_floor,
        segment_s=segment_s,
        window_s=window_s,
        crowd_threshold=crowd_threshold,
        report_path=report_path,
        results_dir=results_dir,
        backend_settings=backend_settings,
        price_catalog=price_catalog,
        profile_store=profile_store,
    )
    return _run_archive(params)


def _run_archive(params: CrossingParameters) -> dict[str, Any]:
    """The flow's body once its parameters are checked."""
    from llama_prefect.archive import Archive
    from llama_prefect.report import build_report, publish_artifacts
    from llama_prefect.s3 import write_report

    archive = Archive.open(
        list_videos(params.videos),
        results_dir=params.results_dir,
        pipeline=PIPELINE.name,
        version=PIPELINE_VERSION,
        answer_parameters=_answer_parameters(
            params.segment_s, params.window_s, params.crowd_threshold
        ),
        run_id=_flow_run_id(),
    )
    runner = _llama_runner()

    def done(state: _VideoState) -> None:
        archive.finish(_video_entry(state), runner.records())

    orchestrator = _Orchestrator(
        params.segment_s, params.window_s, params.crowd_threshold, on_done=done
    )
    states = orchestrator.start(archive.todo)
    orchestrator.run()

    report = build_report(
        pipeline=PIPELINE.name,
        records=runner.records(),
        videos=archive.entries([_video_entry(s) for s in states]),
        failures=orchestrator.failures,
        slo_s=params.slo_s,
        latency_s=runner.elapsed_s(),
        settings={
            **params.model_dump(),
            "pipeline_version": PIPELINE_VERSION,
            "profile_path": str(runner.profile_path),
        },
        static_plan=_static_plan(runner, params),
    )
    write_report(report, params.report_path)
    publish_artifacts(report)
    if s3.is_s3_uri(params.report_path):
        _publish_plots_to_s3(report, params.report_path)
    else:
        _publish_plots(report, Path(params.report_path).parent)
    return report


def _answer_parameters(
    segment_s: float, window_s: float, crowd_threshold: float
) -> dict[str, float]:
    """The parameters that change a video's answer: part of its results' key."""
    return {
        "segment_s": segment_s,
        "window_s": window_s,
        "crowd_threshold": crowd_threshold,
    }


def stored_answers(
    results_dir: str | Path,
    videos: Sequence[str],
    segment_s: float = 4.0,
    window_s: float = 10.0,
    crowd_threshold: float = 4.0,
) -> list[str]:
    """The videos of `videos` whose answer `results_dir` holds for these parameters.

    A stored answer is matched by the video path it was stored under, so this reads
    no video (a rerun keys videos by content and also finds a moved one).
    """
    from llama_prefect.results import ResultStore, version_tag

    tag = version_tag(
        PIPELINE_VERSION, _answer_parameters(segment_s, window_s, crowd_threshold)
    )
    stored = {
        r.data.get("video")
        for r in ResultStore(results_dir, PIPELINE.name, tag).results()
    }
    return [v for v in videos if v in stored]


def _publish_plots_to_s3(report: dict[str, Any], report_uri: str) -> None:
    """The plots of `_publish_plots`, made in a temporary folder, beside the report."""
    import tempfile

    folder_uri = report_uri.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="llama-plots-") as tmp:
        _publish_plots(report, Path(tmp))
        for image in sorted(Path(tmp).glob("*.png")):
            s3.put_bytes(f"{folder_uri}/{image.name}", image.read_bytes())


def _publish_plots(report: dict[str, Any], folder: Path) -> None:
    """Predicted against observed latency, beside the report and as an artifact."""
    try:
        from llama_prefect.plots import publish_run_plots
    except ImportError as exc:  # matplotlib is an extra
        logger.info("no fidelity plot (%s); pip install 'llama-prefect[plots]'", exc)
        return
    publish_run_plots(report, folder)


def _static_plan(
    runner: LlamaTaskRunner, params: CrossingParameters
) -> dict[str, Any] | None:
    """The best static plan on this run's work, or None when nothing ran."""
    from llama_prefect.static_plan import best_static_plan

    scheduler = runner.scheduler
    if scheduler is None:
        return None
    plan = best_static_plan(
        runner.records(),
        pipeline=PIPELINE,
        store=scheduler.store,
        prices=scheduler.prices,
        capacity={name: b.capacity for name, b in scheduler.backends.items()},
        startup_s={name: b.startup_s for name, b in scheduler.backends.items()},
        slo_s=params.slo_s,
        accuracy_floor=params.accuracy_floor,
    )
    return plan.as_dict() if plan else None


def _flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run else None


def _llama_runner() -> LlamaTaskRunner:
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not isinstance(runner, LlamaTaskRunner):
        from llama_prefect.errors import ConfigurationError

        raise ConfigurationError(
            "the crossing flow must run on LlamaTaskRunner, but its task runner is "
            f"{type(runner).__name__}; keep the flow's task_runner or pass a "
            "LlamaTaskRunner through with_options"
        )
    return runner


def _video_entry(state: _VideoState) -> dict[str, Any]:
    return {
        "video": state.path,
        "answer": state.answer.model_dump() if state.answer else None,
        "complete": state.answer is not None and not state.errors,
        "errors": state.errors,
        "failed_segments": sorted(state.failed_segments),
    }


# -- exploration --------------------------------------------------------------------

#: Most videos the exploration looks at; a larger archive is sampled evenly (ours).
SAMPLE_VIDEOS = 12


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def _count_agreement(outputs: Sequence[Any], reference: Sequence[Any]) -> float:
    """1 minus the mean relative error of the mean count per segment, floored at 0."""
    errors = [
        abs(_mean(o.counts) - _mean(r.counts)) / max(_mean(r.counts), 1.0)
        for o, r in zip(outputs, reference, strict=True)
    ]
    return max(0.0, 1.0 - _mean(errors))


def _motion_agreement(outputs: Sequence[Any], reference: Sequence[Any]) -> float:
    same = [o.moving == r.moving for o, r in zip(outputs, reference, strict=True)]
    return _mean(1.0 if s else 0.0 for s in same)


@dataclass
class SampleWork:
    """Segments to explore on, chosen from the archive itself.

    Attributes:
        spread: Segments with low, middling and high motion, for the motion op.
        busy: Moving segments where people are seen, for the people and face ops
            (a detector measured on empty footage learns nothing about accuracy).
        videos: The videos that could be read (at most `SAMPLE_VIDEOS`).
        segments_per_video: Mean segments per video (the split's fan-out).
        moving_share: Share of the scored segments that have motion.
        people_share: Share of the moving segments scored where people are seen.
        signature: What the archive looks like, for profile reuse.
    """

    spread: list[Segment]
    busy: list[Segment]
    videos: list[str]
    segments_per_video: float
    moving_share: float
    people_share: float
    signature: ArchiveSignature


def sample_work(videos: Sequence[str], segment_s: float = 4.0) -> SampleWork:
    """Scores two segments per video for motion and people; picks exploration inputs.

    Videos that cannot be probed are left out with a warning: a broken file in the
    archive must not stop the exploration of the others. An archive of more than
    `SAMPLE_VIDEOS` videos is looked at through that many, spread evenly over it.
    """
    per_video = [
        found
        for found in (_segments_or_none(v, segment_s) for v in _spread(videos))
        if found
    ]
    if not per_video:
        raise VideoError(
            f"none of the {len(videos)} videos could be read; check the files with "
            "ffprobe"
        )
    candidates = [
        segs[i]
        for _, segs in per_video
        for i in sorted({len(segs) // 3, 2 * len(segs) // 3})
    ]
    scored = [
        (video_ops.motion_score(s, sample_every=4, width_px=160), s) for s in candidates
    ]
    scored.sort(key=lambda pair: pair[0].score, reverse=True)
    by_score = [s for _, s in scored]
    spread = [by_score[0], by_score[len(by_score) // 2], by_score[-1]]
    people = _people_seen([s for m, s in scored if m.moving] or by_score)
    moving_share = _mean(1.0 if m.moving else 0.0 for m, _ in scored)
    return SampleWork(
        spread=list({s.video + str(s.index): s for s in spread}.values()),
        busy=[s for _, s in people[:2]],
        videos=[info.path for info, _ in per_video],
        segments_per_video=_mean(len(segs) for _, segs in per_video),
        moving_share=moving_share,
        people_share=_mean(1.0 if n > 0 else 0.0 for n, _ in people),
        signature=ArchiveSignature.of_videos(
            [
                (i.num_frames, i.width_px * i.height_px / 1e6, i.fps, i.codec)
                for i, _ in per_video
            ],
            motion_share=moving_share,
            people_per_frame=_mean(n for n, _ in people),
        ),
    )


def _spread(videos: Sequence[str]) -> list[str]:
    if len(videos) <= SAMPLE_VIDEOS:
        return list(videos)
    step = len(videos) / SAMPLE_VIDEOS
    return [videos[int(i * step)] for i in range(SAMPLE_VIDEOS)]


def _segments_or_none(
    video: str, segment_s: float
) -> tuple[VideoInfo, list[Segment]] | None:
    try:
        info = probe(video)
        return info, split_video(info, segment_s)
    except VideoError as exc:
        logger.warning("exploration leaves out %s: %s", video, exc)
        return None


def _people_seen(segments: Sequence[Segment]) -> list[tuple[float, Segment]]:
    """Mean people a quick look at a few frames finds per segment, most first."""
    seen = [
        (_mean(video_ops.count_people(s, sample_every=10, width_px=768).counts), s)
        for s in segments
    ]
    seen.sort(key=lambda pair: pair[0], reverse=True)
    return seen


def _keyframe_segment(seg: Segment) -> Segment:
    """A segment as long as `seg` that starts at its keyframe: the least to decode.

    The decode-bound ops do two kinds of work: decoding, which grows with the frames
    from the keyframe on (their work units), and analysing the sampled frames, of
    which every whole segment has the same number wherever it starts. In a run the
    second is paid once per call, so it belongs to the fixed part of the profile's
    line. This input keeps it whole and shrinks only the decoding, so the line fitted
    through it and the other sample segments puts each in its place. (A few frames
    from the keyframe, as `_short_segment` gives, analyse fewer frames too: the line
    then took part of the analysis for work per unit, and its fixed part came out at
    a quarter to a half of the line through all whole segments of the video.)
    """
    start = seg.anchor_frame
    return seg.model_copy(
        update={"start_frame": start, "end_frame": start + seg.num_frames}
    )


def _with_keyframe_twins(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    """Inputs of `segments`, each followed by its `_keyframe_segment` twin.

    A twin shares its segment's video, codec and content, so the pair differs only
    in what there is to decode. Across videos decoding costs differ per megapixel
    (msmpeg4 about a quarter of h264 in the crossing runs here), and a line through
    one video's far segment and another's near one takes that difference for work
    per unit; with a pair from each video the line leans on each video's own slope.
    A segment that starts at its keyframe is its own twin; repeats are left out.

    Note:
        One line per configuration still cannot hold two codecs' costs: its slope
        is a mix of theirs, weighted by how far each video's pair spreads, so a
        video of the cheaper codec is predicted too slow far from its keyframes.
    """
    seen: set[tuple[str, int, int]] = set()
    inputs: list[dict[str, Any]] = []
    for seg in segments:
        for one in (seg, _keyframe_segment(seg)):
            key = (str(one.video), one.start_frame, one.end_frame)
            if key not in seen:
                seen.add(key)
                inputs.append({"segment": one})
    return inputs


def exploration_probes(work: SampleWork, videos: Sequence[str]) -> dict[str, Any]:
    """How to measure each op of the crossing pipeline on sample work."""
    from llama_prefect.tuning.explore import OpProbe

    # Each sample segment with its twin from the keyframe gives the decode-bound ops
    # inputs with more and less to decode and the same frames to analyse, from
    # which each study fits a latency line (fixed + per unit). People detection
    # costs seconds per segment, next to which its fixed part is small: it keeps
    # the sample segments only, a proportional line, and a shorter study.
    first = (work.busy or work.spread)[0]
    busy = [{"segment": s} for s in work.busy]
    # In a run, motion and faces share the machine mostly with people detection,
    # which holds the other slot about four fifths of the time; two copies of a
    # light op side by side make it look up to twice as fast as it runs. Their
    # trials run beside HOG on one sampled frame at a time instead.
    hog_input = _short_segment(first, PIPELINE.ops["people"].knobs["sample_every"])

    def beside_people() -> Any:
        return people.fn(
            segment=hog_input, decoder="opencv", sample_every=10, width_px=768
        )

    gather_input = {
        "info": probe(work.spread[0].video),
        "people_results": [],
        "face_results": [],
        "segments": 1,
        "segments_with_motion": 0,
    }
    return {
        "split": OpProbe(
            split.fn,
            [{"video": v} for v in work.videos[:2]],
            lambda p: 1.0,
            fanout=lambda out: float(len(out.segments)),
        ),
        "motion": OpProbe(
            motion.fn,
            _with_keyframe_twins(work.spread),
            _decoded_megapixels,
            _motion_agreement,
            fanout=lambda out: 1.0 if out.moving else 0.0,
            background=beside_people,
        ),
        "people": OpProbe(
            people.fn,
            busy,
            _segment_megapixels,
            _count_agreement,
            fanout=lambda out: 1.0 if any(c > 0 for c in out.counts) else 0.0,
        ),
        "faces": OpProbe(
            faces.fn,
            _with_keyframe_twins(work.busy),
            _decoded_megapixels,
            _count_agreement,
            background=beside_people,
        ),
        "aggregate": OpProbe(aggregate.fn, [gather_input], lambda p: 1.0),
    }


@dataclass
class Profiling:
    """What `seed_profiles` did: explored the archive, or reused a stored profile.

    Attributes:
        path: The profile store written (or kept).
        signature: What the archive looks like.
        exploration: The exploration, or None when a stored profile was reused.
        reused: The stored profile reused and its distance, or None.
        seconds: Wall seconds, the look at the archive included.
        cost_usd: Dollars of the slots held, the look at the archive included.
    """

    path: Path
    signature: ArchiveSignature
    exploration: Any
    reused: Match | None
    seconds: float
    cost_usd: float


def seed_profiles(
    videos: Sequence[str],
    profile_path: str | Path,
    *,
    n_trials: int = 16,
    segment_s: float = 4.0,
    accuracy_floor: float = 0.8,
    timeout_s: float = 120.0,
    journal_path: str | Path | None = None,
    progress: bool = True,
    reexplore: bool = True,
) -> Profiling:
    """Explores the crossing pipeline on `videos` and writes the profile store.

    Args:
        videos: The archive's video files.
        profile_path: The profile store to write.
        n_trials: Distinct configurations to try per op and backend.
        segment_s: Segment length the flow will cut videos into, in seconds.
        accuracy_floor: Least accuracy against each op's reference, in [0, 1].
        timeout_s: Time bound of one trial, in seconds.
        journal_path: Optuna journal file keeping every trial (none: in memory).
        progress: Show a progress bar.
        reexplore: Explore even when a stored profile in the folder of
            `profile_path` was measured on a similar archive (see
            `llama_prefect.tuning.reuse`); False reuses that profile instead.
    """
    from llama_prefect.tuning.explore import pipeline_units

    from llama_prefect.core.pricing import PriceCatalog

    start = time.perf_counter()
    path = Path(profile_path)
    work = sample_work(videos, segment_s)
    look_s = time.perf_counter() - start
    prices = PriceCatalog.load()
    if not reexplore:
        match = nearest_profile(
            work.signature,
            path.parent,
            pipeline=PIPELINE.name,
            accuracy_floor=accuracy_floor,
            units=pipeline_units(PIPELINE, PIPELINE.ops),
            prefer=path,
        )
        if match is not None and match.reusable:
            _reuse(match, path)
            seconds = time.perf_counter() - start
            cost = seconds * prices.price(LOCAL_CPU).usd_per_slot_s
            return Profiling(path, work.signature, None, match, seconds, cost)
    result = _explore_archive(
        work, videos, accuracy_floor, n_trials, timeout_s, journal_path, progress
    )
    _record_archive(result, work, videos, look_s, prices)
    _seed_cloud_profiles(result.store)
    _keep_aside(path)  # of this archive too: what it learned stays
    result.store.save(path)
    seconds = time.perf_counter() - start
    return Profiling(path, work.signature, result, None, seconds, result.cost_usd)


def _explore_archive(
    work: SampleWork,
    videos: Sequence[str],
    accuracy_floor: float,
    n_trials: int,
    timeout_s: float,
    journal_path: str | Path | None,
    progress: bool,
) -> Any:
    from llama_prefect.tuning.explore import explore

    from llama_prefect.backends.local import local_cpu, local_gpu

    pools = {b.name: b.capacity for b in (local_cpu(), local_gpu()) if b.available()}
    return explore(
        PIPELINE,
        exploration_probes(work, videos),
        backends=list(pools),
        slots=pools,
        n_trials=n_trials,
        timeout_s=timeout_s,
        accuracy_floor=accuracy_floor,
        journal_path=journal_path,
        progress=progress,
        overhead_s=TASK_OVERHEAD_S,
    )


def _record_archive(
    result: Any, work: SampleWork, videos: Sequence[str], look_s: float, prices: Any
) -> None:
    """Puts the archive's shape and the look's cost into the store."""
    store = result.store
    # The declared fan-out and branch odds are replaced by what this archive shows.
    store.observe_edge("split", "motion", work.segments_per_video)
    store.observe_edge("motion", "people", work.moving_share)
    store.observe_edge("people", "faces", work.people_share)
    from llama_prefect.tuning.explore import pipeline_units

    # What a work unit is, so a store of other units is never reused for this one.
    store.meta["units"] = pipeline_units(PIPELINE, PIPELINE.ops)
    store.meta["measured_on"] = {
        "videos": [str(v) for v in videos],
        "sampled_videos": work.videos,
        "signature": work.signature.to_dict(),
    }
    look_usd = look_s * prices.price(LOCAL_CPU).usd_per_slot_s
    result.seconds += look_s
    result.cost_usd += look_usd
    explored = store.meta["exploration"]
    explored.update(
        seconds=result.seconds, cost_usd=result.cost_usd, archive_look_s=look_s
    )


def _reuse(match: Match, path: Path) -> None:
    """Makes the stored profile of `match` the one at `path`."""
    if match.path.resolve() == path.resolve():
        return
    data = json.loads(match.path.read_text(encoding="utf-8"))
    store = ProfileStore.from_dict(data)
    store.meta["reused_from"] = {
        "path": str(match.path),
        "distance": match.distance,
        "terms": match.terms,
    }
    _keep_aside(path)
    store.save(path)
    plots = match.path.with_suffix(PLOTS_SUFFIX)
    if plots.is_dir():  # its Pareto plots come back with it
        shutil.copytree(plots, path.with_suffix(PLOTS_SUFFIX), dirs_exist_ok=True)


def _keep_aside(path: Path) -> None:
    """Renames the store at `path` so it stays in the library.

    The new name holds a digest of the archive it was measured on, so an older
    copy of the same archive's store is replaced by the newer one.
    """
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    theirs = stored_signature(data) if isinstance(data, dict) else None
    if theirs is None:
        return
    digest = hashlib.sha1(
        json.dumps(theirs.to_dict(), sort_keys=True).encode("utf-8")
    ).hexdigest()[:8]
    aside = path.with_name(f"{path.stem}.{digest}{path.suffix}")
    path.replace(aside)
    plots = path.with_suffix(PLOTS_SUFFIX)
    if plots.is_dir():  # the store's Pareto plots go with it
        kept = aside.with_suffix(PLOTS_SUFFIX)
        shutil.rmtree(kept, ignore_errors=True)
        plots.replace(kept)
    logger.info("kept the profile that was at %s as %s", path, aside)


def _seed_cloud_profiles(store: Any) -> None:
    """Lambda profiles from the one-core CPU ones; GPU-pool ones from a local GPU's.

    Estimates until feedback corrects them (see `seed_lambda_profiles` and
    `seed_pool_profiles`); they are used only in runs that have those backends.
    """
    from llama_prefect.backends.aws_lambda import seed_lambda_profiles
    from llama_prefect.backends.ecs import seed_pool_profiles

    for op in ("motion", "people", "faces"):
        seed_lambda_profiles(store, op)
        if op != "people":
            seed_pool_profiles(store, op)
