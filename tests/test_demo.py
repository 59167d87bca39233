"""The web demo in a real browser: headless Chromium (Debian's) driven by Playwright, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
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
    from live_session import launch_chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield page
        browser.close()


def _upload_and_run(page, url: str, image: Path) -> None:
    page.goto(url)
    page.locator("#portraits input[type=file]").set_input_files(str(image))
    # The uploaded file's row (its cell's aria-label is the file name). Not get_by_text: once the
    # upload is done the name is split into stem and extension spans, so a text match only caught
    # the transient progress line and missed it when the upload was fast (CI failed on that).
    # Generous: on a busy 2-core machine the upload alone once took over 30 s.
    page.locator("#portraits").get_by_label(image.name, exact=True).wait_for(timeout=120_000)
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


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def _request(client, portrait: Path | None, driving: Path | None, layout: str = "paste"):
    from gradio_client import handle_file

    return client.submit(
        [handle_file(str(portrait))] if portrait else None,
        "None",
        handle_file(str(driving)) if driving else None,
        "Bundled: talking, blinking, turning (6 s)",
        "relative",
        0,
        layout,
        512,
        api_name="/animate",
    )


def _video_size(client, result) -> tuple[int, int]:
    """Width and height of a result video, fetched from the server like a browser would."""
    import av

    video = result[0]
    video = video.get("video", video) if isinstance(video, dict) else video  # gradio 5 nests it
    url = video["url"] if isinstance(video, dict) else video
    data = urllib.request.urlopen(url, timeout=60).read()
    import io

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


@pytest.fixture(scope="module")
def short_driver(tmp_path_factory) -> Path:
    from conftest import media, write_video

    from talkinghead.media.video import VideoReader

    with VideoReader(media("carphone.mp4")) as reader:
        frames = [rgb for _, _, rgb in reader][:10]
    return write_video(tmp_path_factory.mktemp("driver") / "talk.mp4", frames)


def test_eight_concurrent_users_each_get_their_own_result(app, tmp_path, astronaut, short_driver):
    """8 clients at once on loopback: the queue runs them one by one; each result is made from that
    client's own portrait (the paste layout keeps the portrait's size, different for each)."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [(360 + 16 * i, 320 + 8 * i) for i in range(8)]  # (width, height), all even
    portraits = []
    for i, (w, h) in enumerate(sizes):
        path = tmp_path / f"user{i}.png"
        Image.fromarray(np.asarray(Image.fromarray(astronaut).resize((w, h)))).save(path)
        portraits.append(path)

    def user(i: int) -> tuple[int, int]:
        client = _client(app)
        return _video_size(client, _request(client, portraits[i], short_driver).result(timeout=300))

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(user, range(8)))
    assert got == sizes
    assert time.monotonic() - started < 300


def test_bad_uploads_get_a_message_and_the_server_goes_on(app, tmp_path, astronaut, short_driver):
    from gradio_client.exceptions import AppError

    client = _client(app)
    fake = tmp_path / "notes.png"
    fake.write_text("a text file named like a picture")
    with pytest.raises(AppError, match="notes.png: not an image"):
        _request(client, fake, None).result(timeout=120)
    face = tmp_path / "face.png"
    Image.fromarray(astronaut).save(face)
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(Exception) as error:
        _request(client, face, broken).result(timeout=120)
    assert "clip.mp4" in str(error.value) or "video" in str(error.value).lower(), error.value
    # Over the fixture's --max-upload-mb 5: the server itself refuses it (not only the client).
    boundary = "talkinghead-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.png"\r\n\r\n'
    body = head.encode() + b"\0" * (6 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        app + "gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413, refused.value.read()[:300]
    # Still serving, and correctly:
    assert _video_size(client, _request(client, face, short_driver).result(timeout=300)) == (512, 512)
