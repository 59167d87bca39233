"""Benchmark rendering at the output size: `animate` end to end with the bundled model, the face
pasted at 512 px into a portrait that holds it, against the 128 px path; the live page's per-frame
work at 256 px; the mouth generator's share of an animate frame. Prints one JSON object.

    python bench/bench_render.py [--frames 150]

The portrait is scikit-image's astronaut enlarged 3x (1536 px, a face box of about 500 px), so
that `--size 512` really renders 512 px. The driver is the bundled motion (landmarks only: no
driver decoding). Each path runs in its own process, so peak memory is its own. Live: a
`LiveSession` (tracking, retargeting, generation, at 256 px) fed carphone's frames, with
PyTorch and onnxruntime; `live:RUNTIME:SIZE:nomouth` the same avatar without its mouth (the
mouth's cost in the same run). `animate:LAYOUT:SIZE:model=FILE` animates with another model file
(e.g. one whose mouth works at another crop side).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from common import machine, run_each

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / ".cache" / "test-media"


def _portrait(folder: Path) -> Path:
    import cv2
    from PIL import Image
    from skimage import data

    path = folder / "astronaut-1536.png"
    Image.fromarray(cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)).save(path)
    return path


def animate_path(layout: str, size: int, frames: int, model: str | None = None) -> dict:
    from talkinghead.inference.animate import default_motion_path
    from talkinghead.inference.motion import Motion
    from talkinghead.stages import animate, make_avatar

    folder = Path(tempfile.mkdtemp())
    motion = Motion.load(default_motion_path())
    motion = motion.trimmed(0, frames / motion.fps)
    motion.save(folder / "motion.npz")
    avatar = make_avatar(source=[_portrait(folder)], size=size, model=model)
    animate(avatar=avatar, driving=folder / "motion.npz", out=folder / "warm.mp4", layout=layout, progress=False)
    start = time.perf_counter()
    animate(avatar=avatar, driving=folder / "motion.npz", out=folder / "out.mp4", layout=layout, progress=False)
    seconds = time.perf_counter() - start
    # The generator and the renderer apart: the share of a frame's time each takes.
    landmarks = motion.retarget(avatar.shot_landmarks[0], avatar.size)
    start = time.perf_counter()
    outputs = list(avatar.outputs(landmarks))
    network = time.perf_counter() - start
    start = time.perf_counter()
    frames = [avatar.render(output) for output in outputs]  # without landmarks: no mouth
    render = time.perf_counter() - start
    mouth = 0.0
    if avatar.mouth is not None:  # the bundled model's mouth generator, cut, made and pasted at D
        from talkinghead.face.points import rescale_points

        points = rescale_points(landmarks.astype("float64"), avatar.size, avatar.output_size)
        start = time.perf_counter()
        for begin, batch in zip(range(0, len(points), 8), frames):  # parting included, as `render` does
            avatar.make_mouth(batch, points[begin : begin + len(batch)])
        mouth = time.perf_counter() - start
    return {
        "layout": layout,
        "model": model or "bundled",
        "mouth_side": None if avatar.mouth is None else avatar.mouth.settings.side,
        "parting": avatar.mouth is not None and avatar.mouth.settings.parting,
        "output_size": avatar.output_size,
        "frames": len(motion),
        "end_to_end_frames_per_second": round(len(motion) / seconds, 1),
        "generator_ms_per_frame": round(1000 * network / len(motion), 2),
        "render_ms_per_frame": round(1000 * render / len(motion), 2),
        "mouth_ms_per_frame": round(1000 * mouth / len(motion), 2),
        "mouth_share_of_a_frame": round(mouth / seconds, 3),
        "peak_process_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def live_path(runtime: str, size: int, frames: int, mouth: bool = True) -> dict:
    import numpy as np
    from PIL import Image

    from talkinghead.apps.live import LiveSession
    from talkinghead.inference.onnx import with_runtime
    from talkinghead.media.video import VideoReader
    from talkinghead.stages import make_avatar

    folder = Path(tempfile.mkdtemp())
    avatar = make_avatar(source=[_portrait(folder)], size=size)
    if not mouth:
        avatar.mouth = None
    session = LiveSession(with_runtime(avatar, runtime))
    with VideoReader(MEDIA / "carphone.mp4") as reader:
        camera = [np.asarray(Image.fromarray(rgb).resize((640, 480))) for _, _, rgb in reader]
    for rgb in camera[:10]:
        session.step(rgb)  # warm-up
    times, generator = [], []
    for i in range(frames):
        start = time.perf_counter()
        _, timings = session.step(camera[i % len(camera)])
        times.append(time.perf_counter() - start)
        generator.append(timings["generator_ms"])
    return {
        "runtime": runtime,
        "mouth": avatar.mouth is not None,
        "output_size": avatar.output_size,
        "frames_per_second": round(len(times) / sum(times), 1),
        "median_ms_per_frame": round(1000 * float(np.median(times)), 1),
        "median_generator_ms": round(float(np.median(generator)), 1),
        "peak_process_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def run_one(spec: str, frames: int) -> dict:
    kind, first, size, *extra = spec.split(":")
    if kind == "animate":
        model = next((e.split("=", 1)[1] for e in extra if e.startswith("model=")), None)
        return animate_path(first, int(size), frames, model)
    return live_path(first, int(size), frames, mouth="nomouth" not in extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["animate:crop:128", "animate:paste:128", "animate:paste:512", "live:torch:256", "live:onnx:256"],
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.frames)))
        return
    import torch

    results = run_each(__file__, args.paths, "--frames", str(args.frames))
    print(
        json.dumps(
            {"benchmark": "render", "machine": machine(), "torch_threads": torch.get_num_threads(), "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
