"""The prepare stage end to end: real video in, shards out; identities, sharded jobs, resume, bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import media, set_mp4_rotation, write_video
from PIL import Image

from talkinghead.data import FaceDataset
from talkinghead.data.prepare import PrepareOptions, discover, prepare
from talkinghead.face.landmarks import DlibLandmarker
from talkinghead.face.tracking import FaceTracker

FAST = PrepareOptions(crop_size=128)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talkinghead", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def dataset_files(out: Path) -> dict[str, bytes]:
    """What defines a data set: the plan and the shards (reports carry timings)."""
    files = [out / "prepare.json", *sorted((out / "shards").glob("*"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_carphone_end_to_end(tmp_path, carphone):
    summary = prepare([carphone], tmp_path / "ds", FAST, workers=1, progress=False)
    assert summary.clips == 1 and summary.frames >= 110
    dataset = FaceDataset(tmp_path / "ds")
    meta = dataset.meta(0)
    assert meta["identity"] == "carphone" and meta["fps"] == pytest.approx(29.97, abs=0.01)
    assert (meta["width"], meta["height"], meta["source_frames"]) == (176, 144, 120)
    frame = dataset.frame(0, 10)
    assert frame.shape == (128, 128, 3)
    # The stored landmarks are where the face is in the stored crop: detecting again on the
    # crop (upscaled for the detector) finds the same points.
    stored = dataset.landmarks(0)[10]
    big = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_CUBIC)
    found = FaceTracker(DlibLandmarker())(big) / 2
    eyes = np.linalg.norm(stored[36] - stored[45])
    assert np.linalg.norm(found - stored, axis=1).mean() / eyes < 0.08
    # The face sits in the middle of the crop, at about 1/1.8 of its size.
    extent = (stored.max(0) - stored.min(0)).max()
    assert 0.4 < extent / 128 < 0.7
    assert np.all(np.abs(stored.mean(0) - 64) < 20)
    # Crop-to-original transform: mapping back lands on the source video's landmarks.
    box = dataset.shards[0].clip_array(0, "boxes")[10]
    assert box[2] > 0 and dataset.shards[0].clip_array(0, "frame_numbers")[10] >= 10


def test_identities_from_paths(tmp_path):
    for name in ["vox/id00017/5MkXgwdrmJw/00001.mp4", "people/obama/a.mp4", "people/b.mp4", "single.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    frames = tmp_path / "people" / "may" / "speech"
    frames.mkdir(parents=True)
    for i in range(3):
        (frames / f"{i:04d}.jpg").write_bytes(b"x")
    portraits = tmp_path / "portraits"
    portraits.mkdir()
    (portraits / "mona_lisa.jpg").write_bytes(b"x")
    (portraits / "einstein.png").write_bytes(b"x")
    sources, problems = discover(
        [tmp_path / "vox", tmp_path / "people", tmp_path / "single.mp4", portraits, tmp_path / "gone.mp4"]
    )
    # An identity folder given as the input names its clips.
    (obama,) = [s for s in discover([tmp_path / "people" / "obama"])[0]]
    assert obama.identity == "obama"
    found = {Path(s.path).relative_to(tmp_path).as_posix(): (s.kind, s.identity) for s in sources}
    assert found == {
        "vox/id00017/5MkXgwdrmJw/00001.mp4": ("video", "id00017"),
        "people/obama/a.mp4": ("video", "obama"),
        "people/b.mp4": ("video", "people"),
        "people/may/speech": ("frames", "may"),
        "single.mp4": ("video", "single"),
        "portraits/mona_lisa.jpg": ("image", "mona_lisa"),
        "portraits/einstein.png": ("image", "einstein"),
    }
    assert problems == [{"source": str(tmp_path / "gone.mp4"), "reason": "file not found"}]


def test_frame_folder_and_stride(tmp_path, carphone):
    folder = tmp_path / "frames" / "man"
    folder.mkdir(parents=True)
    dataset = FaceDataset_from(carphone, tmp_path / "video", PrepareOptions(crop_size=64, stride=4))
    assert 28 <= dataset.num_frames(0) <= 30
    assert set(np.diff(dataset.shards[0].clip_array(0, "frame_numbers")) % 4) == {0}
    from talkinghead.media.video import VideoReader

    with VideoReader(carphone) as reader:
        for number, _, rgb in reader:
            if number < 12:
                Image.fromarray(rgb).save(folder / f"frame_{number + 1}.png")
    summary = prepare([tmp_path / "frames"], tmp_path / "ds", PrepareOptions(crop_size=64), workers=1, progress=False)
    meta = FaceDataset(tmp_path / "ds").meta(0)
    assert summary.clips == 1 and meta["kind"] == "frames" and meta["num_frames"] >= 11
    assert meta["identity"] == "frames"  # a clip (here a frame folder) inside an input folder is its person's
    # max-frames spreads the frames over the whole clip
    spread = FaceDataset_from(carphone, tmp_path / "spread", PrepareOptions(crop_size=64, max_frames=10))
    numbers = spread.shards[0].clip_array(0, "frame_numbers")
    assert len(numbers) <= 10 and numbers[-1] >= 90


def FaceDataset_from(source: Path, out: Path, options: PrepareOptions) -> FaceDataset:
    prepare([source], out, options, workers=1, progress=False)
    return FaceDataset(out)


def _clip_tree(root: Path, carphone: Path, astronaut: np.ndarray, copies: int = 4) -> Path:
    """A small collection: carphone under several identities, plus stills."""
    for i in range(copies):
        (root / f"person{i}").mkdir(parents=True, exist_ok=True)
        shutil.copy(carphone, root / f"person{i}" / "talk.mp4")
    Image.fromarray(astronaut).save(root / "astronaut.png")
    (root / "broken.mp4").write_bytes(b"")
    return root


def test_jobs_spread_over_machines_build_the_same_data_set(tmp_path, carphone, astronaut):
    inputs = _clip_tree(tmp_path / "in", carphone, astronaut, copies=2)
    options = PrepareOptions(crop_size=64, clips_per_shard=2, max_frames=8)
    prepare([inputs], tmp_path / "one", options, workers=1, progress=False)
    for k in range(3):
        prepare([inputs], tmp_path / "three", options, workers=1, job=(k, 3), progress=False)
    assert dataset_files(tmp_path / "one") == dataset_files(tmp_path / "three")
    assert len(list((tmp_path / "one" / "shards").glob("*.thshard"))) == 2
    assert not (tmp_path / "one" / "work").exists()
    dataset = FaceDataset(tmp_path / "one")
    assert len(dataset) == 3 and dataset.identities == ["astronaut", "person0", "person1"]


def test_other_options_refuse_to_mix(tmp_path, carphone):
    prepare([carphone], tmp_path / "ds", PrepareOptions(crop_size=64, max_frames=2), workers=1, progress=False)
    result = run_cli("prepare", str(carphone), "--out", str(tmp_path / "ds"), "--size", "128", "--max-frames", "2")
    assert result.returncode == 2
    assert "already holds a data set" in result.stderr and "options" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_killed_run_resumes_to_the_identical_data_set(tmp_path, carphone, astronaut):
    inputs = _clip_tree(tmp_path / "in", carphone, astronaut, copies=4)
    args = ["prepare", str(inputs), "--size", "64", "--clips-per-shard", "2", "--workers", "1", "--quiet"]
    reference = run_cli(*args, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "talkinghead", *args, "--out", str(out)])
    # Kill it once it is part-way: after the first shard exists, while later clips are in flight.
    deadline = time.monotonic() + 120
    while not list((out / "shards").glob("*.thshard")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    shards_before = len(list((out / "shards").glob("*.thshard")))
    assert 1 <= shards_before < 3, "the run was not killed part-way; make the input larger"

    resumed = run_cli(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert dataset_files(out) == dataset_files(tmp_path / "whole")
    assert not list(out.rglob("*.tmp")) and not (out / "work").exists()
    # The summary of the resumed run covers the whole data set, not only the clips it redid.
    assert "prepared 5 clips" in resumed.stdout and "skipped 1" in resumed.stdout


def _bad_inputs(root: Path, carphone: Path, astronaut: np.ndarray) -> dict[str, str | None]:
    """Files of every awkward kind -> the reason expected in the summary (None: prepared)."""
    root.mkdir(parents=True)
    expected: dict[str, str | None] = {}

    (root / "empty.mp4").write_bytes(b"")
    expected["empty.mp4"] = "empty file"
    data = carphone.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expected["truncated.mp4"] = "unreadable or truncated video"
    (root / "notes.mp4").write_text("this is a text file\n" * 50)
    expected["notes.mp4"] = "unreadable or truncated video"
    (root / "readme.txt.jpg").write_text("not a picture")
    expected["readme.txt.jpg"] = "not an image"

    rng = np.random.default_rng(0)
    noise = [cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (9, 9), 3) for _ in range(12)]
    write_video(root / "noface.mp4", noise)
    expected["noface.mp4"] = "no face found"

    small = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[100:300, 200:400] = small
    Image.fromarray(canvas).save(root / "tiny.png")
    expected["tiny.png"] = "face too small"

    shutil.copy(media("einstein.jpg"), root / "several.jpg")  # Einstein and a seated man
    expected["several.jpg"] = None

    huge = np.zeros((6000, 8000, 3), np.uint8)
    huge[2000:5072, 3000:6072] = cv2.resize(astronaut, (3072, 3072), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(huge).save(root / "huge.jpg", quality=80)
    expected["huge.jpg"] = None

    upright = np.ascontiguousarray(astronaut[:384])
    write_video(root / "rotated.mp4", [np.ascontiguousarray(np.rot90(upright, 1))] * 4)
    set_mp4_rotation(root / "rotated.mp4", 90)
    expected["rotated.mp4"] = None

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1))).save(root / "exif.jpg", exif=exif)
    expected["exif.jpg"] = None

    Image.fromarray(astronaut).convert("L").save(root / "gray.png")
    Image.fromarray(np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(np.asarray(Image.fromarray(astronaut).convert("L")).astype(np.uint16) * 257).save(root / "deep.png")
    Image.fromarray(astronaut).convert("CMYK").save(root / "cmyk.jpg")
    for name in ["gray.png", "rgba.png", "deep.png", "cmyk.jpg"]:
        expected[name] = None

    times = [0.0, 0.05, 0.1, 0.4, 0.45, 0.5, 1.2, 1.25]
    write_video(root / "vfr.mp4", [astronaut] * len(times), times=times)
    expected["vfr.mp4"] = None
    return expected


@pytest.mark.slow
def test_bad_inputs_get_one_line_reasons(tmp_path, carphone, astronaut):
    expected = _bad_inputs(tmp_path / "in", carphone, astronaut)
    result = run_cli("prepare", str(tmp_path / "in"), "--out", str(tmp_path / "ds"), "--size", "64", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    report = json.loads((tmp_path / "ds" / "reports" / "prepare-0-of-1.json").read_text())
    reasons = {Path(item["source"]).name: item["reason"] for item in report["skipped"]}
    for name, reason in expected.items():
        if reason is None:
            assert name not in reasons, f"{name} was skipped: {reasons.get(name)}"
        else:
            assert reason in reasons[name], f"{name}: {reasons.get(name)}"
            assert f"skipped {tmp_path / 'in' / name}: {reasons[name]}" in result.stdout
    dataset = FaceDataset(tmp_path / "ds")
    by_name = {Path(dataset.meta(i)["source"]).name: i for i in range(len(dataset))}
    assert set(by_name) == {name for name, reason in expected.items() if reason is None}
    # Upright faces: the eyes (36-47) are above the mouth (48-67) in every prepared clip.
    for name, i in by_name.items():
        landmarks = dataset.landmarks(i)
        assert np.all(landmarks[:, 36:48, 1].mean(1) < landmarks[:, 48:68, 1].mean(1)), name
    assert any("2 faces" in note["note"] for note in report["notes"] if note["source"].endswith("several.jpg"))
    vfr = dataset.shards[0].clip_array(by_name["vfr.mp4"], "times")
    assert np.allclose(vfr, [0.0, 0.05, 0.1, 0.4, 0.45, 0.5, 1.2, 1.25], atol=0.002)


def test_nothing_usable_exits_non_zero_without_traceback(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.mp4").write_bytes(b"")
    result = run_cli("prepare", str(tmp_path / "in"), "--out", str(tmp_path / "ds"), "--workers", "1")
    assert result.returncode == 1
    assert "empty.mp4: empty file (0 bytes)" in result.stdout
    assert "Traceback" not in result.stderr
    missing = run_cli("prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "ds2"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith("nowhere: file not found")
    bad_job = run_cli("prepare", str(tmp_path / "in"), "--out", str(tmp_path / "ds3"), "--shard", "3/2")
    assert bad_job.returncode == 2 and "--shard" in bad_job.stderr and "Traceback" not in bad_job.stderr


def test_help_lists_the_stages():
    result = run_cli("--help")
    assert result.returncode == 0 and "prepare" in result.stdout
    result = run_cli("prepare", "--help")
    assert result.returncode == 0 and "--shard" in result.stdout and "--max-frames" in result.stdout
