"""Simulated workloads drawn from the crossing pipeline's real profile store.

The profile store that `llama-prefect profile crossing` writes holds, for each op of
the crossing pipeline (split, motion, people, faces, aggregate), the configurations
measured on this machine's CPU: latency per unit of work (megapixels of a segment),
accuracy against the op's reference configuration, work units per invocation and
the learned fan-out and branch rates. This module turns it into a workload for the
simulator:

* **Backends.** Every CPU configuration runs on a fixed CPU pool (``vm-cpu``, as
  measured) and on Lambda at three memory sizes. Lambda gives one vCPU at 1769 MB
  and CPU in proportion to memory, so a configuration with ``t`` threads runs
  ``max(1, t / (memory / 1769))`` times slower than measured. Ops with a torch body
  (motion; faces with MTCNN) also run on an ECS GPU pool (``ecs-gpu``) one invocation
  per call or eight per call (``call_batch``), at the speed-ups of `Assumptions`.
* **Truth.** What an invocation really takes is its profile times the archive's
  drift (1.3 in the drift workloads), times a per-configuration error of the
  exploration (each configuration was measured on a few segments), times the
  video's content factor for the op (busy footage costs the detectors more), times
  lognormal noise per invocation. Fan-out (segments per video) and branch odds
  (motion, people with faces) vary per video.
* **Archives.** Videos arrive at a steady rate; every random draw of an archive
  (content, branches, noise) is made once from its seed, so every policy and the
  oracle see the same videos and the same true latencies.

Constants marked *(ours)* are modelling choices, not measurements; they are in
`Assumptions`, with their reasons.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from llama_prefect.core.pipeline import (
    CALL_BATCH_KNOB,
    DEVICE_KNOB,
    THREADS_KNOB,
    Configuration,
    OpSpec,
    Pipeline,
)
from llama_prefect.core.pricing import MEMORY_KNOB
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError

LAMBDA, GPU, VM = "lambda", "ecs-gpu", "vm-cpu"
OPS = ("split", "motion", "people", "faces", "aggregate")
SEGMENT_OPS = ("motion", "people", "faces")
#: The seed profile shipped with the package: the output of `llama-prefect profile
#: crossing` on the sample archive (see its ``meta``).
SEED_PROFILE = "crossing_profile.json"


@dataclass(frozen=True)
class Assumptions:
    """Modelling choices of the simulated backends (ours, with their reasons).

    Attributes:
        lambda_memory_mb: Memory sizes offered on Lambda (a knob): a quarter less
            than one vCPU, one vCPU, 1.7 vCPU.
        lambda_concurrency: The account's default concurrency limit.
        lambda_cold_start_s: Start of a new execution environment for a container
            image with OpenCV and torch (published figures range from 0.5 to 5 s).
        lambda_keep_warm_s: How long an idle environment stays warm.
        gpu_slots: GPUs of the ECS pool (one invocation call each).
        gpu_start_s: Start of a GPU task on an instance of the cluster, image
            cached (tens of seconds).
        gpu_idle_stop_s: A GPU task idle this long is stopped (and stops billing).
        gpu_factor: Run time on the GPU against the measured CPU run time, per op,
            one invocation per call and eight per call. Decoding stays on the host
            CPU, so motion (decode-bound) gains little; MTCNN gains much.
        vm_slots: vCPUs of the fixed CPU pool.
        seed_error: Log-scale spread of each configuration's profile against its
            truth (exploration measures a few segments).
        noise: Log-scale spread of one invocation's latency around its truth.
    """

    lambda_memory_mb: tuple[int, ...] = (1024, 1769, 3008)
    lambda_concurrency: int = 1000
    lambda_cold_start_s: float = 1.0
    lambda_keep_warm_s: float = 600.0
    gpu_slots: int = 4
    gpu_start_s: float = 40.0
    gpu_idle_stop_s: float = 120.0
    gpu_factor: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"motion": (0.5, 0.35), "faces": (0.1, 0.03)}
    )
    vm_slots: int = 64
    seed_error: float = 0.15
    noise: float = 0.15

    @classmethod
    def steep(cls) -> Assumptions:
        """A steeper cost curve: people detection also has a GPU build.

        The crossing flow's person detector is OpenCV's HOG, which has no GPU
        build. This workload assumes a DNN detector of the same accuracy with one
        (ours: the GPU runs it in 15% of the CPU time one invocation per call, 5%
        eight per call), so the GPU is much cheaper and faster for the costliest
        op, but has few slots and a slow start.
        """
        base = cls()
        factors = {**base.gpu_factor, "people": (0.15, 0.05)}
        return cls(gpu_factor=factors)


@dataclass(frozen=True)
class ArchiveMix:
    """How an archive's videos are drawn.

    Attributes:
        name: A label.
        videos: How many videos.
        interval_s: Seconds between two video arrivals.
        segments: Least and most segments per video (uniform).
        motion_odds: Beta(a, b) of a video's share of segments with motion.
        faces_odds: Beta(a, b) of a video's share of people segments with faces.
        content_spread: Log-scale spread of a video's content factor per op.
        busy: Content factor of the detectors (people, faces) for the whole mix.
        units_spread: A video's work units vary uniformly by this share.
        drift: True latencies against the profiles.
        seed: Seed of every draw.
    """

    name: str = "street"
    videos: int = 1000
    interval_s: float = 2.0
    segments: tuple[int, int] = (6, 20)
    motion_odds: tuple[float, float] = (8.0, 2.0)
    faces_odds: tuple[float, float] = (7.0, 3.0)
    content_spread: float = 0.25
    busy: float = 1.0
    units_spread: float = 0.2
    drift: float = 1.0
    seed: int = 1


@dataclass(eq=False)
class Video:
    """One video of an archive, with every random draw made up front.

    Attributes:
        index: Its number in the archive.
        arrival_s: When it arrives (its SLO counts from then).
        segments: Its segments (the split's fan-out).
        units: Work units of one invocation, per op.
        content: Content factor per op.
        moving: Per segment, whether motion fires (people run).
        faces: Per segment, whether people are seen (faces run).
        noise: Per op, one factor per segment (one for split and aggregate).
    """

    index: int
    arrival_s: float
    segments: int
    units: dict[str, float]
    content: dict[str, float]
    moving: list[bool]
    faces: list[bool]
    noise: dict[str, list[float]]

    @property
    def name(self) -> str:
        """Its group name in the scheduler."""
        return f"v{self.index}"


@dataclass
class Workload:
    """A pipeline, its profiles and the truth behind them.

    Attributes:
        pipeline: The simulated crossing pipeline.
        profiles: What the scheduler plans from (a fresh copy for every run).
        true_s_per_unit: True latency per unit of each (op, configuration key),
            before drift, content and noise.
        assumptions: The backend model's constants.
        source: Where the measured profiles came from.
    """

    pipeline: Pipeline
    profiles: ProfileStore
    true_s_per_unit: dict[tuple[str, str], float]
    assumptions: Assumptions
    source: str

    def fresh_profiles(self) -> ProfileStore:
        """A copy of the profiles, so that a run's feedback stays in that run."""
        return ProfileStore.from_dict(self.profiles.to_dict())

    def true_s(
        self, video: Video, op: str, key: str, segment: int, drift: float
    ) -> float:
        """True latency of one invocation of `op` with configuration `key`."""
        index = 0 if op in ("split", "aggregate") else segment
        return (
            self.true_s_per_unit[(op, key)]
            * video.units[op]
            * video.content[op]
            * video.noise[op][index]
            * drift
        )


def sim_pipeline() -> Pipeline:
    """The crossing pipeline on the simulated backends, with its declared priors."""
    p = Pipeline("crossing")
    p.add_op(OpSpec("split", unit="video", backends=(LAMBDA, VM)))
    p.add_op(OpSpec("motion", backends=(LAMBDA, GPU, VM)))
    p.add_op(OpSpec("people", backends=(LAMBDA, GPU, VM)))
    p.add_op(OpSpec("faces", backends=(LAMBDA, GPU, VM)))
    p.add_op(OpSpec("aggregate", unit="video", gather=True, backends=(LAMBDA, VM)))
    p.add_edge("split", "motion", fanout=13)
    p.add_edge("motion", "people", fire_prob=0.8)
    p.add_edge("people", "faces", fire_prob=0.7)
    p.add_edge("faces", "aggregate")
    p.add_edge("people", "aggregate")
    return p


def load_source(path: str | Path | None = None) -> tuple[ProfileStore, str]:
    """The measured crossing profiles: `path`, or the seed shipped with the package."""
    if path is not None and Path(path).exists():
        return ProfileStore.load(path), str(path)
    text = resources.files("llama_prefect.data").joinpath(SEED_PROFILE)
    store = ProfileStore.from_dict(json.loads(text.read_text("utf-8")))
    return store, f"llama_prefect/data/{SEED_PROFILE}"


def build_workload(
    source: ProfileStore,
    *,
    assumptions: Assumptions | None = None,
    seed: int = 7,
    origin: str = "",
) -> Workload:
    """Expands measured CPU profiles to the simulated backends, with their truth."""
    a = assumptions or Assumptions()
    missing = [op for op in OPS if not source.has(op)]
    if missing:
        raise ConfigurationError(
            f"the profile store has no configurations of {missing}; run "
            "`llama-prefect profile crossing --videos samples` first"
        )
    rng = random.Random(seed)
    profiles = ProfileStore("crossing")
    truth: dict[tuple[str, str], float] = {}
    for op in OPS:
        for config in source.configurations(op):
            prof = source.profile(op, config)
            for sim_config, s_per_unit in _expand(op, config, prof.seed_s_per_unit, a):
                profiles.seed(op, sim_config, s_per_unit, accuracy=prof.accuracy)
                error = math.exp(rng.gauss(0.0, a.seed_error))
                truth[(op, sim_config.key)] = s_per_unit * error
        units = source.units_per_invocation(op)
        profiles.observe_units(op, units)
    profiles.edge_rates = dict(source.edge_rates)
    return Workload(sim_pipeline(), profiles, truth, a, origin)


def _expand(
    op: str, config: Configuration, s_per_unit: float, a: Assumptions
) -> list[tuple[Configuration, float]]:
    """One measured CPU configuration as configurations of the simulated backends."""
    knobs = config.as_dict()
    threads = int(knobs.get(THREADS_KNOB, 1))
    out = [(Configuration.of(VM, knobs), s_per_unit)]
    for memory_mb in a.lambda_memory_mb:
        slower = max(1.0, threads / (memory_mb / 1769.0))
        lam = Configuration.of(LAMBDA, {**knobs, MEMORY_KNOB: memory_mb})
        out.append((lam, s_per_unit * slower))
    torch_body = op in ("motion", "people") or knobs.get("model") == "mtcnn"
    if op in a.gpu_factor and torch_body and threads == 1:
        one, eight = a.gpu_factor[op]
        gpu_knobs = {k: v for k, v in knobs.items() if k != THREADS_KNOB}
        gpu_knobs[DEVICE_KNOB] = "cuda"
        for batch, factor in ((1, one), (8, eight)):
            gpu = Configuration.of(GPU, {**gpu_knobs, CALL_BATCH_KNOB: batch})
            out.append((gpu, s_per_unit * factor))
    return out


def make_archive(workload: Workload, mix: ArchiveMix) -> list[Video]:
    """Draws an archive's videos, every random choice made once from its seed."""
    rng = random.Random(mix.seed)
    base = {op: workload.profiles.units_per_invocation(op) for op in OPS}
    videos = []
    for index in range(mix.videos):
        videos.append(_video(rng, index, index * mix.interval_s, base, mix, workload))
    return videos


def _video(
    rng: random.Random,
    index: int,
    arrival_s: float,
    base: dict[str, float],
    mix: ArchiveMix,
    workload: Workload,
) -> Video:
    segments = rng.randint(*mix.segments)
    p_motion = rng.betavariate(*mix.motion_odds)
    p_faces = rng.betavariate(*mix.faces_odds)
    scale = 1.0 + rng.uniform(-mix.units_spread, mix.units_spread)
    units = {op: base[op] * (scale if op in SEGMENT_OPS else 1.0) for op in OPS}
    content = {}
    for op in OPS:
        factor = (
            math.exp(rng.gauss(0.0, mix.content_spread)) if op in SEGMENT_OPS else 1.0
        )
        content[op] = factor * (mix.busy if op in ("people", "faces") else 1.0)
    sigma = workload.assumptions.noise
    noise = {
        op: [math.exp(rng.gauss(0.0, sigma)) for _ in range(segments)] for op in OPS
    }
    return Video(
        index=index,
        arrival_s=arrival_s,
        segments=segments,
        units=units,
        content=content,
        moving=[rng.random() < p_motion for _ in range(segments)],
        faces=[rng.random() < p_faces for _ in range(segments)],
        noise=noise,
    )
