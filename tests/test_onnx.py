"""ONNX export of an avatar's per-frame path, run by onnxruntime, against PyTorch on the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from talkinghead.checkpoint import load_model, save_model  # noqa: E402
from talkinghead.cli import main  # noqa: E402
from talkinghead.config import load_config  # noqa: E402
from talkinghead.inference.fitting import fit_avatar
from talkinghead.inference.onnx import OnnxAvatar, OnnxFramePath, export_onnx, sample_inputs  # noqa: E402
from talkinghead.model import build_model  # noqa: E402


@pytest.fixture(scope="module")
def warp_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny config with the warp generator (random weights, but trained embedder and D), 3 shots
    fused by the per-pixel prior and the agreement gate of the cpu-warp-lean preset."""
    import torch

    torch.manual_seed(0)
    model = build_model(
        load_config(
            "tiny",
            [
                "model.generator=warp",
                "model.fuse_shots=3",
                "model.fusion_prior=local",
                "model.prior_downsample=2",
                "model.fusion_agreement=0.01",
            ],  # fmt: skip
        ),
        num_videos=1,
    )
    trained = load_model(tiny_model)
    model.embedder.load_state_dict(trained.embedder.state_dict())
    with torch.no_grad():  # a blend that uses the synthesised part too, so the whole graph counts
        for parameter in model.generator.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return save_model(tmp_path_factory.mktemp("warp-model") / "warp.safetensors", model, half=False)


@pytest.mark.parametrize("generator, portable", [("adain", False), ("warp", False), ("warp", True)])
def test_export_matches_pytorch(generator, portable, tiny_model, warp_model, portrait, carphone, tmp_path):
    import onnx

    model = tiny_model if generator == "adain" else warp_model
    inputs = [portrait] if generator == "adain" else [carphone]  # several shots for the warp's fusion
    avatar = fit_avatar(inputs, model=model, shots=4)
    report = export_onnx(avatar, tmp_path / "avatar.onnx", portable=portable)
    assert report["opset"] == 17 and report["max_abs_difference"] < 1e-3, report
    # The spline's solve: one onnxruntime Inverse node (all fused shots in a batch), or standard ops only.
    domains = [node.domain for node in onnx.load(report["path"]).graph.node]
    contrib = domains.count("com.microsoft")
    assert contrib == report["contrib_ops"] == (0 if portable or generator == "adain" else 1), contrib
    if generator == "warp":  # sampling by Gathers (faster in onnxruntime); the shots' encoding is a constant
        ops = [node.op_type for node in onnx.load(report["path"]).graph.node]
        assert "GridSample" not in ops and "Gather" in ops
        assert ops.count("Conv") == _decoder_convs(avatar.generator), ops.count("Conv")
    # The graph's own outputs, not only the report: frames from onnxruntime vs PyTorch, uint8.
    images, points = sample_inputs(avatar)
    session = OnnxFramePath(report["path"])
    got = session(images, points)
    assert got.shape == (len(images), 3, avatar.size, avatar.size)
    torch_frames = np.stack(list(avatar.generate(points)))
    onnx_frames = np.stack(list(OnnxAvatar(avatar, report["path"]).generate(points)))
    assert np.abs(torch_frames.astype(int) - onnx_frames).max() <= 1
    assert onnx_frames.std() > 5  # a picture, not a constant


def _decoder_convs(generator) -> int:
    """Convolutions of the warp generator outside its shot encoder (the graph runs these per frame)."""
    import torch

    convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)]
    return len(convs) - sum(isinstance(m, torch.nn.Conv2d) for m in generator.encoder.modules())


def test_animate_with_onnxruntime_and_the_export_command(tiny_model, portrait, tmp_path, capsys):
    from talkinghead.media.video import VideoReader

    avatar = fit_avatar([portrait], model=tiny_model).save(tmp_path / "a.avatar")
    assert main(["export", "--onnx", str(avatar), "--out", str(tmp_path / "a.onnx")]) == 0
    out = capsys.readouterr().out
    assert "ONNX opset 17" in out and "largest difference from PyTorch" in out
    assert (tmp_path / "a.onnx").stat().st_size > 0
    video = tmp_path / "talk.mp4"
    assert main(["animate", "--avatar", str(avatar), "--out", str(video), "--runtime", "onnx", "--quiet"]) == 0
    with VideoReader(video) as reader:
        assert sum(1 for _ in reader) > 100  # the bundled 6 s motion


def test_export_from_a_model_and_images(tiny_model, portrait, tmp_path, capsys):
    """`export --onnx MODEL --images ...`: the feed-forward avatar of those images, without an avatar file."""
    out = tmp_path / "direct.onnx"
    assert main(["export", "--onnx", str(tiny_model), "--images", str(portrait), "--out", str(out)]) == 0
    assert "ONNX opset 17" in capsys.readouterr().out
    avatar = fit_avatar([portrait], model=tiny_model)
    images, points = sample_inputs(avatar)
    expected = np.stack(list(avatar.generate(points)))
    got = np.stack(list(OnnxAvatar(avatar, out).generate(points)))
    assert np.abs(expected.astype(int) - got).max() <= 1 and got.std() > 5
    assert list(tmp_path.iterdir()) == [out]  # no avatar file written
    assert main(["export", str(tiny_model), "--images", str(portrait), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == (
        "talkinghead export: --images: only with --onnx (a model file and images of one person -> an ONNX graph)"
    )


def test_onnx_frames_at_the_output_size_match_pytorch(warp_model, portrait, tmp_path):
    """The graph runs at the model's size and gives its flow, fusion weights, blend mask and
    synthesised frame; the move is repeated at the avatar's output size beside it, as in PyTorch."""
    avatar = fit_avatar([portrait], model=warp_model, size=96)
    assert avatar.output_size == 96 > avatar.size
    images, points = sample_inputs(avatar)
    report = export_onnx(avatar, tmp_path / "avatar.onnx")
    outputs = OnnxFramePath(report["path"]).outputs(images, points)
    assert {"frame", "flow", "fusion_weights", "blend_mask", "synthesised"} <= set(outputs)
    torch_frames = np.stack(list(avatar.generate(points)))
    onnx_frames = np.stack(list(OnnxAvatar(avatar, report["path"]).generate(points)))
    assert torch_frames.shape == onnx_frames.shape == (len(points), 96, 96, 3)
    assert np.abs(torch_frames.astype(int) - onnx_frames).max() <= 2


@pytest.mark.parametrize("model", [None, "cpu-warp-lean-open-mouth.safetensors"])
def test_the_bundled_mouth_runs_in_onnxruntime_as_in_pytorch(astronaut, model):
    """With a mouth (the bundled model's, trained, and the open-mouth model's region blend),
    `OnnxAvatar` runs the mouth generator in its own graph; an open mouth's frames match
    PyTorch's, and the avatar it was given keeps its own."""
    from talkinghead.inference.onnx import OnnxMouth

    path = None if model is None else Path(__file__).resolve().parents[1] / "models" / model
    avatar = fit_avatar([astronaut], model=path, size=256)
    assert avatar.mouth is not None
    points = np.repeat(avatar.shot_landmarks[:1], 2, 0).copy()
    points[1, 57:60, 1] += 6  # the lower lip down: an open mouth
    points[1, 65:68, 1] += 6
    runner = OnnxAvatar(avatar)
    assert isinstance(runner.avatar.mouth.synthesiser, OnnxMouth) and avatar.mouth.synthesiser is None
    torch_frames, onnx_frames = (np.stack(list(a.generate(points))).astype(int) for a in (avatar, runner))
    assert np.abs(torch_frames - onnx_frames).max() <= 2
    assert np.abs(torch_frames[1] - torch_frames[0]).max() > 30  # the mouth changed between them
