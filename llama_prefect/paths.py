"""Safe result locations from untrusted names: video paths, file names, S3 keys.

A result written at a place derived from an input's name (a local copy of an S3
object, a per-video file under a results folder, a result object under an S3 prefix)
must land inside the results location, whatever the name holds: ``..`` segments, an
absolute path, a NUL byte, control characters, or a symbolic link that points out.
These helpers refuse such names with `InputPathError` and accept everything else,
spaces and non-ASCII letters included (names are kept as given, normalized to
Unicode NFC so that the same name typed on two systems maps to one place).

* `safe_join(root, *parts)`: a local path under `root`, checked after resolving
  symbolic links;
* `check_object_key(key)`: an S3 object key that is safe to mirror into a folder;
* `join_key(prefix, *parts)`: a key under a prefix, each part checked.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PurePosixPath

from llama_prefect.errors import InputPathError

__all__ = ["MAX_KEY_BYTES", "check_object_key", "join_key", "safe_join"]

#: S3's limit on the length of an object key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: Suffix of the folder beside a profile store that holds its Pareto plots
#: (``crossing.json`` -> ``crossing.plots``); a store kept aside or reused takes
#: its folder with it.
PLOTS_SUFFIX = ".plots"


def safe_join(root: str | os.PathLike[str], *parts: str) -> Path:
    """`root` joined with relative `parts`, refused if the result leaves `root`.

    Args:
        root: The results location; it need not exist yet.
        parts: Relative path parts from an untrusted source (``/`` separates
            folders inside a part).

    Returns:
        The joined path, `root` resolved, every part NFC-normalized.

    Raises:
        InputPathError: A part is empty, absolute, holds a NUL or control character
            or a ``..`` segment, or the path resolves (through a symbolic link)
            outside `root`.
    """
    base = Path(root).resolve()
    relative = [_checked_part(part) for part in parts]
    joined = base.joinpath(*relative)
    resolved = joined.resolve()
    if resolved != base and base not in resolved.parents:
        raise InputPathError(
            f"{'/'.join(relative)!r} leads to {resolved}, outside the results "
            f"location {base} (through a symbolic link). Remove the link or choose "
            "another results location."
        )
    return joined


def check_object_key(key: str) -> str:
    """Return `key`, NFC-normalized, if it is a safe S3 object key.

    Safe means: 1 to 1024 bytes of UTF-8, no NUL or control characters, no leading
    or trailing ``/`` (a trailing one marks a folder, not an object), and no empty,
    ``.`` or ``..`` segment, so that mirroring the key into a local folder cannot
    leave it.

    Raises:
        InputPathError: The key breaks one of those rules.
    """
    normal = unicodedata.normalize("NFC", key)
    size = len(normal.encode("utf-8"))
    if not 0 < size <= MAX_KEY_BYTES:
        raise InputPathError(
            f"an S3 object key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, but "
            f"{key[:60]!r} has {size}. Shorten the object's name."
        )
    _refuse_controls(normal, "S3 object key")
    if normal.startswith("/"):
        raise InputPathError(
            f"S3 object key {key!r} starts with '/'. Drop the leading slash."
        )
    if any(segment in ("", ".", "..") for segment in normal.split("/")):
        raise InputPathError(
            f"S3 object key {key!r} has an empty, '.' or '..' segment, which would "
            "point elsewhere once mirrored into a folder. Rename the object."
        )
    return normal


def join_key(prefix: str, *parts: str) -> str:
    """An S3 key made of a prefix and parts, joined by ``/``, checked whole.

    Args:
        prefix: The results prefix, e.g. ``"results/crossing"`` (a trailing ``/``
            is dropped); may be empty.
        parts: Key parts from untrusted sources; each must be a safe key itself.

    Raises:
        InputPathError: A part or the whole key is unsafe.
    """
    pieces = [prefix.rstrip("/")] if prefix.strip("/") else []
    pieces += [check_object_key(part) for part in parts]
    return check_object_key("/".join(pieces))


def _checked_part(part: str) -> str:
    normal = unicodedata.normalize("NFC", part)
    if not normal:
        raise InputPathError("an empty name cannot name a result; give it a name.")
    _refuse_controls(normal, "name")
    path = PurePosixPath(normal)
    if path.is_absolute() or Path(normal).is_absolute():
        raise InputPathError(
            f"name {part!r} is an absolute path; a result location takes a "
            "relative name. Drop the leading slash."
        )
    if ".." in path.parts:
        raise InputPathError(
            f"name {part!r} has a '..' segment, which would leave the results "
            "location. Rename the input."
        )
    return normal


def _refuse_controls(text: str, what: str) -> None:
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc"})
    if bad:
        raise InputPathError(
            f"{what} {text[:60]!r} holds control characters "
            f"{[hex(ord(c)) for c in bad]} (NUL, newline, ...). Rename it."
        )
