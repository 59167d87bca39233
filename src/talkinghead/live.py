"""`talkinghead live`: the browser's camera drives an avatar, frame by frame.

A small page and a WebSocket on one port (FastAPI + uvicorn, which Gradio already brings; the
`live` extra adds the `websockets` protocol). Chosen over Gradio's streaming components because a
talking head lives or dies by latency: here the page sends each camera frame as a JPEG over the
socket with its capture time, the server answers with the generated frame and that time, and the
page shows the round trip. At most `IN_FLIGHT` frames are on their way at once, so a slow server
drops camera frames instead of queueing them (latency stays flat; the frame rate drops).

Per frame, on the server (`LiveSession.step`): decode, track the face (`FaceTracker`: detector
every few frames, landmark predictor every frame), retarget relatively (the motion since the
first tracked frame, scaled to the avatar's face, added to the avatar's own landmarks; `reset`
takes a new reference), generate (PyTorch, or onnxruntime with `--runtime onnx`), encode JPEG.
Frames without a face repeat the last result.

`--source VIDEO` drives the avatar from a video file (looping) instead of the browser's camera, on
machines without one: the server reads it at its frame rate and pushes results to the page.
`--source 0` (a camera index) or `--source /dev/video0` reads a camera on the server itself
(OpenCV's capture: V4L2 on Linux, AVFoundation on macOS, DirectShow/MSMF on Windows), for a
camera the browser cannot reach (another machine's page, a headless box with a USB camera).
"""

# No `from __future__ import annotations` here: FastAPI reads the WebSocket handler's parameter
# annotation as a live class to know what to inject.
import asyncio
import json
import struct
import sys
import time
from pathlib import Path

import cv2
import numpy as np

IN_FLIGHT = 2  # frames the page may have sent and not yet got back
SMOOTHING = 0.5  # weight of the newest landmarks in their running average (jitter)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes()


def decode_jpeg(data: bytes) -> "np.ndarray | None":
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class LiveSession:
    """One driver's state: tracker, reference landmarks, smoothing, the last frame made."""

    def __init__(self, avatar, runtime: str = "torch"):
        from .landmarks import make_landmarker
        from .tracking import FaceTracker

        self.avatar, self.runtime = avatar, runtime
        self.tracker = FaceTracker(make_landmarker(), min_face=24.0, verify_every=5)
        self.source = np.asarray(avatar.shot_landmarks[0], np.float32)
        self.last = np.asarray(next(avatar.generate(self.source[None], runtime=runtime)))
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self.reference = self.smoothed = None

    def track(self, rgb: np.ndarray) -> "tuple[np.ndarray | None, float]":
        """A camera frame `[H, W, 3]` -> driving landmarks in the avatar's crop pixels (None: no
        face), and the time it took (ms). Frames must come in order (the tracker and the running
        average are state)."""
        from .motion import relative

        t0 = time.perf_counter()
        points = self.tracker(rgb)
        if points is None:
            return None, (time.perf_counter() - t0) * 1000
        self.smoothed = points if self.smoothed is None else SMOOTHING * points + (1 - SMOOTHING) * self.smoothed
        if self.reference is None:
            self.reference = self.smoothed.copy()
        return relative(self.source, self.smoothed, self.reference), (time.perf_counter() - t0) * 1000

    def render(self, driving: "np.ndarray | None") -> tuple[np.ndarray, float]:
        """The avatar's frame `[S, S, 3]` for driving landmarks (the last one again for None)."""
        t0 = time.perf_counter()
        if driving is not None:
            self.last = np.asarray(next(self.avatar.generate(driving[None], runtime=self.runtime)))
        return self.last, (time.perf_counter() - t0) * 1000

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        """`track` then `render`: a camera frame -> the avatar's frame and timings (ms)."""
        driving, landmarks_ms = self.track(rgb)
        frame, generator_ms = self.render(driving)
        return frame, {"landmarks_ms": landmarks_ms, "generator_ms": generator_ms, "face": driving is not None}


def build_app(avatar, runtime: str = "torch", source: "Path | Camera | None" = None):
    """The FastAPI app: `/` the page, `/ws` the socket (one `LiveSession` per connection).
    `source`: a video file or a `Camera` that drives the avatar instead of the page's camera."""
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect
    from fastapi.responses import HTMLResponse

    next(avatar.generate(avatar.shot_landmarks[:1], runtime=runtime))  # export / warm up before serving
    app = FastAPI(title="talkinghead live")
    page = PAGE.replace("__MODE__", "source" if source else "camera").replace("__IN_FLIGHT__", str(IN_FLIGHT))
    generating = asyncio.Lock()  # one generator, many tabs: frames take turns

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        session = LiveSession(avatar, runtime)
        if source is not None:
            try:
                await _push_from_video(ws, session, source, generating)
            except WebSocketDisconnect:
                pass
            return
        # A two-stage pipeline: while one frame is being generated (onnxruntime and PyTorch let go
        # of the GIL), the next one is tracked. Each stage takes frames in order (asyncio locks are
        # first come, first served).
        tracking = asyncio.Lock()
        pending: set = set()

        async def handle(stamp: float, jpeg: bytes) -> None:
            t0 = time.perf_counter()
            async with tracking:
                rgb = await asyncio.to_thread(decode_jpeg, jpeg)
                t1 = time.perf_counter()
                # An undecodable frame holds the last result (the page still gets its answer).
                driving, landmarks_ms = (None, 0.0) if rgb is None else await asyncio.to_thread(session.track, rgb)
            # Queued for generation before the next frame can finish tracking: the order holds.
            async with generating:
                frame, generator_ms = await asyncio.to_thread(session.render, driving)
                t2 = time.perf_counter()
                reply = await asyncio.to_thread(encode_jpeg, frame)
            timings = {
                "decode_ms": (t1 - t0) * 1000, "landmarks_ms": landmarks_ms, "generator_ms": generator_ms,
                "encode_ms": (time.perf_counter() - t2) * 1000, "face": driving is not None,
                "server_ms": (time.perf_counter() - t0) * 1000,
            }  # fmt: skip
            await ws.send_bytes(struct.pack("<d", stamp) + _header(timings) + reply)

        try:
            while True:
                message = await ws.receive()
                if message.get("type") == "websocket.disconnect":
                    return
                if message.get("text") == "reset":
                    session.reset()
                elif message.get("bytes"):
                    data = message["bytes"]
                    # 8-byte capture time (float64, ms, the page's clock), then the JPEG.
                    task = asyncio.create_task(handle(struct.unpack("<d", data[:8])[0], data[8:]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            for task in pending:
                task.cancel()

    return app


def _header(timings: dict) -> bytes:
    """The timings as the reply's fixed 192-byte JSON header (numbers rounded to 0.01 ms)."""
    text = json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()}).encode()
    assert len(text) <= 192, text
    return text.ljust(192)


def is_device(source: str) -> bool:
    """A camera (an index such as `0`, or a device file such as `/dev/video0`) rather than a video file."""
    return source.isdigit() or source.startswith("/dev/video")


class Camera:
    """A camera on this machine through OpenCV's capture: `[H, W, 3]` RGB frames. The capture
    buffer is asked to hold one frame (V4L2 honours it), so a slow generator drops camera frames
    rather than falling behind. One reader at a time: two pages on one server-side camera would
    share its frames."""

    def __init__(self, source: str):
        from .errors import TalkingheadError

        self.source = source
        self.capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not self.capture.isOpened():
            raise TalkingheadError(f"--source {source}: no camera there (or it is busy or not readable)")
        self.capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0

    def read(self) -> "np.ndarray | None":
        ok, bgr = self.capture.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    def close(self) -> None:
        self.capture.release()


def _frames(source) -> "tuple[float, object]":
    """(frames/s, an iterator of RGB frames) for a video file (looping) or a `Camera`."""
    from .media import VideoReader

    if isinstance(source, Camera):

        def read():
            while (rgb := source.read()) is not None:
                yield rgb

        return source.fps, read()

    def loop():
        while True:
            with VideoReader(source) as reader:
                for _, _, rgb in reader:
                    yield rgb

    with VideoReader(source) as reader:
        fps = reader.info.fps or 25.0
    return fps, loop()


async def _push_from_video(ws, session: LiveSession, source, generating) -> None:
    """Drive from a video file or a server-side camera at its frame rate, pushing results."""
    fps, frames = _frames(source)
    period = 1.0 / fps
    while True:
        started = time.perf_counter()
        rgb = await asyncio.to_thread(next, frames, None)  # a camera's read blocks until its next frame
        if rgb is None:
            return  # the camera went away
        async with generating:
            frame, timings = await asyncio.to_thread(session.step, rgb)
        stamp = time.time() * 1000
        await ws.send_bytes(struct.pack("<d", stamp) + _header(timings) + encode_jpeg(frame))
        if not isinstance(source, Camera):
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - started)))


def main(args) -> int:
    """`talkinghead live` (arguments parsed by cli.py)."""
    from .avatar import Avatar
    from .errors import UsageError, check_input_file

    avatar = Avatar.load(check_input_file(args.avatar, "avatar file", option="--avatar"))
    if args.source and is_device(args.source):
        source = Camera(args.source)
    else:
        source = check_input_file(args.source, "video", option="--source") if args.source else None
    try:
        import uvicorn
        import websockets  # noqa: F401  (uvicorn's WebSocket protocol)
    except ImportError:
        raise UsageError('the live mode needs its extra: pip install "talkinghead[live]"') from None
    app = build_app(avatar, args.runtime, source)
    print(f"talkinghead live: open http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws="websockets")
    finally:
        if isinstance(source, Camera):
            source.close()
    return 0


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>talkinghead live</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; background: #111; color: #eee; }
 .row { display: flex; gap: 1.5em; align-items: flex-start; }
 video, img { width: 256px; height: auto; background: #222; image-rendering: auto; }
 #stats { font-family: monospace; margin-top: 1em; white-space: pre; }
 button { margin-top: 1em; }
</style></head>
<body>
<h1>talkinghead live</h1>
<div class="row">
 <div><div>camera</div><video id="camera" autoplay playsinline muted></video></div>
 <div><div>avatar</div><img id="result" alt="the avatar's frame"></div>
</div>
<button id="reset">new reference (look straight, mouth closed)</button>
<div id="stats">connecting...</div>
<script>
const MODE = "__MODE__", IN_FLIGHT = __IN_FLIGHT__;
const stats = window.liveStats = {frames: 0, fps: 0, latencies: [], medianLatency: null, face: 0,
                                  server: [], decode: [], landmarks: [], generator: [], encode: [],
                                  capture: [], error: null};
const camera = document.getElementById("camera"), result = document.getElementById("result");
const canvas = document.createElement("canvas"), context = canvas.getContext("2d");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
let inFlight = 0, shownAt = [];

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
}

ws.onmessage = (event) => {
  const data = event.data;
  const stamp = new DataView(data, 0, 8).getFloat64(0, true);
  const timings = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 8, 192)).trim());
  const jpeg = new Blob([new Uint8Array(data, 200)], {type: "image/jpeg"});
  const url = URL.createObjectURL(jpeg);
  result.onload = () => {
    URL.revokeObjectURL(url);
    const now = performance.timeOrigin + performance.now();
    if (MODE === "camera") stats.latencies.push(now - stamp);
    stats.latencies = stats.latencies.slice(-200);
    stats.medianLatency = median(stats.latencies);
    stats.frames += 1;
    stats.face += timings.face ? 1 : 0;
    stats.server.push(timings.server_ms || 0);
    for (const key of ["decode", "landmarks", "generator", "encode"]) stats[key].push(timings[key + "_ms"] || 0);
    for (const key of ["server", "decode", "landmarks", "generator", "encode", "capture"]) {
      stats[key] = stats[key].slice(-200);
    }
    shownAt.push(now);
    shownAt = shownAt.filter((t) => now - t < 2000);
    stats.fps = shownAt.length > 1 ? (shownAt.length - 1) * 1000 / (now - shownAt[0]) : 0;
    document.getElementById("stats").textContent =
      `frames ${stats.frames}   ${stats.fps.toFixed(1)} frames/s` +
      (stats.medianLatency === null ? "" : `   median latency ${stats.medianLatency.toFixed(0)} ms`) +
      `\\nlandmarks ${timings.landmarks_ms.toFixed(1)} ms   generator ${timings.generator_ms.toFixed(1)} ms` +
      (timings.face ? "" : "   (no face: holding the last frame)");
  };
  result.src = url;
  inFlight = Math.max(0, inFlight - 1);
};
ws.onerror = () => { stats.error = "socket error"; };

function send() {
  if (ws.readyState === 1 && inFlight < IN_FLIGHT && camera.videoWidth) {
    canvas.width = camera.videoWidth; canvas.height = camera.videoHeight;
    const stamp = performance.timeOrigin + performance.now();
    context.drawImage(camera, 0, 0);
    inFlight += 1;
    canvas.toBlob(async (blob) => {
      stats.capture.push(performance.timeOrigin + performance.now() - stamp);
      const body = new Uint8Array(await blob.arrayBuffer());
      const message = new Uint8Array(8 + body.length);
      new DataView(message.buffer).setFloat64(0, stamp, true);
      message.set(body, 8);
      ws.send(message);
    }, "image/jpeg", 0.85);
  }
  requestAnimationFrame(send);
}

document.getElementById("reset").onclick = () => ws.send("reset");
if (MODE === "camera") {
  navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false})
    .then((stream) => { camera.srcObject = stream; requestAnimationFrame(send); })
    .catch((error) => { stats.error = String(error); document.getElementById("stats").textContent = String(error); });
} else {
  camera.style.display = "none";
}
</script>
</body></html>
"""
