"""A live-mode session in headless Chromium with a fake camera: shared by tests/test_live.py and
bench/bench_live.py."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")


def fake_camera(video: Path, out: Path, scale: int = 2, frames: int = 120) -> Path:
    """A real clip as a YUV4MPEG2 file, which Chromium plays (looping) as its camera."""
    from talkinghead.media.video import VideoReader

    with VideoReader(video) as reader:
        fps = reader.info.fps
        pictures = [rgb for _, _, rgb in reader][:frames]
    h, w = (pictures[0].shape[0] * scale) // 2 * 2, (pictures[0].shape[1] * scale) // 2 * 2
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{round(fps * 1000)}:1000 Ip A1:1 C420jpeg\n".encode())
        for rgb in pictures:
            big = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)
            f.write(b"FRAME\n" + cv2.cvtColor(big, cv2.COLOR_RGB2YUV_I420).tobytes())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(
    avatar: Path, runtime: str = "torch", threads: int = 1, source: Path | None = None, size: int = 256
) -> Iterator[str]:
    """`talkinghead live` in its own process on a free loopback port; yields its URL."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "talkinghead", "live", "--avatar", str(avatar), "--runtime", runtime]
    command += ["--size", str(size)]
    command += ["--source", str(source)] if source else []
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"talkinghead live exited: {process.stdout.read()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("talkinghead live did not start within 180 s") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def launch_chromium(playwright, executable: str, *extra_args: str):
    """Headless Debian Chromium as the tests and benches run it (no sandbox as root, no GPU, no
    network chatter), plus `extra_args`."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    return playwright.chromium.launch(executable_path=executable, args=[*args, "--no-first-run", *extra_args])


@contextlib.contextmanager
def open_page(url: str, camera: Path, chromium: str):
    """Headless Chromium with `camera` as its webcam (permission granted), on the live page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(
            p,
            chromium,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        )
        page = browser.new_page()
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()


def summary(page) -> dict:
    stats = page.evaluate("() => window.liveStats")
    return {
        "frames": stats["frames"],
        "fps": round(stats["fps"], 1),
        "median_latency_ms": None if stats["medianLatency"] is None else round(stats["medianLatency"], 1),
        **{
            f"{key}_ms_median": round(float(np.median(stats[key])), 1) if stats[key] else None
            for key in ("capture", "decode", "landmarks", "generator", "encode", "server")
        },
        "face_found": stats["face"],
        "error": stats["error"],
    }
