"""Benchmark the video writer's H.264 settings on what `animate --layout paste --size 512` writes:
the bundled model's frames pasted into a 1536 px portrait (scikit-image's astronaut enlarged 3x),
encoded at CRF 18 with x264 option sets, each alone (nothing else running). Prints one JSON object:
per option set, wall and CPU milliseconds a frame, file size, the face's PSNR (luma, against
the frames given) and the face's detail kept (variance of the Laplacian of the decoded luma over
the given's).

    python bench/bench_writer.py [--frames 100]

The writer's own choice for frames of a megapixel and more is the row `writer`, below a megapixel
`medium+grain` (media/video.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_render import _portrait
from common import machine

OPTIONS = {
    "medium": {"preset": "medium"},
    "veryfast": {"preset": "veryfast"},
    "veryfast+threads=1": {"preset": "veryfast", "x264-params": "threads=1"},
    "writer": {"preset": "veryfast", "x264-params": "threads=1:me=dia:subme=1"},
    "writer+grain": {"preset": "veryfast", "tune": "grain", "x264-params": "threads=1:me=dia:subme=1"},
    "medium+grain (the writer below a megapixel)": {"preset": "medium", "tune": "grain"},
    "ultrafast+threads=1": {"preset": "ultrafast", "x264-params": "threads=1"},
}


def _frames(count: int) -> tuple[list[np.ndarray], tuple[slice, slice]]:
    """yuv420p frames (as the writer hands them to x264) and the face box in them."""
    import cv2

    from talkinghead.inference.animate import default_motion_path, render
    from talkinghead.inference.motion import Motion
    from talkinghead.stages import make_avatar

    folder = Path(tempfile.mkdtemp())
    motion = Motion.load(default_motion_path()).trimmed(0, count / 25)
    avatar = make_avatar(source=[_portrait(folder)], size=512)
    frames = [cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420) for rgb in render(avatar, motion, layout="paste")]
    x0, y0, side = (int(v) for v in avatar.portrait_box)
    return frames, (slice(max(y0, 0), y0 + side), slice(max(x0, 0), x0 + side))


def _usage() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode(frames: list[np.ndarray], face: tuple[slice, slice], options: dict) -> dict:
    import av

    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    path = Path(tempfile.mkdtemp()) / "out.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25, options={"crf": "18", **options})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    cpu, start = _usage(), time.perf_counter()
    for i, yuv in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    wall, cpu = time.perf_counter() - start, _usage() - cpu
    with av.open(str(path)) as decoded:
        made = [f.to_ndarray(format="yuv420p")[:height] for f in decoded.decode(video=0)]
    error = np.mean(
        [np.mean((m[face].astype(float) - f[:height][face].astype(float)) ** 2) for m, f in zip(made, frames)]
    )
    import cv2

    def detail(luma: np.ndarray) -> float:
        return float(cv2.Laplacian(luma[face].astype(np.float64), cv2.CV_64F).var())

    kept = np.mean([detail(m) / detail(f[:height]) for m, f in zip(made, frames)])
    return {
        "wall_ms_per_frame": round(1000 * wall / len(frames), 1),
        "cpu_ms_per_frame": round(1000 * cpu / len(frames), 1),
        "kilobytes": os.path.getsize(path) // 1000,
        "face_luma_psnr_db": round(10 * np.log10(255**2 / error), 2),
        "face_detail_kept": round(float(kept), 3),  # variance of the Laplacian, decoded over given
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    frames, face = _frames(args.frames)
    results = {name: encode(frames, face, options) for name, options in OPTIONS.items()}
    print(
        json.dumps({"benchmark": "writer", "machine": machine(), "frames": len(frames), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
