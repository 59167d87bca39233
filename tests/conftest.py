"""Shared fixtures: real faces shipped by PyPI packages, and small media files made from them."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MEDIA_DIR = Path(__file__).resolve().parent.parent / ".cache" / "test-media"
# bench/live_session.py: the live server and headless Chromium helpers, shared with the benches.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

# Keep OpenCV and torch to one thread: the suite runs on 2 cores and tests run in one process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def media(name: str) -> Path:
    path = MEDIA_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `python tests/fetch_media.py` (the README's test set-up)")
    return path


def read_pts(path: Path) -> np.ndarray:
    """An iBUG .pts file -> `[68, 2]` float32 x, y."""
    body = path.read_text().split("{")[1].split("}")[0]
    return np.array(body.split(), np.float32).reshape(-1, 2)


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: float = 25.0,
    times: list[float] | None = None,
    audio_seconds: float = 0.0,
    faststart: bool = False,
) -> Path:
    """Encode `[H, W, 3] uint8 RGB` frames as H.264 mp4; `times` (seconds) gives variable frame rate."""
    from fractions import Fraction

    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=16000) if audio_seconds else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            samples = (np.sin(np.arange(int(16000 * audio_seconds)) * 0.05) * 0.3).astype(np.float32)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return path


def set_mp4_rotation(path: Path, clockwise_degrees: int) -> None:
    """Write a display matrix into the video track's `tkhd` box, as phones do for portrait video.

    The matrix tells players to rotate the stored picture clockwise by the given angle.
    """
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0, "expected a version-0 tkhd box"
    one, zero = 1 << 16, 0
    cos, sin = {90: (zero, one), 180: (-one, zero), 270: (zero, -one)}[clockwise_degrees]
    # 16.16 fixed point a, b, u, c, d, v, x, y, w (u, v, w in 2.30)
    matrix = [cos, sin, 0, -sin, cos, 0, 0, 0, 1 << 30]
    offset = at + 4 + 4 + 20 + 8 + 8
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def portrait(tmp_path_factory, astronaut) -> Path:
    """The astronaut as a PNG file, for commands that take image paths."""
    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture(scope="session")
def carphone() -> Path:
    return media("carphone.mp4")


@pytest.fixture(scope="session")
def landmarker():
    from talkinghead.face.landmarks import DlibLandmarker

    return DlibLandmarker()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, carphone, astronaut) -> Path:
    """Four real clips: carphone under three names and the astronaut photo, 32 px crops."""
    import shutil

    from talkinghead.data.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("tiny-data")
    for name in ("anna", "ben", "carl"):
        (root / "in" / name).mkdir(parents=True)
        shutil.copy(carphone, root / "in" / name / "talk.mp4")
    Image.fromarray(astronaut).save(root / "in" / "astronaut.png")
    prepare([root / "in"], root / "data", PrepareOptions(crop_size=32, max_frames=12), workers=1, progress=False)
    return root / "data"


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    """A tiny model trained for two steps with `talkinghead train` and exported."""
    from talkinghead.checkpoint import export_model, list_checkpoints
    from talkinghead.config import load_config
    from talkinghead.training.train import train

    run = tmp_path_factory.mktemp("tiny-run")
    train(tiny_data, load_config("tiny", ["train.steps=2"]), run, progress=False)
    return export_model(list_checkpoints(run / "checkpoints")[-1], run / "tiny.safetensors")
