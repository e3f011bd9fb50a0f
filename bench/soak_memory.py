"""Memory soak: many videos through one process; resident memory must stay bounded.

Runs the decode-heavy part of the crossing pipeline (probe, then the motion op on
every segment and the people op on every other segment, the decoder cycling through
PyAV, decord and OpenCV) over a stream of videos in one process, first with decoding
in worker processes (the default), then in this process, side by side. After every
video it samples the resident memory of this process and of its decode workers, and
each op call's peak as the invocation meter records it (the decode worker's peak
plus the frames handed back; in-process decoding has no worker peak to report).
Prints both series at a few points, the growth over the second half of the run, and
writes JSON.

    .venv/bin/python bench/soak_memory.py --videos 300

The stream cycles through 12 distinct clips (H.264, MPEG-4, VP8; 160x120 to 640x360;
2 s each) made with ffmpeg, so decoders open new files all the time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ISOLATION_ENV = "LLAMA_PREFECT_DECODE_ISOLATION"
DECODERS = ("pyav", "decord", "opencv")
ENCODERS = {
    "mp4": ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"],
    "avi": ["-c:v", "mpeg4", "-q:v", "5"],
    "webm": ["-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime"],
}
SIZES = ("160x120", "320x240", "480x270", "640x360")


def _clips(folder: Path) -> list[Path]:
    clips = []
    for size in SIZES:
        for ext, codec in ENCODERS.items():
            path = folder / f"clip_{size}.{ext}"
            subprocess.run(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                 "-i", f"testsrc=size={size}:rate=20", "-t", "2", *codec, "-an",
                 str(path)],
                check=True,
            )  # fmt: skip
            clips.append(path)
    return clips


def _rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _workers_mb() -> float:
    from llama_prefect.video import isolation

    return sum(_rss_mb(w.process.pid) for w in list(isolation._POOL._idle))


def _one_video(path: Path, turn: int) -> list[float]:
    """Probe, motion on every segment, people on every other; each call's peak MB."""
    from llama_prefect import metering
    from llama_prefect.video import ops
    from llama_prefect.video.segments import probe, split

    peaks = []
    for number, segment in enumerate(split(probe(path), 1.0)):
        decoder = DECODERS[(turn + number) % len(DECODERS)]
        with metering.metered() as meter:
            ops.motion_score(segment, decoder=decoder, sample_every=2, width_px=160)
        peaks.append(meter.peak_memory_mb)
        if number % 2 == 0:
            with metering.metered() as meter:
                ops.count_people(
                    segment, decoder=decoder, sample_every=10, win_stride_px=16
                )
            peaks.append(meter.peak_memory_mb)
    return peaks


def _soak(clips: list[Path], videos: int, mode: str) -> dict[str, Any]:
    from llama_prefect.video import isolation

    isolation.shutdown()  # start each run without workers left from the last
    os.environ[ISOLATION_ENV] = mode
    samples, peaks = [], []
    start = time.perf_counter()
    for turn in range(videos):
        peaks += _one_video(clips[turn % len(clips)], turn)
        samples.append(
            {"video": turn + 1, "self_mb": _rss_mb(), "workers_mb": _workers_mb()}
        )
    half = samples[len(samples) // 2]
    last = samples[-1]
    total = [s["self_mb"] + s["workers_mb"] for s in samples]
    return {
        "mode": mode,
        "videos": videos,
        "seconds": round(time.perf_counter() - start, 1),
        "samples": samples,
        "self_growth_second_half_mb": round(last["self_mb"] - half["self_mb"], 1),
        "total_growth_second_half_mb": round(total[-1] - total[len(total) // 2], 1),
        "total_max_mb": round(max(total), 1),
        "call_peak_median_mb": round(statistics.median(peaks), 1),
        "call_peak_max_mb": round(max(peaks), 1),
    }


def _print(result: dict[str, Any]) -> None:
    samples = result["samples"]
    points = sorted({0, len(samples) // 10, len(samples) // 2, len(samples) - 1})
    series = "  ".join(
        f"#{samples[i]['video']}: {samples[i]['self_mb']:.0f}+"
        f"{samples[i]['workers_mb']:.0f} MB"
        for i in points
    )
    print(
        f"{result['mode']:8} {result['videos']} videos in {result['seconds']} s  "
        f"rss this+workers  {series}"
    )
    print(
        f"{'':8} growth over the second half: this "
        f"{result['self_growth_second_half_mb']:+.1f} MB, total "
        f"{result['total_growth_second_half_mb']:+.1f} MB; max total "
        f"{result['total_max_mb']:.0f} MB; per-call decode peak median "
        f"{result['call_peak_median_mb']:.0f} MB, max "
        f"{result['call_peak_max_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--videos",
        type=int,
        default=300,
        help="how many videos to stream through the process, cycling the clips (300)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench/soak.json"),
        help="where to write the JSON (runs/bench/soak.json)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        clips = _clips(Path(folder))
        for mode in ("process", "off"):  # imports, models and a worker, before timing
            os.environ[ISOLATION_ENV] = mode
            _one_video(clips[0], 0)
        results = [_soak(clips, args.videos, mode) for mode in ("process", "off")]
    for result in results:
        _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
