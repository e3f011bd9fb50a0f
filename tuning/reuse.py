"""Profile reuse: what a profile was measured on, and when another archive may use it.

Exploration measures an op on sample segments of one archive. What it learns holds for
another archive as far as that archive looks the same to the ops: the frame size (the
work per frame), the codecs (decoding cost differs several times between them), the
frame rate (frames per segment), the share of segments with motion (how often the
people branch fires) and how many people are in view (accuracy and the face branch).
An `ArchiveSignature` holds those statistics; the profile store keeps the one it was
measured on in ``meta["measured_on"]``.

The distance between two signatures is the largest of five terms, each the difference
in one statistic divided by its tolerance (ours):

| statistic | term | tolerance |
| --- | --- | --- |
| megapixels per frame | abs(log2(a / b)) | a factor of 1.5 |
| codec mix (share of frames per codec) | total variation distance | 0.25 |
| frames per second | abs(log2(a / b)) | a factor of 1.5 |
| motion share | abs(a - b) | 0.25 |
| people per frame | abs(log2((1 + a) / (1 + b))) | a factor of 1.5 on 1 + people |

A profile is reused when the distance is at most `REUSE_DISTANCE` (1.0): every
statistic lies within its tolerance. Frame-weighted means are used throughout, because
frames are the work. A profile explored at another accuracy floor is never reused:
its front was cut at that floor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Largest signature distance at which a stored profile is reused (ours).
REUSE_DISTANCE = 1.0
#: Tolerance of each statistic: the difference that counts as distance 1 (ours).
TOLERANCES = {
    "megapixels_per_frame": math.log2(1.5),
    "codecs": 0.25,
    "fps": math.log2(1.5),
    "motion_share": 0.25,
    "people_per_frame": math.log2(1.5),
}


@dataclass(frozen=True)
class ArchiveSignature:
    """What an archive looks like to the ops, from a quick look at it.

    Attributes:
        videos: Videos looked at.
        frames: Frames in them.
        megapixels_per_frame: Frame-weighted mean frame size, in megapixels.
        fps: Frame-weighted mean frame rate, frames per second.
        codecs: Share of frames per codec name (sums to 1).
        motion_share: Share of the segments looked at that have motion, in [0, 1].
        people_per_frame: Mean people seen per sampled frame on the moving segments
            looked at.
    """

    videos: int
    frames: int
    megapixels_per_frame: float
    fps: float
    codecs: dict[str, float] = field(default_factory=dict)
    motion_share: float = 0.0
    people_per_frame: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The signature as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchiveSignature:
        """Rebuilds a signature written by `to_dict`."""
        return cls(
            videos=int(data["videos"]),
            frames=int(data["frames"]),
            megapixels_per_frame=float(data["megapixels_per_frame"]),
            fps=float(data["fps"]),
            codecs={str(k): float(v) for k, v in data.get("codecs", {}).items()},
            motion_share=float(data.get("motion_share", 0.0)),
            people_per_frame=float(data.get("people_per_frame", 0.0)),
        )

    @classmethod
    def of_videos(
        cls,
        videos: Iterable[tuple[int, float, float, str]],
        *,
        motion_share: float,
        people_per_frame: float,
    ) -> ArchiveSignature:
        """Builds a signature from ``(frames, megapixels per frame, fps, codec)``."""
        rows = list(videos)
        frames = sum(n for n, _, _, _ in rows)
        weight = max(frames, 1)
        codecs: dict[str, float] = {}
        for n, _, _, codec in rows:
            codecs[codec] = codecs.get(codec, 0.0) + n / weight
        return cls(
            videos=len(rows),
            frames=frames,
            megapixels_per_frame=sum(n * mp for n, mp, _, _ in rows) / weight,
            fps=sum(n * fps for n, _, fps, _ in rows) / weight,
            codecs=codecs,
            motion_share=motion_share,
            people_per_frame=people_per_frame,
        )


def distance_terms(a: ArchiveSignature, b: ArchiveSignature) -> dict[str, float]:
    """Each statistic's difference divided by its tolerance (see the module's table)."""
    raw = {
        "megapixels_per_frame": _log_ratio(
            a.megapixels_per_frame, b.megapixels_per_frame
        ),
        "codecs": _total_variation(a.codecs, b.codecs),
        "fps": _log_ratio(a.fps, b.fps),
        "motion_share": abs(a.motion_share - b.motion_share),
        "people_per_frame": _log_ratio(1 + a.people_per_frame, 1 + b.people_per_frame),
    }
    return {k: v / TOLERANCES[k] for k, v in raw.items()}


def distance(a: ArchiveSignature, b: ArchiveSignature) -> float:
    """The largest normalized difference: at most 1 when all are within tolerance."""
    return max(distance_terms(a, b).values())


def _log_ratio(a: float, b: float) -> float:
    if a <= 0 or b <= 0:
        return 0.0 if a == b else math.inf
    return abs(math.log2(a / b))


def _total_variation(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


@dataclass(frozen=True)
class Match:
    """A stored profile and how far its archive is from the new one."""

    path: Path
    distance: float
    terms: dict[str, float]

    @property
    def reusable(self) -> bool:
        """True when the distance is within `REUSE_DISTANCE`."""
        return self.distance <= REUSE_DISTANCE

    def why(self) -> str:
        """The terms past their tolerance, for a message."""
        over = [f"{k} {v:.2f}" for k, v in self.terms.items() if v > 1.0]
        return ", ".join(over) or "every statistic within tolerance"


def stored_signature(data: Mapping[str, Any]) -> ArchiveSignature | None:
    """The signature a profile store's data was measured on, if it records one."""
    raw = data.get("meta", {}).get("measured_on")
    if not isinstance(raw, Mapping) or "signature" not in raw:
        return None
    try:
        return ArchiveSignature.from_dict(raw["signature"])
    except (KeyError, TypeError, ValueError):
        return None


def nearest_profile(
    signature: ArchiveSignature,
    folder: str | Path,
    *,
    pipeline: str,
    accuracy_floor: float,
    units: Mapping[str, str] | None = None,
    prefer: str | Path | None = None,
) -> Match | None:
    """The stored profile of `pipeline` in `folder` nearest to `signature`.

    Only profile stores (JSON files) of the same pipeline, explored at the same
    accuracy floor and recording the archive they were measured on, are considered.
    With `units` (what one work unit of each op is), only stores that recorded the
    same units (``meta["units"]``) are: a latency per unit of another unit, or from
    a store that did not say, predicts nothing.

    Args:
        prefer: The store that wins a tie (the one in use: an older copy of it,
            kept beside it, is as near and has learned less).
    """
    best: Match | None = None
    paths = sorted(Path(folder).glob("*.json"))
    if prefer is not None:  # first, so that it wins a tie
        paths.sort(key=lambda path: path.resolve() != Path(prefer).resolve())
    for path in paths:
        data = _read(path)
        if data is None or data.get("pipeline") != pipeline:
            continue
        explored = data.get("meta", {}).get("exploration", {})
        if explored.get("accuracy_floor") != accuracy_floor:
            continue
        if units is not None and data.get("meta", {}).get("units") != dict(units):
            continue
        theirs = stored_signature(data)
        if theirs is None:
            continue
        terms = distance_terms(signature, theirs)
        match = Match(path, max(terms.values()), terms)
        if best is None or match.distance < best.distance:
            best = match
    return best


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
