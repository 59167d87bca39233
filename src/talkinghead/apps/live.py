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

from talkinghead.inference.avatar import Avatar
from talkinghead.inference.onnx import OnnxAvatar, with_runtime

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

    def __init__(self, avatar: "Avatar | OnnxAvatar", runtime: str = "torch"):
        """`avatar`: what makes the frames (an `Avatar`, run by `runtime`, or an `OnnxAvatar`)."""
        from talkinghead.face.landmarks import make_landmarker
        from talkinghead.face.tracking import FaceTracker

        self.avatar = with_runtime(avatar, runtime) if isinstance(avatar, Avatar) else avatar
        self.tracker = FaceTracker(make_landmarker(), min_face=24.0, verify_every=5)
        self.source = np.asarray(avatar.shot_landmarks[0], np.float32)
        self.last = np.asarray(next(self.avatar.generate(self.source[None])))
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self.reference = self.smoothed = None

    def track(self, rgb: np.ndarray) -> "tuple[np.ndarray | None, float]":
        """A camera frame `[H, W, 3]` -> driving landmarks in the avatar's crop pixels (None: no
        face), and the time it took (ms). Frames must come in order (the tracker and the running
        average are state)."""
        from talkinghead.inference.motion import relative

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
            self.last = np.asarray(next(self.avatar.generate(driving[None])))
        return self.last, (time.perf_counter() - t0) * 1000

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        """`track` then `render`: a camera frame -> the avatar's frame and timings (ms)."""
        driving, landmarks_ms = self.track(rgb)
        frame, generator_ms = self.render(driving)
        return frame, {"landmarks_ms": landmarks_ms, "generator_ms": generator_ms, "face": driving is not None}


def build_app(avatar: Avatar, runtime: str = "torch", source: "Path | Camera | None" = None):
    """The FastAPI app: `/` the page, `/ws` the socket (one `LiveSession` per connection).
    `source`: a video file or a `Camera` that drives the avatar instead of the page's camera."""
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect
    from fastapi.responses import HTMLResponse

    frames = with_runtime(avatar, runtime)  # an ONNX export happens here, once, before serving
    next(frames.generate(avatar.shot_landmarks[:1]))  # warm up
    app = FastAPI(title="talkinghead live")
    page = (Path(__file__).parent / "live.html").read_text()
    page = page.replace("__MODE__", "source" if source else "camera").replace("__IN_FLIGHT__", str(IN_FLIGHT))
    generating = asyncio.Lock()  # one generator, many tabs: frames take turns

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        session = LiveSession(frames)
        try:
            if source is not None:
                await _push_from_video(ws, session, source, generating)
            else:
                await _answer_camera(ws, session, generating)
        except (WebSocketDisconnect, RuntimeError):
            return

    return app


async def _answer_camera(ws, session: LiveSession, generating: asyncio.Lock) -> None:
    """Answer each camera frame the page sends with the avatar's frame, until it disconnects.

    A two-stage pipeline: while one frame is being generated (onnxruntime and PyTorch let go of
    the GIL), the next one is tracked. Each stage takes frames in order (asyncio locks are first
    come, first served)."""
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
    finally:
        for task in pending:
            task.cancel()


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
        from talkinghead.errors import TalkingheadError

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
    from talkinghead.media.video import VideoReader

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


def serve(
    *,
    avatar: str | Path,
    source: str | None = None,
    runtime: str = "torch",
    size: int = 256,
    host: str = "127.0.0.1",
    port: int = 7861,
) -> None:
    """`talkinghead live`: the page on host:port until stopped. `source`: a video file or a camera
    on this machine (an index such as 0, or /dev/video0) instead of the browser's camera; `size`:
    the frames' side (at most the avatar's own)."""
    from talkinghead.errors import UsageError, check_input_file
    from talkinghead.media.video import MediaError, VideoReader, is_image_path
    from talkinghead.stages import make_avatar

    fitted = make_avatar(avatar=avatar, size=size)
    driver: "Path | Camera | None" = None
    if source and is_device(source):
        driver = Camera(source)
    elif source:
        driver = check_input_file(source, "video", option="--source")
        if is_image_path(driver):
            raise UsageError(f"--source {source}: an image; the live driver is a video or a camera")
        try:
            VideoReader(driver).close()  # decodes as a video
        except MediaError as error:
            raise MediaError(f"--source {source}: {error}") from None
    try:
        import uvicorn
        import websockets  # noqa: F401  (uvicorn's WebSocket protocol)
    except ImportError:
        raise UsageError('the live mode needs its extra: pip install "talkinghead[live]"') from None
    app = build_app(fitted, runtime, driver)
    print(f"talkinghead live: open http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", ws="websockets")
    finally:
        if isinstance(driver, Camera):
            driver.close()
