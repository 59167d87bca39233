"""`talkinghead demo`: a Gradio app over the library (`pip install "talkinghead[demo]"`).

Upload one or more portraits (or pick the bundled example), upload a driving video (or pick the
bundled motion), choose retargeting, fine-tuning steps and layout, and get the talking video with
the driver's audio, plus the portrait with the landmarks that were found.

Every request works in its own temporary folder; folders older than an hour are removed at the
next request and all of them when the app stops. The queue runs one job at a time, so concurrent
users wait rather than share anything. Uploads are capped in size and checked by content (they
must decode as an image or a video), not by name.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

BUNDLED_MOTION = "Bundled: talking, blinking, turning (6 s)"
EXAMPLE = "Example: astronaut (scikit-image)"


def _landmark_overlay(avatar) -> np.ndarray:
    """The first portrait with the detected landmarks drawn over it."""
    from talkinghead.face.crop import to_frame
    from talkinghead.face.drawing import draw_landmarks

    portrait = avatar.portrait
    points = to_frame(avatar.shot_landmarks[0], avatar.portrait_box, avatar.size)
    drawn = draw_landmarks(points, portrait.shape[:2], thickness=max(1, round(max(portrait.shape[:2]) / 256)))
    mask = drawn.max(axis=2, keepdims=True) > 0
    return np.where(mask, drawn, portrait)


class Demo:
    """The app's state: the model (a loaded `Model`, a path, or None for the bundled one), a
    scratch folder, and the request handler."""

    def __init__(self, model=None, keep_seconds: int = 3600):
        self.model = model
        self.keep_seconds = keep_seconds
        self.root = Path(tempfile.mkdtemp(prefix="talkinghead-demo-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def _workspace(self) -> Path:
        now = time.time()
        for old in self.root.iterdir():
            if now - old.stat().st_mtime > self.keep_seconds:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root))

    def example_portrait(self) -> Path:
        from PIL import Image
        from skimage import data

        path = self.root / "astronaut.png"
        if not path.exists():
            Image.fromarray(data.astronaut()).save(path)
        return path

    def run(self, portraits, example, driving_video, motion_choice, mode, steps, layout, size=512, progress=None):
        """Handler: returns (video path, landmark overlay). Raises `gr.Error` with one line."""
        import gradio as gr

        from talkinghead.inference.animate import default_motion_path
        from talkinghead.inference.cropper import FitError
        from talkinghead.inference.motion import MotionError
        from talkinghead.media.video import MediaError, VideoReader, load_image
        from talkinghead.stages import animate, make_avatar

        work = self._workspace()
        paths = [Path(p if isinstance(p, str) else p.name) for p in (portraits or [])]
        if not paths and example == EXAMPLE:
            paths = [self.example_portrait()]
        if not paths:
            raise gr.Error("Upload a portrait or pick the example.")
        try:
            images = [load_image(p) for p in paths]  # by content: a renamed PDF fails here
        except MediaError as error:
            raise gr.Error(f"{paths[0].name}: {error}") from None
        if driving_video:
            driving = Path(driving_video)
            try:
                VideoReader(driving).close()
            except MediaError as error:
                raise gr.Error(f"{driving.name}: {error}") from None
        else:
            driving = default_motion_path()
        try:
            if progress is not None:
                progress(0.05, desc="fitting the avatar")
            avatar = make_avatar(source=images, model=self.model, steps=int(steps), size=int(size), progress=True)
            if progress is not None:
                progress(0.4, desc="animating")
            out = work / "talking.mp4"
            animate(avatar=avatar, driving=driving, out=out, layout=layout, mode=mode, progress=True)
        except FitError as error:
            message = str(error).replace("image: ", f"{paths[0].name}: ")
            raise gr.Error(message) from None
        except (MotionError, MediaError, ValueError) as error:
            raise gr.Error(f"{driving.name}: {error}") from None
        return str(out), _landmark_overlay(avatar)

    def build(self):
        import gradio as gr

        with gr.Blocks(title="talkinghead") as app:
            gr.Markdown(
                "# talkinghead\nFew-shot talking heads (Zakharov et al., ICCV 2019): make a portrait talk "
                "with the motion of a driving video."
            )
            with gr.Row():
                with gr.Column():
                    portraits = gr.File(
                        label="Portrait(s) of one person",
                        file_count="multiple",
                        file_types=["image"],
                        elem_id="portraits",
                    )
                    example = gr.Radio([EXAMPLE, "None"], value="None", label="Or use an example")
                    driving = gr.Video(label="Driving video (optional)", sources=["upload"], elem_id="driving")
                    motion = gr.Radio([BUNDLED_MOTION], value=BUNDLED_MOTION, label="Without a video")
                    mode = gr.Radio(["auto", "relative", "absolute"], value="auto", label="Retargeting")
                    steps = gr.Slider(0, 200, value=0, step=10, label="Fine-tuning steps (0 = feed-forward)")
                    layout = gr.Radio(["crop", "side", "paste"], value="paste", label="Layout")
                    size = gr.Radio([256, 512], value=512, label="Face size in the video (px, at most the portrait's)")
                    button = gr.Button("Animate", variant="primary", elem_id="animate")
                with gr.Column():
                    video = gr.Video(label="Result", elem_id="result", autoplay=True)
                    found = gr.Image(label="Landmarks found in the portrait", elem_id="landmarks")
            button.click(
                lambda *a, progress=gr.Progress(track_tqdm=True): self.run(*a, progress=progress),
                inputs=[portraits, example, driving, motion, mode, steps, layout, size],
                outputs=[video, found],
                api_name="animate",
            )
        return app


def serve(
    *, host: str = "127.0.0.1", port: int = 7860, model: str | Path | None = None, max_upload_mb: int = 50
) -> None:
    """`talkinghead demo`: the Gradio app on host:port until stopped. The model is loaded (and so
    checked) before the server starts."""
    from talkinghead.checkpoint import load_model
    from talkinghead.errors import UsageError
    from talkinghead.stages import model_file

    loaded = load_model(model_file(model))
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError('gradio is not installed: pip install "talkinghead[demo]"') from None
    demo = Demo(model=loaded)
    app = demo.build()
    app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{max_upload_mb}mb",
        show_error=True,
        allowed_paths=[str(demo.root)],
    )
