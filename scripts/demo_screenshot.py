"""Take docs/images/demo.png: the web demo with the bundled model, after animating the astronaut.

    python scripts/demo_screenshot.py

Starts `talkinghead demo` on a free loopback port, drives it in headless Chromium (Playwright with
Debian's browser), and screenshots the page once the video has loaded.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"


def main() -> None:
    from playwright.sync_api import sync_playwright
    from skimage import data

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = subprocess.Popen([sys.executable, "-m", "talkinghead", "demo", "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        portrait = Path(tempfile.mkdtemp()) / "astronaut.png"
        Image.fromarray(data.astronaut()).save(portrait)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            page.locator("#portraits input[type=file]").set_input_files(str(portrait))
            page.locator("#portraits").get_by_text(portrait.name).first.wait_for(timeout=30_000)
            page.locator("#animate").click()
            page.wait_for_function(
                "() => { const v = document.querySelector('#result video'); return v && v.readyState >= 2; }",
                timeout=300_000,
            )
            page.evaluate(
                "() => { const v = document.querySelector('#result video'); v.pause(); v.currentTime = 2.0; }"
            )
            time.sleep(1.0)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    print(OUT)


if __name__ == "__main__":
    main()
