"""The live page in headless Chromium with a fake camera playing a real talking-head clip."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _requirements() -> str | None:
    if CHROMIUM is None:
        return "no Chromium on this machine (apt-get install chromium)"
    for name in ("playwright", "fastapi", "uvicorn", "websockets"):
        try:
            __import__(name)
        except ImportError:
            return f"{name} is not installed (pip install -e '.[test]')"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_requirements() is not None, reason=str(_requirements()))]


def test_camera_frames_drive_the_avatar_in_the_page(tiny_model, astronaut, carphone, tmp_path):
    from live_session import fake_camera, live_server, open_page

    from talkinghead.inference.fitting import fit_avatar

    Image.fromarray(astronaut).save(tmp_path / "face.png")
    avatar = fit_avatar([tmp_path / "face.png"], model=tiny_model).save(tmp_path / "face.avatar")
    camera = fake_camera(carphone, tmp_path / "camera.y4m")
    with live_server(avatar) as url, open_page(url, camera, CHROMIUM) as page:
        page.wait_for_function("() => window.liveStats.frames >= 20", timeout=120_000)
        first = _shown(page)
        page.wait_for_function("() => window.liveStats.frames >= 60", timeout=120_000)
        second = _shown(page)
        stats = page.evaluate("() => window.liveStats")
    assert stats["error"] is None
    assert stats["face"] >= 0.8 * stats["frames"]  # the tracker found the face in the camera frames
    assert stats["medianLatency"] is not None and stats["medianLatency"] > 0
    assert first.shape == second.shape and first.std() > 5  # a picture, not a blank
    assert np.abs(first.astype(int) - second).mean() > 1.0  # the face moved with the driver


def _shown(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#result").screenshot())).convert("RGB"))


def test_live_refuses_bad_input(capsys, tmp_path):
    from talkinghead.cli import main

    (tmp_path / "junk.avatar").write_bytes(b"junk" * 100)
    assert main(["live", "--avatar", str(tmp_path / "junk.avatar")]) == 1
    assert "junk.avatar: not a talkinghead avatar" in capsys.readouterr().err
    assert main(["live", "--avatar", str(tmp_path / "missing.avatar")]) == 2
    assert "--avatar" in capsys.readouterr().err


def test_a_video_file_can_stand_in_for_the_camera(tiny_model, astronaut, carphone, tmp_path):
    from live_session import fake_camera, live_server, open_page

    from talkinghead.inference.fitting import fit_avatar

    Image.fromarray(astronaut).save(tmp_path / "face.png")
    avatar = fit_avatar([tmp_path / "face.png"], model=tiny_model).save(tmp_path / "face.avatar")
    camera = fake_camera(carphone, tmp_path / "unused.y4m", frames=2)  # the page needs none here
    with live_server(avatar, source=carphone) as url, open_page(url, camera, CHROMIUM) as page:
        page.wait_for_function("() => window.liveStats.frames >= 20", timeout=120_000)
        stats = page.evaluate("() => window.liveStats")
    assert stats["error"] is None and stats["face"] >= 16


def test_a_camera_on_the_server_can_drive_it(tiny_model, astronaut, carphone, tmp_path, capsys):
    """`--source 0` / `/dev/videoN`: OpenCV's capture, read newest-first. No camera here, so the
    capture is pointed at a video file (the same `VideoCapture` path a device takes) and a missing
    device must give one line."""
    from talkinghead.apps.live import Camera, LiveSession, _frames, is_device
    from talkinghead.cli import main
    from talkinghead.inference.avatar import Avatar
    from talkinghead.inference.fitting import fit_avatar

    assert is_device("0") and is_device("/dev/video2") and not is_device(str(carphone))
    Image.fromarray(astronaut).save(tmp_path / "face.png")
    fit_avatar([tmp_path / "face.png"], model=tiny_model).save(tmp_path / "face.avatar")
    assert main(["live", "--avatar", str(tmp_path / "face.avatar"), "--source", "/dev/video97"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["talkinghead live: --source /dev/video97: no camera there (or it is busy or not readable)"]

    camera = Camera(str(carphone))
    fps, frames = _frames(camera)
    session = LiveSession(Avatar.load(tmp_path / "face.avatar"))
    made = [session.step(next(frames)) for _ in range(5)]
    camera.close()
    size = session.avatar.size
    assert fps > 0 and all(frame.shape == (size, size, 3) for frame, _ in made)
    assert sum(timings["face"] for _, timings in made) >= 4
