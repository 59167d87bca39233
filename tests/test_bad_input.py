"""Bad input never gets a traceback: a table of bad command lines over every subcommand.

Each case runs the real command line in this process (`talkinghead.cli.main`) against real files
(a trained tiny model, its checkpoint, a fitted avatar, real and broken videos and images) and
checks: the exit code, one line on stderr of the form `talkinghead CMD: ...` with the expected
words (the file or option, and the reason), no traceback, and nothing new left anywhere in the
workspace (no output, no temporary, no folder).
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_video
from PIL import Image

from talkinghead.cli import main

# (command line, exit code, words expected in the one-line message). Placeholders: {ws} the
# workspace, {data} a real prepared data set, {model} a real model file, {ckpt} a real training
# checkpoint, {avatar} a real avatar; all other files are made by the `ws` fixture below.
CASES = [
    # -- prepare --------------------------------------------------------------------------------
    ("prepare {ws}/missing.mp4 --out {ws}/ds", 2, ["missing.mp4", "not found"]),
    ("prepare {ws}/talk.mp4 --out {ws}/notes.txt", 2, ["--out", "notes.txt", "is a file"]),
    ("prepare {ws}/talk.mp4 --out {ws}/notes.txt/ds", 2, ["notes.txt", "is a file"]),
    ("prepare {ws}/talk.mp4 --out /proc/talkinghead-ds", 2, ["/proc", "cannot write"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --size 100000", 2, ["--size", "16..2048"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --size 0", 2, ["--size", "16..2048"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --size big", 2, ["--size", "integer", "big"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --max-frames -3", 2, ["--max-frames", ">= 0"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --workers -2", 2, ["--workers", "0..256"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --stride 0", 2, ["--stride", "> 0"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --crop-scale -1", 2, ["--crop-scale", "1.0..4.0"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --crop-scale nan", 2, ["--crop-scale"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --jpeg-quality 20", 2, ["--jpeg-quality", "20"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --shard 3/2", 2, ["--shard", "k/n"]),
    ("prepare {ws}/talk.mp4 --out {ws}/ds --min-frames 0", 2, ["--min-frames", "> 0"]),
    ("prepare {ws}/talk.mp4", 2, ["--out", "required"]),
    # -- train ----------------------------------------------------------------------------------
    ("train --data {ws}/missing --config tiny --out {ws}/run", 2, ["--data", "missing", "not found"]),
    ("train --data {ws}/notes.txt --config tiny --out {ws}/run", 2, ["--data", "notes.txt", "is a file"]),
    ("train --data {ws}/adir --config tiny --out {ws}/run", 2, ["adir", "no *.thshard shards"]),
    ("train --data {data} --config tiny --out {ws}/notes.txt", 2, ["--out", "notes.txt", "is a file"]),
    ("train --data {data} --config tiny --out /proc/talkinghead-run", 2, ["/proc", "cannot write"]),
    ("train --data {data} --config nothing --out {ws}/run", 2, ["--config nothing", "not a preset"]),
    ("train --data {data} --config {ws}/bad.json --out {ws}/run", 2, ["bad.json", "not a JSON config"]),
    ("train --data {data} --config {ws}/list.json --out {ws}/run", 2, ["list.json", "not a JSON config"]),
    ("train --data {data} --config {ws}/binary.json --out {ws}/run", 2, ["binary.json", "not a JSON config"]),
    ("train --data {data} --config {ws}/big.json --out {ws}/run", 2, ["big.json", "model.resolution", "integer"]),
    ("train --data {data} --config tiny --out {ws}/run --set model.resolution=big", 2, ["model.resolution"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.batch_size=abc", 2, ["train.batch_size", "abc"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.steps=-1", 2, ["train.steps", "1..1000000000"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.lr_generator=0", 2, ["train.lr_generator"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.amp=maybe", 2, ["train.amp", "true or false"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.betas=[0.5]", 2, ["train.betas", "2 numbers"]),
    ("train --data {data} --config tiny --out {ws}/run --set loss.vgg=-1", 2, ["loss.vgg", ">= 0"]),
    ("train --data {data} --config tiny --out {ws}/run --set model.resolution=100", 2, ["model.resolution", "power"]),
    ("train --data {data} --config tiny --out {ws}/run --set model.generator=gan", 2, ["model.generator", "gan"]),
    ("train --data {data} --config tiny --out {ws}/run --set nokey", 2, ["--set", "nokey"]),
    ("train --data {data} --config tiny --out {ws}/run --set model.width=3", 2, ["model.width"]),
    ("train --data {data} --config tiny --out {ws}/run --max-steps 0", 2, ["--max-steps", "> 0"]),
    ("train --data {data} --config tiny --out {ws}/run --init {ws}/missing.safetensors", 2, ["--init", "not found"]),
    ("train --data {data} --config tiny --out {ws}/run --init {ws}/junk.safetensors", 1, ["junk.safetensors"]),
    ("train --data {data} --config tiny --out {ws}/run --set train.batch_size=64", 2, ["too few"]),
    # -- fit ------------------------------------------------------------------------------------
    ("fit {ws}/missing.png --out {ws}/a.avatar", 2, ["missing.png", "not found"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --size 8", 2, ["--size", "16..2048"]),
    ("animate --source {ws}/face.png --out {ws}/o.mp4 --size 4096", 2, ["--size", "16..2048"]),
    ("evaluate --data {data} --out {ws}/ev --size 64", 2, ["--size 64", "holds 32 px crops"]),
    ("evaluate --data {data} --out {ws}/ev --size -1", 2, ["--size", "0..2048"]),
    ("live --avatar {avatar} --size big", 2, ["--size", "must be an integer"]),
    ("fit {ws}/notes.txt --out {ws}/a.avatar", 1, ["notes.txt", "not an image"]),
    ("fit {ws}/fake.png --out {ws}/a.avatar", 1, ["fake.png", "not an image"]),
    ("fit {ws}/empty.png --out {ws}/a.avatar", 2, ["empty.png", "empty file"]),
    ("fit {ws}/wall.png --out {ws}/a.avatar", 1, ["wall.png", "no face found"]),
    ("fit {ws}/broken.mp4 --out {ws}/a.avatar", 1, ["broken.mp4", "unreadable"]),
    ("fit {ws}/noface.mp4 --out {ws}/a.avatar", 1, ["noface.mp4", "face"]),
    ("fit {ws}/adir --out {ws}/a.avatar", 2, ["adir", "is a folder"]),
    ("fit {ws}/face.png --out {ws}/adir", 2, ["--out", "adir", ".avatar"]),
    ("fit {ws}/face.png --out {ws}/a.txt", 2, ["--out", "a.txt", "must end in .avatar"]),
    ("fit {ws}/face.png --out {ws}/notes.txt/a.avatar", 2, ["notes.txt", "is a file"]),
    ("fit {ws}/face.png --out /proc/talkinghead.inference.avatar", 2, ["/proc", "cannot write"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/missing.safetensors", 2, ["--model", "not found"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/junk.safetensors", 1, ["junk.safetensors", "unreadable"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/half.safetensors", 1, ["half.safetensors", "truncated"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/gutted.safetensors", 1, ["gutted.safetensors", "match"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/other.safetensors", 1, ["other.safetensors", "not a"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/junk.pt", 1, ["junk.pt", "not a talkinghead checkpoint"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/half.pt", 1, ["half.pt", "truncated"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/code.pt", 1, ["code.pt", "refused", "never run"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {ws}/plain.pt", 1, ["plain.pt", "not a talkinghead checkpoint"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --model {avatar}", 1, ["not a talkinghead model"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --steps 1000000000", 2, ["--steps", "0..100000"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --steps -1", 2, ["--steps", "0..100000"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --epochs -1", 2, ["--epochs", "0..10000"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --steps 5 --epochs 2", 2, ["--epochs", "not allowed with"]),
    ("fit {ws}/face.png --out {ws}/a.avatar --shots 0", 2, ["--shots", "1..1000"]),
    # -- animate --------------------------------------------------------------------------------
    ("animate --avatar {ws}/missing.avatar --out {ws}/o.mp4", 2, ["--avatar", "not found"]),
    ("animate --avatar {ws}/junk.avatar --out {ws}/o.mp4", 1, ["junk.avatar", "not a talkinghead avatar"]),
    ("animate --avatar {model} --out {ws}/o.mp4", 1, ["not a talkinghead avatar"]),
    ("animate --avatar {ws}/empty.avatar --out {ws}/o.mp4", 2, ["empty.avatar", "empty file"]),
    ("animate --avatar {avatar} --driving {ws}/missing.mp4 --out {ws}/o.mp4", 2, ["--driving", "not found"]),
    ("animate --avatar {avatar} --driving {ws}/empty.mp4 --out {ws}/o.mp4", 2, ["empty.mp4", "empty file"]),
    ("animate --avatar {avatar} --driving {ws}/broken.mp4 --out {ws}/o.mp4", 1, ["broken.mp4", "unreadable"]),
    ("animate --avatar {avatar} --driving {ws}/face.png --out {ws}/o.mp4", 1, ["face.png", "an image"]),
    ("animate --avatar {avatar} --driving {ws}/notes.txt --out {ws}/o.mp4", 1, ["notes.txt", "not a video"]),
    ("animate --avatar {avatar} --driving {ws}/other.npz --out {ws}/o.mp4", 1, ["other.npz", "not a motion"]),
    ("animate --avatar {avatar} --driving {ws}/junk.npz --out {ws}/o.mp4", 1, ["junk.npz", "not a motion"]),
    ("animate --avatar {avatar} --driving {ws}/noface.mp4 --out {ws}/o.mp4", 1, ["noface.mp4", "no face"]),
    ("animate --avatar {avatar} --driving {ws}/adir --out {ws}/o.mp4", 2, ["--driving", "is a folder"]),
    ("animate --avatar {avatar} --out {ws}/adir", 2, ["--out", "adir"]),
    ("animate --avatar {avatar} --out {ws}/o.txt", 2, ["--out", "o.txt", "must end in .mp4"]),
    ("animate --avatar {avatar} --out /proc/talkinghead.mp4", 2, ["/proc", "cannot write"]),
    ("animate --avatar {avatar} --out {ws}/notes.txt/o.mp4", 2, ["notes.txt", "is a file"]),
    ("animate --avatar {avatar} --out {ws}/o.mp4 --smooth -1", 2, ["--smooth", "0..100"]),
    ("animate --avatar {avatar} --out {ws}/o.mp4 --smooth inf", 2, ["--smooth", "0..100"]),
    ("animate --avatar {avatar} --out {ws}/o.mp4 --mode sideways", 2, ["--mode", "sideways"]),
    ("animate --avatar {avatar} --out {ws}/o.mp4 --model {model}", 2, ["--model", "--source only"]),
    ("animate --avatar {avatar} --out {ws}/o.mp4 --steps 10", 2, ["--steps", "--source only"]),
    ("animate --source {ws}/missing.png --out {ws}/o.mp4", 2, ["--source", "missing.png", "not found"]),
    ("animate --source {ws}/wall.png --out {ws}/o.mp4", 1, ["wall.png", "no face found"]),
    ("animate --source {ws}/face.png --model {ws}/junk.pt --out {ws}/o.mp4", 1, ["junk.pt"]),
    ("animate --source {ws}/face.png --avatar {avatar} --out {ws}/o.mp4", 2, ["not allowed with"]),
    ("animate --out {ws}/o.mp4", 2, ["required"]),
    # -- motion ---------------------------------------------------------------------------------
    ("motion {ws}/missing.mp4 --out {ws}/m.npz", 2, ["missing.mp4", "not found"]),
    ("motion {ws}/face.png --out {ws}/m.npz", 1, ["face.png", "an image"]),
    ("motion {ws}/broken.mp4 --out {ws}/m.npz", 1, ["broken.mp4", "unreadable"]),
    ("motion {ws}/empty.mp4 --out {ws}/m.npz", 2, ["empty.mp4", "empty file"]),
    ("motion {ws}/noface.mp4 --out {ws}/m.npz", 1, ["noface.mp4", "no face"]),
    ("motion {ws}/talk.mp4 --out {ws}/m.npz --start -5", 2, ["--start", ">= 0"]),
    ("motion {ws}/talk.mp4 --out {ws}/m.npz --duration -1", 2, ["--duration", "> 0"]),
    ("motion {ws}/talk.mp4 --out {ws}/m.npz --duration 0", 2, ["--duration", "> 0"]),
    ("motion {ws}/talk.mp4 --out {ws}/m.npz --start 1000", 1, ["talk.mp4", "nothing left", "--start"]),
    ("motion {ws}/talk.mp4 --out {ws}/adir", 2, ["--out", "adir"]),
    ("motion {ws}/talk.mp4 --out {ws}/m.txt", 2, ["--out", "must end in .npz"]),
    ("motion {ws}/talk.mp4 --out /proc/talkinghead.npz", 2, ["/proc", "cannot write"]),
    # -- export ---------------------------------------------------------------------------------
    ("export {ws}/missing.pt --out {ws}/e.safetensors", 2, ["missing.pt", "not found"]),
    ("export {ws}/junk.pt --out {ws}/e.safetensors", 1, ["junk.pt", "not a talkinghead checkpoint"]),
    ("export {ws}/half.pt --out {ws}/e.safetensors", 1, ["half.pt", "truncated"]),
    ("export {ws}/code.pt --out {ws}/e.safetensors", 1, ["code.pt", "refused", "never run"]),
    ("export {model} --out {ws}/e.safetensors", 1, ["a model file, not a training checkpoint"]),
    # random bytes named .safetensors: PyTorch 2.13's torch.load hands the path to safetensors
    ("export {ws}/junk.safetensors --out {ws}/e.safetensors", 1, ["junk.safetensors", "not a talkinghead checkpoint"]),
    ("export {ckpt} --out {ws}/adir", 2, ["--out", "adir"]),
    ("export {ckpt} --out {ws}/e.pt", 2, ["--out", "e.pt", "must end in .safetensors"]),
    ("export {ckpt} --out /proc/talkinghead.safetensors", 2, ["/proc", "cannot write"]),
    ("export {ckpt} --out {ws}/notes.txt/e.safetensors", 2, ["notes.txt", "is a file"]),
    ("export --onnx {model} --images {ws}/missing.png --out {ws}/e.onnx", 2, ["--images", "missing.png", "not found"]),
    ("export --onnx {ws}/junk.pt --images {ws}/face.png --out {ws}/e.onnx", 1, ["junk.pt"]),
    ("export {model} --images {ws}/face.png --out {ws}/e.safetensors", 2, ["--images", "only with --onnx"]),
    ("export {ckpt} --portable --out {ws}/e.safetensors", 2, ["--portable", "only with --onnx"]),
    ("export {model} --closed-mouth {ws}/missing.pt --out {ws}/e.safetensors", 2, ["--closed-mouth", "missing.pt"]),
    ("export {model} --closed-mouth {ckpt} --out {ws}/e.safetensors", 1, ["not a train-mouth checkpoint"]),
    ("export --onnx {model} --closed-mouth {ckpt} --out {ws}/e.onnx", 2, ["--closed-mouth", "not with --onnx"]),
    # -- evaluate -------------------------------------------------------------------------------
    ("evaluate --data {ws}/missing --out {ws}/ev", 2, ["--data", "not found"]),
    ("evaluate --data {ws}/adir --out {ws}/ev", 2, ["adir", "no *.thshard shards"]),
    ("evaluate --data {data} --out {ws}/notes.txt", 2, ["--out", "notes.txt", "is a file"]),
    ("evaluate --data {data} --out /proc/talkinghead-ev", 2, ["/proc", "cannot write"]),
    ("evaluate --data {data} --out {ws}/ev --shots 0", 2, ["--shots", "1..1000"]),
    ("evaluate --data {data} --out {ws}/ev --shots 1000 --methods static", 2, ["--shots 1000", "too short"]),
    ("evaluate --data {data} --out {ws}/ev --max-clips -1", 2, ["--max-clips", ">= 0"]),
    ("evaluate --data {data} --out {ws}/ev --targets 0", 2, ["--targets", "1..10000"]),
    ("evaluate --data {data} --out {ws}/ev --steps 0", 2, ["--steps"]),
    ("evaluate --data {data} --out {ws}/ev --methods magic", 2, ["--methods", "magic"]),
    ("evaluate --data {data} --out {ws}/ev --identities nobody", 2, ["--identities", "nobody"]),
    (
        "evaluate --data {data} --out {ws}/ev --cross {ws}/missing.png --shots 1",
        2,
        ["--cross", "missing.png", "not found"],
    ),
    ("evaluate --data {data} --out {ws}/ev --cross {ws}/wall.png --shots 1", 1, ["wall.png", "no face found"]),
    ("evaluate --data {data} --out {ws}/ev --cross {ws}/face.png --methods static --shots 1", 2, ["--cross", "needs"]),
    ("evaluate --data {data} --out {ws}/ev --model {ws}/missing.pt", 2, ["--model", "not found"]),
    ("evaluate --data {data} --out {ws}/ev --model {ws}/junk.pt --methods ff --shots 1", 1, ["junk.pt"]),
    # -- demo, weights ------------------------------------------------------------------------
    ("demo --port 70000", 2, ["--port", "1..65535"]),
    ("demo --port -1", 2, ["--port", "1..65535"]),
    ("demo --max-upload-mb 0", 2, ["--max-upload-mb", "1..10000"]),
    ("demo --model {ws}/junk.safetensors", 1, ["junk.safetensors"]),
    ("demo --model {ws}/missing.safetensors", 2, ["--model", "not found"]),
    # -- train-mouth ----------------------------------------------------------------------------
    ("train-mouth --data {ws}/missing --out {ws}/m", 2, ["--data", "not found"]),
    ("train-mouth --data {data} --out {ws}/notes.txt", 2, ["--out", "notes.txt"]),
    ("train-mouth --data {data} --out {ws}/m --steps 0", 2, ["--steps", "> 0"]),
    ("train-mouth --out {ws}/m", 2, ["required"]),
    ("train-mouth --data {data} --out {ws}/m --init {ws}/missing.pt", 2, ["--init", "not found"]),
    ("train-mouth --data {data} --out {ws}/m --dilate 0.9", 2, ["--dilate", "0.9"]),
    ("train-mouth --data {data} --out {ws}/m --lip-locator {ws}/missing.pt", 2, ["--lip-locator", "not found"]),
    ("train-mouth --data {data} --out {ws}/m --lip-locator {ckpt}", 1, ["not a lip locator"]),
    (
        "train-mouth --data {data} --out {ws}/m --lip-locator {ws}/junk.pt",
        1,
        ["junk.pt", "not a talkinghead checkpoint"],
    ),
    ("train-mouth --data {data} --out {ws}/m --lips -1", 2, ["--lips", "-1"]),
    ("train-mouth --data {data} --out {ws}/m --side 100", 2, ["--side", "multiple of 16"]),
    ("train-mouth --data {data} --out {ws}/m --hidden-dilate 0.2", 2, ["--hidden-dilate", "at most", "--dilate"]),
    ("train-mouth --data {data} --out {ws}/m --side 8", 2, ["--side", "8"]),
    ("train-mouth --data {data} --out {ws}/m --blend soft", 2, ["--blend", "soft"]),
    ("train-mouth --data {data} --out {ws}/m --lips 2", 2, ["--lips", "only with --lip-locator"]),
    ("train-mouth --data {data} --out {ws}/m --lpips -1", 2, ["--lpips", "-1"]),
    # -- live -----------------------------------------------------------------------------------
    ("live --avatar {ws}/missing.avatar", 2, ["--avatar", "missing.avatar", "not found"]),
    ("live --avatar {ws}/junk.avatar", 1, ["junk.avatar", "not a talkinghead avatar"]),
    ("live --avatar {model}", 1, ["not a talkinghead avatar"]),
    ("live --avatar {avatar} --source {ws}/missing.mp4", 2, ["--source", "missing.mp4", "not found"]),
    ("live --avatar {avatar} --source {ws}/face.png", 2, ["--source", "face.png", "an image"]),
    ("live --avatar {avatar} --source {ws}/broken.mp4", 1, ["--source", "broken.mp4", "unreadable"]),
    ("live --avatar {avatar} --source {ws}/empty.mp4", 2, ["empty.mp4", "empty file"]),
    ("live --avatar {avatar} --source {ws}/adir", 2, ["--source", "is a folder"]),
    ("live --avatar {avatar} --source /dev/video97", 1, ["--source /dev/video97", "no camera"]),
    ("live --avatar {avatar} --port 70000", 2, ["--port", "1..65535"]),
    ("live --avatar {avatar} --runtime tensorflow", 2, ["--runtime", "tensorflow"]),
    ("live --source {ws}/talk.mp4", 2, ["required"]),
    ("weights --frobnicate", 2, ["unrecognized arguments"]),
    ("nosuchcommand", 2, ["invalid choice"]),
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model, tiny_data, carphone, astronaut) -> dict[str, str]:
    """The workspace of bad (and a few good) inputs, and the placeholders of `CASES`."""
    import torch
    from safetensors.torch import load_file, save_file

    from talkinghead.checkpoint import list_checkpoints
    from talkinghead.inference.fitting import fit_avatar
    from talkinghead.inference.motion import Motion
    from talkinghead.media.video import VideoReader

    root = tmp_path_factory.mktemp("bad-input")
    (root / "adir").mkdir()
    (root / "notes.txt").write_text("not a picture\n")
    (root / "fake.png").write_text("a text file named like a picture\n")
    for name in ("empty.png", "empty.mp4", "empty.avatar"):
        (root / name).write_bytes(b"")
    junk = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name in ("junk.safetensors", "junk.pt", "junk.avatar", "junk.npz", "broken.mp4"):
        (root / name).write_bytes(junk)
    Image.fromarray(astronaut).save(root / "face.png")
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(root / "wall.png")
    with VideoReader(carphone) as reader:
        frames = [rgb for _, _, rgb in reader][:12]
    write_video(root / "talk.mp4", frames)
    write_video(root / "noface.mp4", [np.full_like(frames[0], 90)] * 6)
    np.savez(root / "other.npz", x=np.zeros(3))
    (root / "bad.json").write_text('{"model": {"resolution": 128,}}')
    (root / "list.json").write_text("[1, 2]")
    (root / "binary.json").write_bytes(b"\xff\xfe\x00\x01" * 8)
    (root / "big.json").write_text(json.dumps({"model": {"resolution": "big"}}))

    model = Path(tiny_model)
    half = model.read_bytes()
    (root / "half.safetensors").write_bytes(half[: len(half) // 2])
    with open(model, "rb") as f:  # the real model's tensors, half of them gone
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    tensors = load_file(str(model))
    save_file(dict(list(tensors.items())[::2]), str(root / "gutted.safetensors"), metadata=header["__metadata__"])
    save_file({"x": torch.zeros(2)}, str(root / "other.safetensors"), metadata={"format": "something-else"})

    checkpoint = list_checkpoints(model.parent / "checkpoints")[-1]
    data = checkpoint.read_bytes()
    (root / "half.pt").write_bytes(data[: len(data) // 2])
    (root / "plain.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    torch.save({"step": _Canary(str(root / "pwned"))}, root / "code.pt")
    avatar = fit_avatar([root / "face.png"], model=model).save(root / "face.avatar")
    Motion.from_video(root / "talk.mp4").save(root / "talk.npz")
    return {
        "ws": str(root),
        "data": str(tiny_data),
        "model": str(model),
        "ckpt": str(checkpoint),
        "avatar": str(avatar),
    }


class _Canary:
    """Pickles as a call to os.mkdir: loading it must refuse, never run it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()]


@pytest.mark.parametrize("line, code, words", CASES, ids=[c[0].split(" --")[0][:60] for c in CASES])
def test_bad_input_gets_one_clear_line(ws, line, code, words, capsys, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    root = Path(ws["ws"])
    before = _listing(root)
    argv = [part.format(**ws) for part in shlex.split(line)]
    if argv[0] in ("prepare", "train", "fit", "animate", "motion", "evaluate"):  # those with a progress bar
        argv.append("--quiet")
    got, lines = run_cli(argv, capsys)
    command = argv[0] if argv[0] != "nosuchcommand" else ""
    assert lines, "no message"
    message = lines[-1]
    assert not any("Traceback" in item for item in lines), lines
    assert len(lines) == 1, lines
    # argparse reports unknown arguments and commands from the top-level parser, as `talkinghead:`
    assert message.startswith((f"talkinghead {command}:", "talkinghead:")), message
    for word in words:
        assert word.format(**ws) in message, (word, message)
    assert got == code, (got, message)
    assert _listing(root) == before, "the failed command left or changed files"
    assert not (root / "pwned").exists()


def test_corpus_covers_every_subcommand_the_command_line_has():
    """Against the real parser: a subcommand added without bad-input cases fails here."""
    from talkinghead.cli import build_parser

    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {line.split()[0] for line, _, _ in CASES}
    assert subcommands <= covered, sorted(subcommands - covered)
    assert all(sum(line.split()[0] == name for line, _, _ in CASES) >= 3 for name in subcommands - {"weights"})


def test_help_shows_every_range():
    from talkinghead.cli import build_parser

    for action in (a for sub in build_parser()._subparsers._group_actions for a in sub.choices.values()):
        for option in action._actions:
            if getattr(option.type, "__name__", "") == "parse" and option.help is not None:
                assert any(mark in option.help for mark in ("..", ">= ", "> ")), (action.prog, option.dest)


def test_output_folders_are_made_only_when_the_output_is_written(ws, capsys, tmp_path):
    """One rule for every subcommand: a missing folder above an output is created by the write."""
    out = tmp_path / "new" / "deeper" / "talk.npz"
    code, lines = run_cli(["motion", str(Path(ws["ws"]) / "talk.mp4"), "--out", str(out), "--quiet"], capsys)
    assert code == 0 and out.is_file(), lines
    failed = tmp_path / "other" / "talk.npz"
    code, _ = run_cli(["motion", str(Path(ws["ws"]) / "noface.mp4"), "--out", str(failed), "--quiet"], capsys)
    assert code == 1 and not (tmp_path / "other").exists()


def test_an_empty_data_set_says_so(ws, capsys, tmp_path):
    """A prepare that finds no usable clip exits 1 and leaves a data set that says it is empty."""
    out = tmp_path / "ds"
    code, lines = run_cli(["prepare", str(Path(ws["ws"]) / "noface.mp4"), "--out", str(out), "--quiet"], capsys)
    assert code == 1 and "no usable clip" in lines[-1] and "empty" in lines[-1]
    code, lines = run_cli(["train", "--data", str(out), "--config", "tiny", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and lines == [
        f"talkinghead train: {out}: an empty data set (prepare found no usable clip; see its reports/)"
    ]
    assert not (tmp_path / "r").exists()


def test_weights_repairs_a_damaged_cache(tmp_path, monkeypatch, capsys):
    """A truncated or zeroed converted file is found by its checksum and rebuilt from its source."""
    from talkinghead.features import weights

    cache = tmp_path / "cache"
    shutil.copytree(weights.cache_dir(), cache)
    monkeypatch.setenv("TALKINGHEAD_CACHE", str(cache))
    good = (cache / "vgg16.safetensors").read_bytes()
    (cache / "vgg16.safetensors").write_bytes(good[: len(good) // 3])
    (cache / "inception.pt").write_bytes(b"\0" * 1000)
    code, lines = run_cli(["weights"], capsys)
    assert code == 0, lines
    assert sum("damaged" in line and "fetching it again" in line for line in lines) == 2, lines
    assert (cache / "vgg16.safetensors").read_bytes() == good
    assert weights._matches(cache / "inception.pt", cache / "inception.pt.sha256")
    weights.load_vgg16()  # and it loads


def test_weights_fails_clearly_when_the_cache_cannot_be_written(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TALKINGHEAD_CACHE", str(blocker / "cache"))
    code, lines = run_cli(["weights"], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("talkinghead weights: ") and "file" in lines[0]
