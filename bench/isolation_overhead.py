"""What decoding in a worker process costs on good files, side by side in one run.

The same reads run in this process (``LLAMA_PREFECT_DECODE_ISOLATION=off``) and in a
warm decode worker (the default), alternating, so both see the same machine load.
Cases: probing a clip, the motion op's read (every 2nd frame of a 4 s segment shrunk
to 320 px), the people op's read (every 5th frame at native size), for each decoder,
and two whole ops (motion with its torch differencing, people with HOG). Prints the
median time of each path, their ratio and the overhead per call, and writes JSON.

    .venv/bin/python bench/isolation_overhead.py --repeats 7

Clips: 8 s of vtest.avi as H.264 (768x576, 10 fps) when opencv-doc is installed, and
a 1280x720 H.264 test pattern (25 fps) made with ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ISOLATION_ENV = "LLAMA_PREFECT_DECODE_ISOLATION"
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )


def _clips(folder: Path) -> list[Path]:
    from llama_prefect.video.samples import find_vtest

    clips = []
    vtest = find_vtest()
    if vtest is not None:
        clips.append(folder / "vtest_768x576.mp4")
        _ffmpeg("-ss", "10", "-t", "8", "-i", str(vtest), *H264, str(clips[-1]))
    clips.append(folder / "pattern_1280x720.mp4")
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25", "-t", "8", *H264,
        str(clips[-1]),
    )  # fmt: skip
    return clips


def _cases(clip: Path) -> list[tuple[str, Callable[[], Any]]]:
    from llama_prefect.video import ops
    from llama_prefect.video.decoders import DECODERS, read_frames
    from llama_prefect.video.segments import probe, split

    info = probe(clip)
    segment = split(info, 4.0)[1]  # starts mid-file: a seek, as most segments do
    cases: list[tuple[str, Callable[[], Any]]] = [("probe", lambda: probe(clip))]
    for decoder in DECODERS:
        cases.append(
            (
                f"motion read {decoder}",
                lambda d=decoder: read_frames(
                    segment, decoder=d, sample_every=2, width_px=320
                ),
            )
        )
        cases.append(
            (
                f"people read {decoder}",
                lambda d=decoder: read_frames(segment, decoder=d, sample_every=5),
            )
        )
    cases.append(("motion op", lambda: ops.motion_score(segment, width_px=320)))
    cases.append(
        ("people op", lambda: ops.count_people(segment, sample_every=10, width_px=768))
    )
    return cases


def _timed(fn: Callable[[], Any], mode: str) -> float:
    os.environ[ISOLATION_ENV] = mode
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(name: str, fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    _timed(fn, "off"), _timed(fn, "process")  # warm caches and the worker
    here, isolated = [], []
    for _ in range(repeats):
        here.append(_timed(fn, "off"))
        isolated.append(_timed(fn, "process"))
    here_ms = statistics.median(here) * 1000
    isolated_ms = statistics.median(isolated) * 1000
    return {
        "case": name,
        "here_ms": round(here_ms, 2),
        "isolated_ms": round(isolated_ms, 2),
        "ratio": round(isolated_ms / here_ms, 3),
        "overhead_ms": round(isolated_ms - here_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/isolation.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for clip in _clips(Path(folder)):
            for name, fn in _cases(clip):
                row = {"clip": clip.name, **_measure(name, fn, args.repeats)}
                rows.append(row)
                print(
                    f"{row['clip']:22} {row['case']:20} here {row['here_ms']:9.2f} ms  "
                    f"isolated {row['isolated_ms']:9.2f} ms  x{row['ratio']:.3f}  "
                    f"{row['overhead_ms']:+8.2f} ms",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
