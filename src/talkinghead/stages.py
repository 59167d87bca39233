"""The stages as plain typed functions: what `talkinghead CMD` runs, and what the web demo and the
live page call.

    from talkinghead.stages import animate
    animate(source=["mona_lisa.jpg"], driving="talk.mp4", out="mona.mp4", layout="paste")

Each checks its options and files before any slow work (errors.py: one line naming the file or
option), calls the library, and returns a `Report` (or, for `animate`, an `Animation`): what the
command line prints, and its exit code. Keyword names are the command line's options
(`--crop-scale` is `crop_scale`); `progress` is the opposite of `--quiet`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from talkinghead.errors import (
    UsageError,
    check_input_file,
    check_input_folder,
    check_output_file,
    check_output_folder,
)
from talkinghead.inference.avatar import Avatar
from talkinghead.inference.fitting import FitOptions, fit_avatar
from talkinghead.model import Model

OUTPUT_SIZE = 512  # the frames' side by default: the motion at the model's size, the pixels moved at this


@dataclass
class Report:
    """What a stage did: `message` for stdout, `notes` (`note: ...` on stderr), `problem` (a
    `talkinghead CMD: ...` line on stderr) and the exit code."""

    message: str = ""
    notes: list[str] = field(default_factory=list)
    problem: str = ""
    exit_code: int = 0


def model_file(value: str | Path | None) -> Path:
    """A `--model` option's file, checked, or the bundled model when it is not given."""
    from talkinghead.checkpoint import default_model_path

    return check_input_file(value, "model file", option="--model") if value else default_model_path()


def make_avatar(
    *,
    avatar: str | Path | None = None,
    source: Sequence[str | Path | np.ndarray] | None = None,
    model: str | Path | Model | None = None,
    shots: int = 8,
    steps: int = 0,
    epochs: float = 0,
    size: int | None = OUTPUT_SIZE,
    progress: bool = False,
    option: str | None = "--source",
) -> Avatar:
    """The one way to an avatar: an avatar file, or portrait(s) or videos of one person (paths or
    `[H, W, 3] uint8` arrays) fitted with `model` (a loaded model, a file, or None for the bundled
    one) over `steps` (or `epochs`) of fine-tuning. `size`: the frames' side (the shots are kept
    at it, at most what the portrait holds; an avatar file renders at most at its own). Files are
    checked first; `option` names them in errors."""
    if avatar is not None:
        if source or model is not None or steps or epochs:
            raise UsageError("--model, --steps and --epochs apply to --source only (an avatar is already fitted)")
        loaded = Avatar.load(check_input_file(avatar, "avatar file", option="--avatar"))
        return loaded.at_size(size) if size else loaded
    if not source:
        raise UsageError(f"{option or 'inputs'}: give at least one image")
    for item in source:
        if not isinstance(item, np.ndarray):
            check_input_file(item, "image or video", option=option)
    if not isinstance(model, Model):
        from talkinghead.checkpoint import load_model

        model = load_model(model_file(model))
    options = FitOptions(steps=steps, epochs=epochs)
    return fit_avatar(source, model=model, shots=shots, options=options, size=size, progress=progress)


def prepare(
    inputs: Sequence[str | Path],
    *,
    out: str | Path,
    size: int = 256,
    crop_scale: float = 1.8,
    stride: int = 1,
    max_frames: int = 0,
    min_frames: int = 1,
    min_face: int = 48,
    jpeg_quality: int = 95,
    clips_per_shard: int = 256,
    workers: int = 0,
    shard: str = "0/1",
    progress: bool = True,
) -> Report:
    """Videos, frame folders and photos -> face crops + landmarks -> a sharded data set in `out`."""
    from talkinghead.data.prepare import PrepareOptions, format_summary, parse_job
    from talkinghead.data.prepare import prepare as run
    from talkinghead.io import write_json

    out = check_output_folder(out)
    job = parse_job(shard)
    options = PrepareOptions(
        crop_size=size, crop_scale=crop_scale, stride=stride, max_frames=max_frames, min_frames=min_frames,
        min_face=min_face, jpeg_quality=jpeg_quality, clips_per_shard=clips_per_shard,
    )  # fmt: skip
    start = time.perf_counter()
    try:
        summary = run(list(inputs), out, options, workers=workers, job=job, progress=progress)
    except KeyboardInterrupt:
        return Report(problem="interrupted; run the same command again to resume", exit_code=130)
    elapsed = time.perf_counter() - start
    report_path = out / "reports" / f"prepare-{job[0]}-of-{job[1]}.json"
    write_json(report_path, {**summary.as_dict(), "seconds": round(elapsed, 2), "job": shard})
    report = Report(format_summary(summary, elapsed))
    if not summary.clips:
        report.problem = f"{out}: no usable clip in the inputs; this data set is empty (see {report_path})"
        report.exit_code = 1
    return report


def train(
    *,
    data: str | Path,
    out: str | Path,
    config: str | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    init: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> Report:
    """Meta-learning on a prepared data set into the run folder `out`. Exits 128 + the signal's
    number when stopped by Ctrl-C (130) or SIGTERM (143), after saving a checkpoint."""
    from talkinghead.training.train import run_config
    from talkinghead.training.train import train as run

    check_input_folder(data, "data set", option="--data")
    run_folder = check_output_folder(out)
    if init:
        check_input_file(init, "model file", option="--init")
    resolved = run_config(run_folder, config, list(overrides), resume=resume)
    result = run(data, resolved, run_folder, resume=resume, progress=progress, max_steps=max_steps, init=init)
    return Report(exit_code=128 + result.stopped_by if result.stopped_by else 0)


def train_mouth(
    *,
    data: str | Path,
    out: str | Path,
    steps: int = 20_000,
    batch_size: int = 8,
    resume: bool = False,
    max_steps: int | None = None,
    init: str | Path | None = None,
    dilate: float | None = None,
    hidden_dilate: float | None = None,
    side: int | None = None,
    channels: int | None = None,
    parting: bool = False,
    blend: str | None = None,
    lip_locator: str | Path | None = None,
    lips: float | None = None,
    lpips: float | None = None,
    progress: bool = True,
) -> Report:
    """Meta-learn the mouth generator on a prepared data set (>= 128 px crops) into the run folder
    `out` (issue 32), from scratch or from another run's checkpoint (`init`); `export --mouth`
    puts a checkpoint of it into a model file."""
    from talkinghead.training.mouth import MouthConfig
    from talkinghead.training.mouth import train_mouth as run

    check_input_folder(data, "data set", option="--data")
    run_folder = check_output_folder(out)
    start = "" if init is None else str(check_input_file(init, "checkpoint", option="--init"))
    config = MouthConfig(steps=steps, batch_size=batch_size, init=start)
    config = config if dilate is None else dataclasses.replace(config, dilate=dilate)
    if hidden_dilate is not None and hidden_dilate > config.dilate:
        raise UsageError(f"--hidden-dilate: at most the region's --dilate ({config.dilate}), got {hidden_dilate}")
    config = config if hidden_dilate is None else dataclasses.replace(config, hidden_dilate=hidden_dilate)
    if side is not None and side % 16:
        raise UsageError(f"--side: must be a multiple of 16 (the generator halves it three times), got {side}")
    config = config if side is None else dataclasses.replace(config, side=side)
    config = config if channels is None else dataclasses.replace(config, channels=channels)
    config = dataclasses.replace(config, parting=True) if parting else config
    config = config if blend is None else dataclasses.replace(config, blend=blend)
    if lips is not None and lip_locator is None:
        raise UsageError("--lips: only with --lip-locator (the lip loss needs the locator that reads the lips)")
    if lip_locator is not None:  # the lip loss (a new run's; a resumed run keeps its own)
        locator = str(
            check_input_file(lip_locator, "lip locator", option="--lip-locator").resolve()
        )  # resumable anywhere
        loss = dataclasses.replace(config.loss, lips=5.0 if lips is None else lips)
        config = dataclasses.replace(config, lip_locator=locator, loss=loss)
    if lpips:  # LPIPS in place of the VGG features' L1 (both tap VGG16; a resumed run keeps its own)
        config = dataclasses.replace(config, loss=dataclasses.replace(config.loss, lpips=lpips, vgg=0.0))
    step = run(data, run_folder, config, resume=resume, max_steps=max_steps, progress=progress)
    return Report(f"{run_folder}: step {step}; --resume continues")


def fit(
    inputs: Sequence[str | Path],
    *,
    out: str | Path,
    model: str | Path | Model | None = None,
    shots: int = 8,
    steps: int = 0,
    epochs: float = 0,
    size: int = OUTPUT_SIZE,
    progress: bool = True,
) -> Report:
    """Images of one person (or videos to take T frames from) -> an avatar file."""
    out = check_output_file(out, (".avatar",))
    avatar = make_avatar(source=inputs, model=model, shots=shots, steps=steps, epochs=epochs, size=size,
                         progress=progress, option=None)  # fmt: skip
    avatar.save(out)
    kind = "feed-forward" if avatar.steps == 0 else f"fine-tuned for {avatar.steps} steps"
    message = (
        f"wrote {out}: {kind} avatar from {len(avatar.shots)} shot(s) at {avatar.size} px, "
        f"rendering at {avatar.output_size} px; {_mouth_words(avatar)}"
    )
    return Report(message, notes=list(avatar.notes))


def _mouth_words(avatar: Avatar) -> str:
    """Which mouth the avatar got (the model's `mouth` or, for closed lips, `closed_mouth`)."""
    if avatar.mouth is None:
        return "the warp's mouth (no mouth generator)"
    settings = avatar.mouth.settings
    parted = ", the lips parted where no shot opens as wide" if settings.parting else ""
    if settings.blend == "region":
        return f"a {settings.side} px mouth generator that paints the whole opening{parted}"
    return f"a {settings.side} px mouth generator that keeps the shots' own teeth{parted}"


@dataclass
class Animation(Report):
    """`animate`'s report, with the avatar that made the video (the demo shows its landmarks)."""

    avatar: Avatar | None = None


def animate(
    *,
    out: str | Path,
    source: Sequence[str | Path | np.ndarray] | None = None,
    avatar: str | Path | Avatar | None = None,
    driving: str | Path | None = None,
    model: str | Path | Model | None = None,
    steps: int = 0,
    epochs: float = 0,
    mode: str = "auto",
    reference: str = "neutral",
    smooth: float = 1.0,
    layout: str = "crop",
    runtime: str = "torch",
    size: int = OUTPUT_SIZE,
    progress: bool = True,
) -> Animation:
    """Make a portrait talk: an H.264 mp4 at the driver's frame rate, with its audio. `source`
    (portraits, fitted here) or `avatar` (a file or a fitted `Avatar`); `driving`: a video or a
    motion template (.npz), by default the bundled motion. Every input is checked, and the driver
    tracked, before the (possibly slow) fitting starts."""
    from talkinghead.inference.animate import animate_file, default_motion_path, load_driving
    from talkinghead.media.video import is_video_path

    out = check_output_file(out, (".mp4",))
    if (source is None) == (avatar is None):
        raise UsageError("give one of --source and --avatar")
    if avatar is not None and (model is not None or steps or epochs):
        raise UsageError("--model, --steps and --epochs apply to --source only (an avatar is already fitted)")
    driving = Path(driving) if driving else default_motion_path()
    check_input_file(driving, "driving video or motion template", option="--driving")
    fitted = avatar.at_size(size) if isinstance(avatar, Avatar) else None
    if fitted is None and avatar is not None:
        fitted = make_avatar(avatar=avatar, size=size)
    elif source is not None:
        for item in source:
            if not isinstance(item, np.ndarray):
                check_input_file(item, "image", option="--source")
        if not isinstance(model, Model):
            from talkinghead.checkpoint import load_model

            model = load_model(model_file(model))
    motion = load_driving(driving, progress=progress)
    if fitted is None:
        fitted = make_avatar(source=source, model=model, steps=steps, epochs=epochs, size=size, progress=progress)
    done = animate_file(
        fitted, driving, out, layout=layout, mode=mode, reference=reference, smooth=smooth, progress=progress,
        motion=motion, runtime=runtime,
    )  # fmt: skip
    said = []
    if done["interpolated_frames"]:
        said.append(f"face lost in {done['interpolated_frames']} driving frames (interpolated)")
    if not done["audio"] and is_video_path(driving):
        said.append("the driving video has no audio: the result is silent")
    message = (
        f"wrote {out}: {done['frames']} frames at {done['fps']:.2f} fps, {done['mode']} motion "
        f"({done['frames'] / done['seconds']:.1f} frames/s)" + "".join(f"; {n}" for n in said)
    )
    return Animation(message, notes=list(fitted.notes), avatar=fitted)


def motion(
    video: str | Path, *, out: str | Path, start: float = 0.0, duration: float | None = None, progress: bool = True
) -> Report:
    """A driving video's landmark track (no pixels) as a small motion template (.npz)."""
    from talkinghead.inference.motion import Motion, MotionError
    from talkinghead.media.video import is_image_path

    out = check_output_file(out, (".npz",))
    video = check_input_file(video, "video")
    if is_image_path(video):
        raise MotionError(f"{video}: an image; a motion template is tracked from a video")
    tracked = Motion.from_video(video, progress=progress)
    trimmed = tracked.trimmed(start, duration)
    if not len(trimmed):
        raise MotionError(f"{video}: nothing left after --start {start} (the video lasts {tracked.duration:.1f} s)")
    trimmed.save(out)
    return Report(
        f"wrote {out}: {len(trimmed)} frames at {trimmed.fps:.2f} fps ({trimmed.duration:.1f} s), landmarks only"
    )


def export(
    checkpoint: str | Path,
    *,
    out: str | Path,
    fp32: bool = False,
    onnx: bool = False,
    portable: bool = False,
    images: Sequence[str | Path] | None = None,
    size: int = OUTPUT_SIZE,
    mouth: str | Path | None = None,
    closed_mouth: str | Path | None = None,
) -> Report:
    """A training checkpoint (or a model file) -> a compact model file, with the mouth networks of
    a `train-mouth` checkpoint when `mouth` names one (and `closed_mouth`: the one for people whose
    mouth is closed in every shot); with `onnx`, an avatar (or a model file and
    `images` of one person, fitted feed-forward here) -> its per-frame path as an ONNX graph."""
    if (mouth or closed_mouth) and onnx:
        option = "--mouth" if mouth else "--closed-mouth"
        raise UsageError(f"{option}: not with --onnx (the mouth goes into model files)")
    if images and not onnx:
        raise UsageError("--images: only with --onnx (a model file and images of one person -> an ONNX graph)")
    if portable and not onnx:
        raise UsageError("--portable: only with --onnx")
    if onnx:
        return _export_onnx(checkpoint, out, portable=portable, images=images, size=size)
    from talkinghead.checkpoint import export_model

    check_input_file(checkpoint, "training checkpoint")
    if mouth:
        check_input_file(mouth, "train-mouth checkpoint", option="--mouth")
    if closed_mouth:
        check_input_file(closed_mouth, "train-mouth checkpoint", option="--closed-mouth")
    check_output_file(out, (".safetensors",))
    path = export_model(checkpoint, out, half=not fp32, mouth=mouth, closed_mouth=closed_mouth)
    return Report(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")


def _export_onnx(
    source: str | Path, out: str | Path, *, portable: bool, images: Sequence[str | Path] | None, size: int
) -> Report:
    from talkinghead.inference.onnx import export_onnx, require_onnxruntime

    check_output_file(out, (".onnx",))
    require_onnxruntime()
    if images:
        model = check_input_file(source, "model file")
        avatar = make_avatar(source=images, model=model, size=size, option="--images")
    else:
        avatar = make_avatar(avatar=check_input_file(source, "avatar file"), size=size)
    report = export_onnx(avatar, out, portable=portable)
    kind = f"{report['contrib_ops']} onnxruntime contrib op(s)" if report["contrib_ops"] else "standard ops only"
    return Report(
        f"wrote {report['path']} ({report['bytes'] / 2**20:.1f} MB, ONNX opset {report['opset']}, {kind}); "
        f"largest difference from PyTorch on the same inputs: {report['max_abs_difference']:.2e}"
    )


def evaluate(
    *,
    data: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    shots: Sequence[int] = (1, 8, 32),
    methods: Sequence[str] = ("ff", "ft", "static", "nearest", "warp", "scratch"),
    targets: int = 32,
    steps: int = 100,
    epochs: float | None = None,
    identities: Sequence[str] | None = None,
    cross: Sequence[str] | None = None,
    max_clips: int = 0,
    size: int = 0,
    progress: bool = True,
) -> Report:
    """The paper's few-shot self-reenactment evaluation on a held-out data set; the table.
    `size`: score every method at this many pixels (0: the model's resolution)."""
    from talkinghead.evaluation.evaluate import EvalOptions
    from talkinghead.evaluation.evaluate import evaluate as run

    check_input_folder(data, "data set", option="--data")
    out = check_output_folder(out)
    options = EvalOptions(
        shots=tuple(shots), methods=tuple(methods), targets=targets, steps=steps, epochs=epochs or 0,
        cross=tuple(cross or ()), max_clips=max_clips, identities=tuple(identities or ()), size=size,
    )  # fmt: skip
    run(model_file(model), data, out, options, progress=progress)
    return Report((out / "table.md").read_text())


def weights() -> Report:
    """Fetch, convert and verify every feature network; files in the cache that fail their
    checksum are fetched again (WeightsError when that is impossible)."""
    from talkinghead.features.weights import fetch_all

    return Report("\n".join(fetch_all()))
