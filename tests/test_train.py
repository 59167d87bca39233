"""Meta-training end to end on a tiny config: run folder, exact resume, DDP on CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image  # noqa: F401  (sample grids are opened below)

from talkinghead.checkpoint import list_checkpoints, load_checkpoint, load_model
from talkinghead.config import load_config
from talkinghead.training.train import TrainError, train

SRC = str(Path(__file__).resolve().parents[1] / "src")


def tiny_config(**train):
    settings = [f"train.{k}={json.dumps(v)}" for k, v in train.items()]
    # The feature networks make the content loss; keep them in, they are the point of the loss.
    return load_config("tiny", ["train.batch_size=2", *settings])


def test_tiny_training_writes_a_complete_run(tiny_data, tmp_path):
    result = train(tiny_data, tiny_config(steps=4), tmp_path / "run", progress=False)
    assert result.step == 4
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    assert {"loss/vgg", "loss/face", "loss/adversarial", "loss/feature_matching", "loss/embedding_match"} <= set(
        result.losses
    )
    assert result.losses["embedding/norm"] > 0  # logged, to catch a collapsing embedder
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["resolution"] == 32 and config["num_videos"] == 4
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-000000002.pt", "step-000000004.pt"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    grid = Image.open(run / "samples" / "step-000000004.png")
    assert grid.size == (4 * 32, 2 * 32)  # landmarks | real | generated | shot, one row per episode
    assert any((run / "tensorboard").iterdir())
    state = load_checkpoint(run / "checkpoints" / "step-000000004.pt")  # weights_only=True
    assert state["step"] == 4 and state["config"]["model"]["resolution"] == 32
    # The moving average is kept, lags the live weights, and is what a model file holds.
    live, average = state["embedder_generator"], state["embedder_generator_ema"]
    name = "generator.projection"
    assert not torch.equal(live[name], average[name])
    generator = load_model(run / "checkpoints" / "step-000000004.pt").generator
    torch.testing.assert_close(generator.state_dict()["projection"], average[name])


def test_resume_reproduces_the_uninterrupted_run(tiny_data, tmp_path):
    torch.set_num_threads(1)  # bitwise-identical arithmetic between the two runs
    config = tiny_config(steps=3, checkpoint_every=2)
    straight = train(tiny_data, config, tmp_path / "straight", progress=False)
    first = train(tiny_data, config, tmp_path / "split", progress=False, max_steps=2)
    assert first.step == 2
    with pytest.raises(TrainError, match="--resume"):
        train(tiny_data, config, tmp_path / "split", progress=False)
    resumed = train(tiny_data, config, tmp_path / "split", resume=True, progress=False)
    assert resumed.step == 3
    for a, b in [
        (straight.embedder_generator, resumed.embedder_generator),
        (straight.embedder_generator_ema, resumed.embedder_generator_ema),
        (straight.discriminator, resumed.discriminator),
    ]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    losses = lambda logged: {k: v for k, v in logged.items() if k.startswith("loss/")}  # noqa: E731
    assert losses(straight.losses) == losses(resumed.losses)


def test_video_vectors_start_at_the_embedders_vectors(tiny_data, tmp_path):
    # A fresh run sets W_i to e-hat of clip i, so the embedding match does not drag e-hat toward
    # a near-zero random row (which killed the first model's embedder).
    from talkinghead.data import FaceDataset
    from talkinghead.data.episodes import EpisodeDataset

    config = tiny_config(steps=4)
    result = train(tiny_data, config, tmp_path / "run", progress=False, max_steps=0)
    episodes = EpisodeDataset(FaceDataset(tiny_data), shots=config.train.shots, resolution=32, seed=0)
    items = [episodes[0, clip] for clip in range(4)]
    with torch.no_grad():
        embedder = result.embedder_generator.embedder.eval()
        expected = embedder.embed_shots(
            torch.stack([i["source_frames"] for i in items]), torch.stack([i["source_landmark_images"] for i in items])
        )
    assert expected.norm(dim=1).min() > 0
    torch.testing.assert_close(result.discriminator.W.weight, expected)
    off = train(
        tiny_data, tiny_config(steps=4, init_video_vectors=False), tmp_path / "off", progress=False, max_steps=0
    )
    assert off.discriminator.W.weight.abs().max() < 0.2  # the N(0, 0.02) initialisation


def test_trainable_moves_only_the_named_part_on_top_of_a_model_file(tiny_data, tmp_path):
    """`train.trainable`: a dense-motion network added (`--init`) to a warp model trained without
    one trains; every other weight of E and G stays as the file has it."""
    plain = load_config("tiny", ["model.generator=warp", "model.dense_motion=false", "train.steps=1"])
    train(tiny_data, plain, tmp_path / "base", progress=False)
    start = list_checkpoints(tmp_path / "base" / "checkpoints")[-1]
    settings = [
        "model.generator=warp",
        "model.motion_channels=8",
        "train.steps=2",
        'train.trainable=["generator.motion"]',
    ]
    trained = train(tiny_data, load_config("tiny", settings), tmp_path / "motion", progress=False, init=start)
    file, mine = load_model(start), trained.embedder_generator
    for part in ("embedder", "generator"):
        weights = dict(getattr(mine, part).named_parameters())
        for name, tensor in getattr(file, part).named_parameters():
            assert torch.equal(weights[name], tensor), name
    assert mine.generator.motion.head.weight.abs().sum() > 0  # zero-initialised, now moved
    with pytest.raises(TrainError, match="train.trainable"):
        train(tiny_data, load_config("tiny", ['train.trainable=["nothing"]']), tmp_path / "none", progress=False)


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from talkinghead.config import load_config
from talkinghead.training.train import train
rank_file = sys.argv[3]
config = load_config("tiny", ["train.batch_size=1", "train.steps=3", "train.checkpoint_every=2"])
result = train(sys.argv[1], config, sys.argv[2], progress=False)
state = {**{"eg." + k: v for k, v in result.embedder_generator.state_dict().items()},
         **{"d." + k: v for k, v in result.discriminator.state_dict().items()}}
import os
torch.save(state, rank_file.replace("RANK", os.environ["RANK"]))
"""


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_identical(tiny_data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            str(script),
            str(tiny_data),
            str(tmp_path / "run"),
            str(tmp_path / "rank-RANK.pt"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank-0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank-1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # Training moved the weights, and only rank 0 wrote the run folder.
    initial = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[0])
    assert initial["step"] == 2
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2
