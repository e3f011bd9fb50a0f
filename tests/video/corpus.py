"""The bad-input corpus: broken and awkward videos made with ffmpeg and byte surgery.

Nothing is committed: `build_corpus` writes every case into a folder in a few seconds
(tiny frame sizes). Each case is one file, named after the case; `CASES` says what it
is. Good references sit beside them: ``upright.mp4`` is the picture the rotated cases
must come out as, ``cfr.mp4`` and ``bframes.mp4`` are healthy clips.
"""

from __future__ import annotations

import math
import random
import struct
import subprocess
from pathlib import Path

H264 = "-c:v libx264 -preset veryfast -pix_fmt yuv420p -an"
SOURCE = "-f lavfi -i testsrc=size=160x120:rate=25"

CASES: dict[str, str] = {
    "zero_byte.mp4": "a file of 0 bytes",
    "truncated.mp4": "the first half of an MP4 whose index (moov) sits at its end",
    "truncated.avi": "the first half of an MPEG-4 AVI: 13 of its 30 frames remain",
    "corrupt_middle.mp4": "random bytes over frames 60-62 of a 100-frame H.264 MP4",
    "header_lies.avi": "an AVI whose headers claim 90 frames; it holds 30",
    "vfr.mp4": "variable frame rate: frame gaps of 40 ms, then 100 ms from frame 20",
    "rotate_90.mp4": "display matrix: turn 90 degrees clockwise to stand upright",
    "rotate_180.mp4": "display matrix: turn 180 degrees",
    "rotate_270.mp4": "display matrix: turn 270 degrees clockwise",
    "vp8_long.webm": "VP8 in WebM, 65 s at 10 fps, 64x48 px, no frame count in header",
    "not_a_video.mp4": "a text file with a video extension",
    "huge.mp4": "7680x4320 px (8K), 3 frames",
    "audio_only.mp4": "an MP4 with one AAC audio stream and no video",
}


def ffmpeg(*parts: str | Path) -> None:
    """Run ffmpeg quietly; a str part is split on spaces, a Path is one argument."""
    args: list[str] = []
    for part in parts:
        args += [str(part)] if isinstance(part, Path) else part.split()
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True)


def build_corpus(folder: Path) -> Path:
    """Write every case of `CASES` and the references into `folder`; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    _references(folder)
    _broken(folder)
    _awkward(folder)
    return folder


def _references(folder: Path) -> None:
    ffmpeg(SOURCE, "-frames:v 100", H264, "-bf 0 -g 25", folder / "cfr.mp4")
    ffmpeg(SOURCE, "-frames:v 100", H264, "-bf 3 -g 30", folder / "bframes.mp4")
    ffmpeg(SOURCE, "-frames:v 25", H264, folder / "upright.mp4")
    ffmpeg(
        "-f lavfi -i testsrc=size=160x120:rate=10 -frames:v 30",
        "-c:v mpeg4 -q:v 5 -g 12 -an",
        folder / "mpeg4.avi",
    )


def _broken(folder: Path) -> None:
    (folder / "zero_byte.mp4").write_bytes(b"")
    (folder / "not_a_video.mp4").write_text("this is text, not a video\n")
    ffmpeg("-f lavfi -i sine=frequency=440 -t 1 -c:a aac", folder / "audio_only.mp4")

    mp4 = (folder / "cfr.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    avi = (folder / "mpeg4.avi").read_bytes()
    (folder / "truncated.avi").write_bytes(avi[: len(avi) // 2])

    (folder / "corrupt_middle.mp4").write_bytes(_scribble(folder / "cfr.mp4", 60, 3))
    (folder / "header_lies.avi").write_bytes(_claim_frames(avi, 90))


def _awkward(folder: Path) -> None:
    stretch = "setpts='(N+if(gt(N,20),(N-20)*1.5,0))/25/TB'"
    ffmpeg(SOURCE, "-frames:v 50 -vf", stretch, "-fps_mode passthrough", H264,
           folder / "vfr.mp4")  # fmt: skip
    turns = {90: "transpose=cclock", 180: "hflip,vflip", 270: "transpose=clock"}
    for degrees, stored in turns.items():
        path = folder / f"rotate_{degrees}.mp4"
        ffmpeg(SOURCE, "-frames:v 25 -vf", stored, H264, path)
        path.write_bytes(_with_rotation(path.read_bytes(), degrees))
    ffmpeg(
        "-f lavfi -i testsrc=size=64x48:rate=10 -t 65",
        "-c:v libvpx -b:v 64k -deadline realtime -cpu-used 8 -g 100 -an",
        folder / "vp8_long.webm",
    )
    ffmpeg(
        "-f lavfi -i color=c=gray:size=7680x4320:rate=5 -frames:v 3",
        "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -an",
        folder / "huge.mp4",
    )


def _scribble(path: Path, first_frame: int, frames: int) -> bytes:
    """The file with 32 random bytes over the start of some frames' packets.

    The bytes hit each packet's NAL length prefix, so a decoder cannot conceal the
    damage: it sees a unit longer than its packet.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = sorted(
            (p.pts, p.pos) for p in container.demux(stream) if p.size and p.pos
        )
    data = bytearray(path.read_bytes())
    noise = random.Random(7)
    for _, pos in packets[first_frame : first_frame + frames]:
        data[pos : pos + 32] = noise.randbytes(32)
    return bytes(data)


def _claim_frames(avi: bytes, frames: int) -> bytes:
    """The AVI with its main and stream headers claiming `frames` frames."""
    data = bytearray(avi)
    main = data.index(b"avih") + 8  # dwTotalFrames is the 5th field
    data[main + 16 : main + 20] = struct.pack("<I", frames)
    stream = data.index(b"strh") + 8  # dwLength follows 8 fields, 32 bytes
    data[stream + 32 : stream + 36] = struct.pack("<I", frames)
    return bytes(data)


def _with_rotation(mp4: bytes, degrees: int) -> bytes:
    """The MP4 with its track's display matrix turning frames `degrees` clockwise.

    The matrix sits in the track header (tkhd) after the version, flags, times, track
    id, duration, reserved, layer, group and volume fields: 40 bytes in, or 52 for a
    version-1 header. FFmpeg reads [cos, sin; -sin, cos] as a clockwise turn.
    """
    data = bytearray(mp4)
    box = data.index(b"tkhd")
    version = data[box + 4]
    offset = box + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    cos, sin = (
        round(math.cos(math.radians(degrees))),
        round(math.sin(math.radians(degrees))),
    )
    one, w_one = 1 << 16, 1 << 30
    matrix = (cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, w_one)
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    return bytes(data)
