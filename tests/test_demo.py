"""The web demo in a real browser: headless Chromium (Debian's) driven by Playwright, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    if CHROMIUM is None:
        return "no Chromium on this machine (apt-get install chromium)"
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install -e '.[test]')"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_requirements() is not None, reason=str(_requirements()))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tiny_model):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "talkinghead",
            "demo",
            "--port",
            str(port),
            "--model",
            str(tiny_model),
            "--max-upload-mb",
            "5",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"the demo exited: {process.stdout.read()[-2000:]}")
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the demo did not start within 120 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield page
        browser.close()


def _upload_and_run(page, url: str, image: Path) -> None:
    page.goto(url)
    page.locator("#portraits input[type=file]").set_input_files(str(image))
    # Generous: on a busy 2-core machine the upload alone once took over 30 s.
    page.locator("#portraits").get_by_text(image.name).first.wait_for(timeout=120_000)
    page.locator("#animate").click()


def test_upload_a_portrait_and_get_a_playable_video(page, app, tmp_path, astronaut):
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    _upload_and_run(page, app, image)
    video = page.locator("#result video")
    video.wait_for(timeout=240_000)
    # Playable: the browser loads the file's metadata and finds a duration (the bundled 6 s motion).
    page.wait_for_function(
        "() => { const v = document.querySelector('#result video'); return v && v.readyState >= 1 && v.duration > 5; }",
        timeout=60_000,
    )
    assert page.locator("#landmarks img").count() == 1
    screenshot = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"
    if os.environ.get("TALKINGHEAD_SCREENSHOT"):
        page.screenshot(path=str(screenshot), full_page=True)


def test_a_picture_without_a_face_gets_a_clear_message(page, app, tmp_path):
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(wall)
    _upload_and_run(page, app, wall)
    page.get_by_text("wall.png: no face found").first.wait_for(timeout=120_000)
