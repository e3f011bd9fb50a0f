"""Tests for llama_prefect.video.isolation: crashes and hangs stay in the worker.

Faults are injected into the worker with ``LLAMA_PREFECT_DECODE_FAULTS``: the worker
kills itself with SIGSEGV or SIGKILL, sleeps forever, or raises an I/O error, as a
decoder might on a bad file. After each, the next call on a good file must work.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from llama_prefect import metering
from llama_prefect.errors import (
    ConfigurationError,
    DecoderCrashError,
    DecodeTimeoutError,
    TransientError,
    is_deterministic,
)
from llama_prefect.video import isolation
from llama_prefect.video.decoders import DECODERS, read_frames, read_frames_here
from llama_prefect.video.segments import probe, probe_here, split

pytestmark = pytest.mark.video


@pytest.fixture
def clip(corpus: Path) -> Path:
    return corpus / "cfr.mp4"


def inject(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(isolation.FAULTS_ENV, spec)


@pytest.mark.parametrize("decoder", DECODERS)
def test_isolated_reads_equal_reads_in_this_process(clip: Path, decoder: str) -> None:
    segment = split(probe(clip), 1.0)[2]

    isolated = read_frames(segment, decoder=decoder, sample_every=3, width_px=100)
    here = read_frames_here(segment, decoder=decoder, sample_every=3, width_px=100)

    assert isolated.indices == here.indices
    assert np.array_equal(isolated.array, here.array)


def test_isolated_probe_equals_probe_in_this_process(clip: Path) -> None:
    assert probe(clip) == probe_here(clip)


def test_a_segfault_fails_the_call_naming_the_file_and_the_next_call_works(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = split(probe(clip), 1.0)[1]
    inject(monkeypatch, "crash:cfr.mp4")

    with pytest.raises(
        DecoderCrashError, match=r"cfr.mp4: the decoder crashed \(SIGSEGV\)"
    ):
        read_frames(segment, decoder="pyav", sample_every=5)

    monkeypatch.delenv(isolation.FAULTS_ENV)
    assert read_frames(segment, decoder="pyav", sample_every=5).indices == [
        25,
        30,
        35,
        40,
        45,
    ]


def test_a_hang_is_stopped_at_the_time_bound(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject(monkeypatch, "hang:cfr.mp4")
    monkeypatch.setenv(isolation.TIMEOUT_ENV, "1.5")

    with pytest.raises(
        DecodeTimeoutError, match=r"cfr.mp4: decoding .* longer than 1.5 s"
    ):
        probe(clip)

    monkeypatch.delenv(isolation.FAULTS_ENV)
    assert probe(clip).num_frames == 100


@pytest.mark.parametrize(
    ("kind", "words"),
    [("kill", "was killed by SIGKILL"), ("oserror", "injected I/O error")],
)
def test_a_worker_lost_from_outside_or_an_io_error_is_transient(
    clip: Path, monkeypatch: pytest.MonkeyPatch, kind: str, words: str
) -> None:
    inject(monkeypatch, f"{kind}:cfr.mp4")

    with pytest.raises(TransientError, match=words) as caught:
        probe(clip)

    assert "cfr.mp4" in str(caught.value)
    assert not is_deterministic(caught.value)


def test_crashes_and_hangs_are_deterministic() -> None:
    assert is_deterministic(DecoderCrashError("x"))
    assert is_deterministic(DecodeTimeoutError("x"))
    assert not is_deterministic(OSError("disk"))


def test_a_counted_fault_hits_only_the_first_calls(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject(monkeypatch, "crashx1:bframes.mp4")

    with pytest.raises(DecoderCrashError):
        probe(corpus / "bframes.mp4")
    assert probe(corpus / "bframes.mp4").num_frames == 100
    assert probe(corpus / "cfr.mp4").num_frames == 100  # the glob names one file


def test_a_worker_killed_while_idle_is_replaced(clip: Path) -> None:
    probe(clip)
    for worker in list(isolation._POOL._idle):
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

    assert probe(clip).num_frames == 100


def test_the_meter_gets_the_workers_peak_memory_and_the_frame_bytes(clip: Path) -> None:
    segment = split(probe(clip), 1.0)[0]

    with metering.metered() as meter:
        read_frames(segment, decoder="pyav", sample_every=1)

    assert meter.decode_calls == 1
    assert meter.decode_peak_rss_mb > 20  # a Python process with the decoders
    assert meter.frames_mb == pytest.approx(25 * 120 * 160 * 3 / 2**20)


def test_isolation_off_decodes_here_and_ignores_faults(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(isolation.ISOLATION_ENV, "off")
    inject(monkeypatch, "crash:cfr.mp4")

    with metering.metered() as meter:
        info = probe(clip)

    assert info.num_frames == 100
    assert meter.decode_peak_rss_mb == 0.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (isolation.ISOLATION_ENV, "thread"),
        (isolation.FAULTS_ENV, "explode:*.mp4"),
        (isolation.FAULTS_ENV, "crash"),
        (isolation.TIMEOUT_ENV, "-1"),
    ],
)
def test_bad_isolation_settings_are_refused(
    clip: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError, match=name):
        probe(clip)


def test_the_time_bound_grows_with_the_frames_to_decode_from_the_anchor(
    corpus: Path,
) -> None:
    from llama_prefect.video.decoders import _budget_s

    info = probe(corpus / "vp8_long.webm")  # 64x48, a keyframe every 100 frames
    late = split(info, 1.0)[62]  # frames 620-629, anchored at keyframe 600

    assert late.anchor_frame == 600
    assert isolation.decode_budget_s(100, 1000, 1000) == pytest.approx(25.0)
    assert _budget_s(late, "pyav", 629) == pytest.approx(
        isolation.decode_budget_s(30, 64, 48)
    )
    assert _budget_s(late, "decord", 629) > _budget_s(late, "pyav", 629)


def _bases(array: np.ndarray) -> list[object]:
    """The objects an array's memory comes from (arrays, memoryviews, mmaps)."""
    found, base = [], array.base
    while base is not None:
        found.append(base)
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return found


@pytest.mark.parametrize("decoder", DECODERS)
def test_large_reads_come_back_through_shared_memory_unchanged(
    clip: Path, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmap

    segment = split(probe(clip), 1.0)[1]
    monkeypatch.setattr(isolation, "SHARED_MIN_BYTES", 1)
    shared = read_frames(segment, decoder=decoder, sample_every=2)
    monkeypatch.setattr(isolation, "SHARED_MIN_BYTES", 1 << 40)
    copied = read_frames(segment, decoder=decoder, sample_every=2)

    assert any(isinstance(b, mmap.mmap) for b in _bases(shared.array))
    assert not any(isinstance(b, mmap.mmap) for b in _bases(copied.array))
    assert shared.indices == copied.indices
    assert np.array_equal(shared.array, copied.array)
