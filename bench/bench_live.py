"""Benchmark the live mode end to end in headless Chromium. Prints one JSON object.

    python bench/bench_live.py [--models MODEL ...] [--runtimes onnx torch] [--seconds 20]

For each model file (default: the bundled warp-guided model and the previous bundled one, the
paper's generator) and runtime:
an avatar fitted feed-forward to scikit-image's astronaut (enlarged 3x, so that her face holds
`--size` pixels), `talkinghead live --size` serving it, and
Chromium's fake camera playing the carphone clip (2x, 352 x 288, looping). Measured in the page:
frames shown per second (`fps`: over the last 2 s, as the page shows it; `fps_mean`: over the
whole measured window) and the median latency from the camera frame's
capture to its generated frame being shown (over the last 200 frames); the server's own time per
frame beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import machine
from live_session import fake_camera, live_server, open_page, summary

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import cv2
    from skimage import data

    from talkinghead.checkpoint import default_model_path
    from talkinghead.inference.fitting import fit_avatar

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=[str(default_model_path()), "models/cpu128-adain.safetensors"])
    parser.add_argument("--runtimes", nargs="+", default=["onnx", "torch"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="the frames' side (default: 256)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    camera = fake_camera(ROOT / ".cache" / "test-media" / "carphone.mp4", tmp / "camera.y4m")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    results = []
    for model in args.models:
        portrait = cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
        avatar = fit_avatar([portrait], model=model, size=args.size).save(tmp / "avatar.avatar")
        for runtime in args.runtimes:
            server = live_server(avatar, runtime, threads=args.threads, size=args.size)
            with server as url, open_page(url, camera, chromium) as page:
                page.wait_for_function("() => window.liveStats.frames >= 10", timeout=180_000)
                start, first = time.perf_counter(), page.evaluate("() => window.liveStats.frames")
                time.sleep(args.seconds)
                row = summary(page)
                row["fps_mean"] = round((row["frames"] - first) / (time.perf_counter() - start), 1)
                results.append({"model": Path(model).name, "runtime": runtime, "size": args.size, **row})
    print(json.dumps({"machine": machine(), "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
