"""The shard format: round trip, copying between shards, random access, corruption, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from talkinghead.data import Clip, FaceDataset, Shard, ShardError, ShardWriter
from talkinghead.data.shards import decode_jpeg, encode_jpeg, write_shard


def make_clip(rng: np.random.Generator, frames: int, identity: str, size: int = 32) -> Clip:
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(frames)]
    return Clip(
        meta={"identity": identity, "source": f"/videos/{identity}.mp4", "fps": 25.0, "notes": []},
        frames=[encode_jpeg(image) for image in images],
        landmarks=rng.random((frames, 68, 2), dtype=np.float32) * size,
        boxes=rng.random((frames, 3), dtype=np.float32),
        frame_numbers=np.arange(frames, dtype=np.int32) * 2,
        times=np.arange(frames, dtype=np.float32) / 12.5,
    )


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clips = [make_clip(rng, n, name) for n, name in [(3, "a"), (1, "b"), (5, "a")]]
    path = write_shard(tmp_path / "s.thshard", clips, skipped=[{"source": "x.mp4", "reason": "no face found"}])
    shard = Shard(path)
    assert len(shard) == 3 and shard.header["num_frames"] == 9
    assert shard.skipped == [{"source": "x.mp4", "reason": "no face found"}]
    for i, clip in enumerate(clips):
        assert shard.clips[i]["identity"] == clip.meta["identity"]
        assert shard.clips[i]["num_frames"] == len(clip)
        np.testing.assert_array_equal(shard.clip_landmarks(i), clip.landmarks)
        np.testing.assert_array_equal(shard.clip_array(i, "times"), clip.times)
        for j, jpeg in enumerate(clip.frames):
            assert bytes(shard.frame_bytes(i, j)) == jpeg
            np.testing.assert_array_equal(shard.frame(i, j), decode_jpeg(jpeg))
    with pytest.raises(IndexError):
        shard.frame(1, 1)


def test_copy_between_shards_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    first = Shard(write_shard(tmp_path / "a.thshard", [make_clip(rng, 4, "a"), make_clip(rng, 2, "b")]))
    writer = ShardWriter(tmp_path / "b.thshard")
    writer.add_from(first, 1)
    writer.add_from(first, 0)
    second = Shard(writer.close())
    assert [c["identity"] for c in second.clips] == ["b", "a"]
    assert bytes(second.frame_bytes(1, 3)) == bytes(first.frame_bytes(0, 3))
    np.testing.assert_array_equal(second.clip_landmarks(0), first.clip_landmarks(1))


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    path = write_shard(tmp_path / "s.thshard", [make_clip(rng, 2, "a")])
    truncated = tmp_path / "t.thshard"
    truncated.write_bytes(path.read_bytes()[:-30])
    foreign = tmp_path / "f.thshard"
    foreign.write_bytes(b"hello world" * 10)
    empty = tmp_path / "e.thshard"
    empty.write_bytes(b"")
    for bad in (truncated, foreign, empty):
        with pytest.raises(ShardError):
            Shard(bad)


def test_writes_are_atomic(tmp_path):
    rng = np.random.default_rng(3)
    writer = ShardWriter(tmp_path / "s.thshard")
    writer.add(make_clip(rng, 2, "a"))
    writer._parts.append(None)  # make the write fail half-way
    with pytest.raises(AttributeError):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_dataset_over_shards_and_pickling(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards" / "00000.thshard", [make_clip(rng, 3, "zoe"), make_clip(rng, 2, "adam")])
    write_shard(tmp_path / "shards" / "00001.thshard", [make_clip(rng, 4, "zoe")])
    dataset = FaceDataset(tmp_path)
    assert len(dataset) == 3 and dataset.identities == ["adam", "zoe"]
    assert list(dataset.clip_identity) == [1, 0, 1]
    assert dataset.num_frames_total == 9
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 1000  # re-opened, not copied
    np.testing.assert_array_equal(copy.frame(2, 3), dataset.frame(2, 3))
    with pytest.raises(ShardError, match="no .*shards"):
        FaceDataset(tmp_path / "missing")
