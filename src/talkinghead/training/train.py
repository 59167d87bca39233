"""The meta-learning stage (paper §3.2): `talkinghead train`.

Each step draws a batch of episodes (K shots + a target frame of one clip), embeds the shots into
e-hat, generates the target from its landmarks with psi = P e-hat, then updates E and G against
the content, adversarial, feature-matching and embedding-match losses, and D against the hinge
loss. The same file runs on a CPU, one GPU, or many processes under `torchrun` (DDP: NCCL on GPU,
gloo on CPU); only rank 0 logs and writes.

Run folder:
    RUN/config.json            resolved config, data set, world size
    RUN/checkpoints/step-*.pt  full state (see checkpoint.py); the last few are kept
    RUN/samples/step-*.png     landmarks | real | generated | first shot, one row per episode
    RUN/metrics.jsonl          losses and speed, one JSON object per logged step
    RUN/tensorboard/           the same scalars and grids for TensorBoard (if installed)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from talkinghead.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from talkinghead.config import Config, load_config
from talkinghead.data import FaceDataset
from talkinghead.data.augment import Augment
from talkinghead.data.episodes import EpisodeDataset, episode_batches
from talkinghead.errors import TalkingheadError
from talkinghead.io import atomic_path, remove_stale_temporaries, write_json
from talkinghead.media.images import to_uint8
from talkinghead.model import Model, build_model
from talkinghead.models import Discriminator, Embedder, GeneratorInputs, GeneratorOutput
from talkinghead.training.gan import Adversary, Generated, MovingAverage, StepInputs, StepOutput, adversarial_step
from talkinghead.training.losses import GeneratorLoss


class TrainError(TalkingheadError):
    """A problem with the command (bad data set, run folder in the way): one line, exit code 2."""

    exit_code = 2


class EmbedderGenerator(nn.Module):
    """E and G as one module, so one DDP wrapper covers E, G and the projection P together.

    Takes an episode batch's tensors (DDP scatters plain tensors): shots `[B, K, 3, R, R]`, their
    landmark images (same shape) and points `[B, K, 68, 2]`, the target's landmark image
    `[B, 3, R, R]` and points `[B, 68, 2]`. Returns the generator's output for the target and
    e-hat `[B, D]`.
    """

    def __init__(self, embedder: Embedder, generator: nn.Module):
        super().__init__()
        self.embedder, self.generator = embedder, generator

    def forward(
        self, source_frames, source_landmark_images, source_points, driving_landmark_images, driving_points
    ) -> tuple[GeneratorOutput, torch.Tensor]:
        embedding = self.embedder.embed_shots(source_frames, source_landmark_images)  # [B, D]
        inputs = GeneratorInputs.of(
            driving_landmark_images=driving_landmark_images,
            driving_points=driving_points,
            source_frames=source_frames,
            source_landmark_images=source_landmark_images,
            source_points=source_points,
        )
        return self.generator(inputs, self.generator.adain_params(embedding)), embedding


def episode_inputs(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """`EmbedderGenerator`'s arguments from an episode batch (data/episodes.py)."""
    return (
        batch["source_frames"],
        batch["source_landmark_images"],
        batch["source_points"],
        batch["target_landmark_images"],
        batch["target_points"],
    )


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> tuple[Distributed, torch.device]:
    """Join the process group when started by torchrun; pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
        info = Distributed(dist.get_rank(), world_size, local_rank)
    else:
        info = Distributed()
    device = torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return info, device


def _to(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in batch.items():
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[name] = value
    return out


def sample_grid(batch: dict[str, torch.Tensor], fake: torch.Tensor, rows: int = 4) -> np.ndarray:
    """`[rows * H, 4 * W, 3] uint8`: target landmarks | real target | generated | first shot."""
    n = min(rows, fake.shape[0])
    columns = [batch["target_landmark_images"][:n], batch["target_frame"][:n], fake[:n], batch["source_frames"][:n, 0]]
    grid = torch.cat([torch.cat(list(c.float().cpu()), dim=1) for c in columns], dim=2)  # [3, n*H, 4*W]
    return to_uint8(grid)


class Logger:
    """metrics.jsonl always; TensorBoard when the package is installed. Rank 0 only."""

    def __init__(self, run: Path, step: int = 0):
        self.run = run
        self.metrics = open(run / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run hides what was logged after its checkpoint.
            self.tensorboard = SummaryWriter(str(run / "tensorboard"), purge_step=step or None)
        except ImportError:
            self.tensorboard = None
            print("talkinghead train: tensorboard is not installed; logging to metrics.jsonl only", file=sys.stderr)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.metrics.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in values.items()}}) + "\n")
        self.metrics.flush()
        if self.tensorboard:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, step)

    def image(self, step: int, grid: np.ndarray) -> None:
        from PIL import Image

        path = self.run / "samples" / f"step-{step:09d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(grid).save(path)
        if self.tensorboard:
            self.tensorboard.add_image("samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.metrics.close()
        if self.tensorboard:
            self.tensorboard.close()


def train_step(batch: dict[str, torch.Tensor], state: "TrainState") -> StepOutput:
    """One meta-learning step on an episode batch: E and G, then D
    (`config.train.discriminator_steps` times), as `gan.adversarial_step` does it."""

    def generate() -> Generated:
        output, embedding = state.eg_train(*episode_inputs(batch))
        return Generated(output, embedding)

    real = StepInputs(batch["target_frame"], batch["target_landmark_images"], person=batch["video_index"])
    return adversarial_step(generate, real, state.adversary)


@torch.no_grad()
def init_video_vectors(
    embedder: nn.Module, discriminator: Discriminator, data: FaceDataset, config: Config, device, *, progress: bool
) -> None:
    """Set each video's row of W to the embedder's vector for K of its frames (un-augmented).

    Runs once, before the first step (and before DDP, which then copies rank 0's rows to all).
    """
    from tqdm import tqdm

    t, chunk = config.train, 16
    episodes = EpisodeDataset(
        data, shots=t.shots, resolution=config.model.resolution, thickness=config.model.landmark_thickness, seed=t.seed
    )
    was_training = embedder.training
    embedder.eval()
    for start in tqdm(range(0, len(data), chunk), desc="W from embedder", unit="batch", disable=not progress):
        clips = range(start, min(start + chunk, len(data)))
        items = [episodes[0, clip] for clip in clips]
        frames = torch.stack([item["source_frames"] for item in items]).to(device)
        landmarks = torch.stack([item["source_landmark_images"] for item in items]).to(device)
        discriminator.W.weight[start : start + len(items)] = embedder.embed_shots(frames, landmarks).float()
    embedder.train(was_training)


def _prepare_run(
    run: Path, config: Config, data: Path, num_videos: int, resume: bool, env: Distributed
) -> tuple[Config, dict | None]:
    """Check the run folder; return the config to use and the checkpoint to resume from."""
    checkpoints = list_checkpoints(run / "checkpoints")
    if checkpoints and not resume:
        raise TrainError(f"{run} already has checkpoints; add --resume to continue it, or choose another --out")
    state = None
    if resume:
        state, path = _newest_readable(checkpoints, env)
        if state is None and env.main:
            print(f"talkinghead train: {run}: no checkpoint to resume from; starting a new run", file=sys.stderr)
    if state is not None:
        saved = Config.from_dict(state["config"])
        if saved.model != config.model:
            raise TrainError(f"{path}: was trained with other model settings; resume keeps them")
        if state["num_videos"] != num_videos:
            raise TrainError(
                f"{data} has {num_videos} clips but the run was trained on {state['num_videos']}; use the same data set"
            )
        if state["step"] >= config.train.steps:
            raise TrainError(
                f"{path}: the run is at step {state['step']}, train.steps is {config.train.steps}: nothing to do "
                f"(raise it with --set train.steps=N)"
            )
    return config, state


def _start_run(run: Path, config: Config, data: Path, num_videos: int, state: dict | None, env: Distributed) -> None:
    """Write (or refresh) the run folder: config, no stale temporaries, the log up to the checkpoint."""
    if not env.main:
        return
    run.mkdir(parents=True, exist_ok=True)
    if (run / "checkpoints").is_dir():
        remove_stale_temporaries(run / "checkpoints")  # of a save killed part-way
    _truncate_metrics(run / "metrics.jsonl", int(state["step"]) if state is not None else 0)
    write_json(
        run / "config.json",
        {**config.to_dict(), "data": str(data), "num_videos": num_videos, "world_size": env.world_size},
    )


def _newest_readable(checkpoints: list[Path], env: Distributed) -> tuple[dict | None, Path | None]:
    """The newest checkpoint that loads; a damaged newer one (a disk filled up, a copy cut short)
    is skipped with a note, never deleted."""
    from talkinghead.errors import ModelFileError

    for path in reversed(checkpoints):
        try:
            return load_checkpoint(path), path
        except ModelFileError as error:
            if env.main:
                print(f"talkinghead train: skipping {error}; trying an older checkpoint", file=sys.stderr)
    return None, None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged steps after `step` (a resumed run logs them again), so each step is logged once."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            logged = json.loads(line).get("step", 0)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if logged <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(kept))


@dataclass
class TrainResult:
    step: int
    losses: dict[str, float]  # the last logged values (rank 0; empty elsewhere)
    embedder_generator: EmbedderGenerator  # this process's networks, unwrapped from DDP
    discriminator: Discriminator
    embedder_generator_ema: EmbedderGenerator | None = None  # the moving average (train.ema > 0)
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run early, if any


def train(
    data: str | Path,
    config: Config,
    run: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Meta-train E, G and D on a prepared data set.

    `max_steps` stops early after that many steps in this call (tests, chained jobs);
    `config.train.steps` is where training ends. `init`: a model file or checkpoint whose networks
    start a fresh run wherever their shapes fit (e.g. a new generator beside a trained embedder
    and discriminator); ignored when resuming.
    """
    env, device = setup_distributed()
    try:
        return _train(Path(data), config, Path(run), env, device, resume, progress, max_steps, init)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class TrainState:
    """Everything the loop needs, made by `setup`. `eg` is the plain E+G module, `eg_train` what
    the step calls (DDP-wrapped and maybe compiled); `adversary` holds D (and its DDP wrapper),
    the optimizers and the losses."""

    config: Config
    run: Path
    env: Distributed
    device: torch.device
    num_videos: int
    eg: EmbedderGenerator
    eg_train: nn.Module
    adversary: Adversary
    ema: MovingAverage | None
    batches: Iterator
    channels_last: bool
    step: int


def setup(
    data_dir: Path, config: Config, run: Path, env: Distributed, device, resume: bool, progress: bool, init=None
) -> TrainState:
    """Build (or restore) networks, optimizers, moving average, loss and the episode stream."""
    t = config.train
    data = FaceDataset(data_dir)
    if len(data) < t.batch_size * env.world_size:
        raise TrainError(
            f"{data_dir}: {len(data)} clips are too few for train.batch_size {t.batch_size} on {env.world_size} "
            f"process(es)"
        )
    config, state = _prepare_run(run, config, data_dir, len(data), resume, env)
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    model = build_model(config, num_videos=len(data))
    _freeze(model, t.trainable)
    if init is not None and state is None:
        _initialise_from(model, init, env)
    _start_run(run, config, data_dir, len(data), state, env)  # only now that everything checked out
    channels_last = t.channels_last and device.type == "cuda"
    eg, adversary = _networks(model, device, channels_last)
    step = 0
    if state is not None:
        eg.load_state_dict(state["embedder_generator"])
        adversary.discriminator.load_state_dict(state["discriminator"])
        adversary.opt_g.load_state_dict(state["opt_g"])
        adversary.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
    elif t.init_video_vectors:
        init_video_vectors(eg.embedder, adversary.discriminator, data, config, device, progress=env.main and progress)
    ema = MovingAverage(eg, t.ema, state.get("embedder_generator_ema") if state else None) if t.ema else None
    eg_train = eg
    if env.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        eg_train = nn.parallel.DistributedDataParallel(eg, device_ids=ids)
        adversary.trained = nn.parallel.DistributedDataParallel(adversary.discriminator, device_ids=ids)
    eg_train = torch.compile(eg_train) if t.compile else eg_train
    batches = _episode_stream(data, config, env, step, pin_memory=device.type == "cuda")
    return TrainState(config, run, env, device, len(data), eg, eg_train, adversary, ema, batches, channels_last, step)


def _networks(model: Model, device: torch.device, channels_last: bool) -> tuple[EmbedderGenerator, Adversary]:
    """E+G and D on the device, with their optimizers and the generator's losses."""
    config, t = model.config, model.config.train
    eg = EmbedderGenerator(model.embedder, model.generator).to(device)
    discriminator = model.discriminator.to(device)
    if channels_last:
        eg = eg.to(memory_format=torch.channels_last)
        discriminator = discriminator.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam([p for p in eg.parameters() if p.requires_grad], lr=t.lr_generator, betas=tuple(t.betas))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=t.lr_discriminator, betas=tuple(t.betas))
    loss_fn = GeneratorLoss(config.loss).to(device)
    adversary = Adversary(discriminator, loss_fn, opt_g, opt_d, discriminator_steps=t.discriminator_steps, amp=t.amp)
    return eg, adversary


def _episode_stream(data: FaceDataset, config: Config, env: Distributed, step: int, *, pin_memory: bool) -> Iterator:
    """Endless batches of augmented episodes, this process's share, starting after `step`."""
    t = config.train
    augment = Augment(flip=t.flip, color=t.color_jitter, scale=t.scale_jitter)
    episodes = EpisodeDataset(
        data, shots=t.shots, resolution=config.model.resolution, thickness=config.model.landmark_thickness,
        seed=t.seed, augment=augment,
    )  # fmt: skip
    return episode_batches(
        episodes, len(data), batch_size=t.batch_size, seed=t.seed, start_step=step, workers=t.workers,
        rank=env.rank, world_size=env.world_size, pin_memory=pin_memory,
    )  # fmt: skip


def _train(data_dir, config, run, env, device, resume, progress, max_steps, init=None) -> TrainResult:
    from tqdm import tqdm

    s = setup(data_dir, config, run, env, device, resume, progress, init)
    t = s.config.train
    logger = Logger(run, s.step) if env.main else None
    stop = {"signal": None}

    def on_signal(signum, frame):  # finish the step, save, exit
        stop["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    last = min(t.steps, s.step + max_steps) if max_steps is not None else t.steps
    bar = tqdm(total=last, initial=s.step, unit="step", disable=not (env.main and progress), dynamic_ncols=True)
    logged: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    try:
        while s.step < last and stop["signal"] is None:
            batch = _to(next(s.batches), device, s.channels_last)
            out = train_step(batch, s)
            if s.ema is not None:
                s.ema.update(s.eg)
            s.step += 1
            window_steps += 1
            if env.main:
                bar.update(1)
                if s.step % t.log_every == 0 or s.step == last:
                    seconds = time.perf_counter() - window_start
                    logged = log_values(
                        out, window_steps / seconds, window_steps * t.batch_size * env.world_size / seconds
                    )
                    logger.scalars(s.step, logged)
                    window_start, window_steps = time.perf_counter(), 0
                    shown = ("loss/generator", "loss/discriminator", "loss/vgg", "loss/l1")
                    bar.set_postfix({k[5:]: f"{logged[k]:.3f}" for k in shown if k in logged}, refresh=False)
                if s.step % t.sample_every == 0 or s.step == last:
                    logger.image(s.step, sample_grid(batch, out.fake))
            if s.step % t.checkpoint_every == 0 or s.step == last or stop["signal"] is not None:
                _save(s)
    finally:
        bar.close()
        if logger:
            logger.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop["signal"] is not None and env.main:
        print(f"talkinghead train: stopped at step {s.step}; checkpoint saved, --resume continues", file=sys.stderr)
    ema = s.ema.module if s.ema is not None else None
    return TrainResult(s.step, logged, s.eg, s.adversary.discriminator, ema, stop["signal"])


def _freeze(model, trainable: tuple[str, ...]) -> None:
    """Hold every parameter of E and G whose name (`embedder.…`, `generator.…`) starts with none of
    `trainable` (empty: none held)."""
    if not trainable:
        return
    named = [
        (f"{part}.{name}", p)
        for part in ("embedder", "generator")
        for name, p in getattr(model, part).named_parameters()
    ]
    for name, parameter in named:
        parameter.requires_grad_(name.startswith(trainable))
    if not any(p.requires_grad for _, p in named):
        raise TrainError(
            f"train.trainable {list(trainable)}: no parameter of the embedder or generator starts with these"
        )


def _initialise_from(model, path, env: Distributed) -> None:
    """Copy the networks of a model file into `model` where names and shapes match (not D's W)."""
    from talkinghead.checkpoint import load_model

    source = load_model(path)
    copied = {}
    for name in ("embedder", "generator", "discriminator"):
        if type(getattr(model, name)) is not type(getattr(source, name)):  # another design: nothing fits
            copied[name] = "none (another design)"
            continue
        mine, theirs = getattr(model, name).state_dict(), getattr(source, name).state_dict()
        fits = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape and not k.startswith("W.")}
        getattr(model, name).load_state_dict(fits, strict=False)
        copied[name] = f"{len(fits)}/{len(mine)}"
    if env.main:
        print(
            f"talkinghead train: started from {path}: tensors copied "
            + ", ".join(f"{k} {v}" for k, v in copied.items()),
            file=sys.stderr,
        )


def log_values(out: StepOutput, steps_per_second: float, samples_per_second: float) -> dict[str, float]:
    """The scalars logged for a step: losses, e-hat's norm (a collapsing embedder shows early), D's scores, speed."""
    return {
        "loss/generator": out.loss_generator.item(),
        "loss/discriminator": out.loss_discriminator.item(),
        **{f"loss/{k}": v.item() for k, v in out.terms.items()},
        "embedding/norm": out.embedding.norm(dim=1).mean().item(),
        "score/real": out.real_scores.mean().item(),
        "score/fake": out.fake_scores.mean().item(),
        "speed/steps_per_second": steps_per_second,
        "speed/samples_per_second": samples_per_second,
    }


def _save(s: TrainState) -> None:
    """Checkpoint (rank 0 only) and prune old ones."""
    if not s.env.main:
        return
    save_checkpoint(
        checkpoint_path(s.run / "checkpoints", s.step),
        {
            "step": s.step,
            "config": s.config.to_dict(),
            "num_videos": s.num_videos,
            "embedder_generator": s.eg.state_dict(),
            **({"embedder_generator_ema": s.ema.module.state_dict()} if s.ema is not None else {}),
            "discriminator": s.adversary.discriminator.state_dict(),
            "opt_g": s.adversary.opt_g.state_dict(),
            "opt_d": s.adversary.opt_d.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
    )
    prune_checkpoints(s.run / "checkpoints", s.config.train.keep_checkpoints)


def run_config(run: Path, config: str | None, overrides: list[str], *, resume: bool) -> Config:
    """The config a run uses: a preset or JSON file (default: paper), or, resuming without one,
    the run folder's own settings; then the `section.key=value` overrides."""
    saved = run / "config.json"
    if config is None and resume and saved.is_file():
        try:
            recorded = json.loads(saved.read_text())
            sections = {k: recorded[k] for k in ("model", "loss", "train")}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise TrainError(f"{saved}: not a run's config; give --config") from None
        return Config.from_dict(sections).override(overrides)
    return load_config(config or "paper", overrides)
