"""Videos stored in S3 (moto) probe and decode as the same files on disk."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.aws, pytest.mark.video]


def test_a_video_in_s3_probes_and_decodes_as_the_same_file_on_disk(moto, vtest_dir):
    from llama_prefect.video.decoders import read_frames
    from llama_prefect.video.segments import probe, split

    local = vtest_dir / "vtest_h264.mp4"
    bucket = moto.new_bucket()
    moto.client("s3").upload_file(str(local), bucket, "videos/vtest_h264.mp4")
    uri = f"s3://{bucket}/videos/vtest_h264.mp4"

    remote_info, local_info = probe(uri), probe(local)
    remote_seg, local_seg = split(remote_info, 1.0)[1], split(local_info, 1.0)[1]
    remote_frames = read_frames(remote_seg, decoder="pyav", sample_every=3)
    local_frames = read_frames(local_seg, decoder="pyav", sample_every=3)

    assert remote_info.path == uri and remote_seg.video == uri
    assert remote_info.model_copy(update={"path": str(local)}) == local_info
    assert remote_frames.indices == local_frames.indices
    assert (remote_frames.array == local_frames.array).all()
