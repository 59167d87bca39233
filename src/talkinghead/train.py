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

import contextlib
import copy
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

from .checkpoint import checkpoint_path, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from .config import Config, load_config
from .data import FaceDataset
from .data.augment import Augment
from .data.episodes import EpisodeDataset, EpisodeSampler
from .images import to_uint8
from .io import write_json
from .losses import GeneratorLoss, discriminator_hinge_loss, embedding_match_loss
from .models import Discriminator, Embedder, Generator, build_networks


class TrainError(Exception):
    """A problem with the command (bad data set, run folder in the way): one line, exit code 2."""


class EmbedderGenerator(nn.Module):
    """E and G as one module, so one DDP wrapper covers E, G and the projection P together."""

    def __init__(self, embedder: Embedder, generator: Generator):
        super().__init__()
        self.embedder, self.generator = embedder, generator

    def forward(self, source_frames, source_landmarks, target_landmarks) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embedder.embed_shots(source_frames, source_landmarks)  # [B, D]
        fake = self.generator(target_landmarks, self.generator.adain_params(embedding))  # [B, 3, H, W]
        return fake, embedding


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


class MovingAverage:
    """An exponential moving average of a module's weights: `avg <- decay * avg + (1 - decay) * w`.

    Buffers (spectral norm's power-iteration vectors) are copied from the live module.
    """

    def __init__(self, module: nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        if state is not None:
            self.module.load_state_dict(state)
        self._average, self._buffers = list(self.module.parameters()), list(self.module.buffers())

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        torch._foreach_lerp_(self._average, [p.detach() for p in module.parameters()], 1 - self.decay)
        torch._foreach_copy_(self._buffers, list(module.buffers()))


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


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
    columns = [batch["target_landmarks"][:n], batch["target_frame"][:n], fake[:n], batch["source_frames"][:n, 0]]
    grid = torch.cat([torch.cat(list(c.float().cpu()), dim=1) for c in columns], dim=2)  # [3, n*H, 4*W]
    return to_uint8(grid)


class Logger:
    """metrics.jsonl always; TensorBoard when the package is installed. Rank 0 only."""

    def __init__(self, run: Path):
        self.run = run
        self.metrics = open(run / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run / "tensorboard"))
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


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on GPUs that support it (no loss scaling needed), else nothing."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(batch, *, eg, d_raw, discriminator, opt_g, opt_d, loss_fn, config, device):
    """One meta-learning step: E and G, then D (`config.train.discriminator_steps` times).

    `eg` and `discriminator` may be DDP-wrapped (or compiled); `d_raw` is the plain discriminator,
    used in the generator step, where its weights get no gradient and DDP wants one forward per
    backward. Returns (generator loss, hinge loss, weighted terms, fake, real scores, fake scores).
    """
    t = config.train
    real, landmarks, videos = batch["target_frame"], batch["target_landmarks"], batch["video_index"]
    pairs = torch.cat([landmarks, landmarks]), torch.cat([videos, videos])

    requires_grad(d_raw, False)
    with _autocast(device, t.amp):
        fake, embedding = eg(batch["source_frames"], batch["source_landmarks"], landmarks)
        scores, features = d_raw(torch.cat([real, fake]), *pairs)
        real_scores, fake_scores = scores.chunk(2)
        loss_g, terms = loss_fn(
            real=real,
            fake=fake,
            fake_scores=fake_scores,
            real_features=[f.chunk(2)[0] for f in features],
            fake_features=[f.chunk(2)[1] for f in features],
            embedding=embedding,
            video_vector=d_raw.W(videos),
        )
    opt_g.zero_grad(set_to_none=True)
    loss_g.float().backward()
    opt_g.step()

    # Discriminator step(s), on the frames just generated.
    requires_grad(d_raw, True)
    fake, embedding = fake.detach(), embedding.detach().float()
    for _ in range(t.discriminator_steps):
        with _autocast(device, t.amp):
            scores, _ = discriminator(torch.cat([real, fake]), *pairs)
            loss_d = hinge = discriminator_hinge_loss(*scores.float().chunk(2))
        if config.loss.embedding_match:
            # The W_i half of L_MCH (the generator step moved e-hat toward W_i).
            loss_d = loss_d + config.loss.embedding_match * embedding_match_loss(embedding, d_raw.W(videos))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    # Logged so a collapsing embedder (e-hat -> 0, identity lost) shows early.
    terms = {**terms, "embedding_norm": embedding.norm(dim=1).mean()}
    return loss_g, hinge, terms, fake, real_scores, fake_scores


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
        landmarks = torch.stack([item["source_landmarks"] for item in items]).to(device)
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
    if resume and checkpoints:
        state = load_checkpoint(checkpoints[-1])
        saved = Config.from_dict(state["config"])
        if saved.model != config.model:
            raise TrainError(f"{checkpoints[-1]}: was trained with other model settings; resume keeps them")
        if state["num_videos"] != num_videos:
            raise TrainError(
                f"{data} has {num_videos} clips but the run was trained on {state['num_videos']}; use the same data set"
            )
    if env.main:
        run.mkdir(parents=True, exist_ok=True)
        write_json(
            run / "config.json",
            {**config.to_dict(), "data": str(data), "num_videos": num_videos, "world_size": env.world_size},
        )
    return config, state


@dataclass
class TrainResult:
    step: int
    losses: dict[str, float]  # the last logged values (rank 0; empty elsewhere)
    embedder_generator: EmbedderGenerator  # this process's networks, unwrapped from DDP
    discriminator: Discriminator
    embedder_generator_ema: EmbedderGenerator | None = None  # the moving average (train.ema > 0)


def train(
    data: str | Path,
    config: Config,
    run: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> TrainResult:
    """Meta-train E, G and D on a prepared data set.

    `max_steps` stops early after that many steps in this call (tests, chained jobs);
    `config.train.steps` is where training ends.
    """
    env, device = setup_distributed()
    try:
        return _train(Path(data), config, Path(run), env, device, resume, progress, max_steps)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(data_dir, config, run, env, device, resume, progress, max_steps) -> TrainResult:
    from tqdm import tqdm

    t = config.train
    data = FaceDataset(data_dir)
    config, state = _prepare_run(run, config, data_dir, len(data), resume, env)
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    embedder, generator, discriminator = build_networks(config.model, num_videos=len(data))
    eg = EmbedderGenerator(embedder, generator).to(device)
    discriminator = discriminator.to(device)
    gpu = device.type == "cuda"
    channels_last = t.channels_last and gpu
    if channels_last:
        eg, discriminator = (
            eg.to(memory_format=torch.channels_last),
            discriminator.to(memory_format=torch.channels_last),
        )
    opt_g = torch.optim.Adam(eg.parameters(), lr=t.lr_generator, betas=tuple(t.betas))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=t.lr_discriminator, betas=tuple(t.betas))
    step = 0
    if state is not None:
        eg.load_state_dict(state["embedder_generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
    elif t.init_video_vectors:
        init_video_vectors(eg.embedder, discriminator, data, config, device, progress=env.main and progress)
    ema = MovingAverage(eg, t.ema, state.get("embedder_generator_ema") if state else None) if t.ema else None
    loss_fn = GeneratorLoss(config.loss).to(device)

    # D in the generator step: the unwrapped module (its weights get no gradient there, and DDP
    # wants one forward per backward); in the discriminator step: the DDP wrapper.
    d_raw = discriminator
    if env.world_size > 1:
        ids = [device.index] if gpu else None
        eg = nn.parallel.DistributedDataParallel(eg, device_ids=ids)
        discriminator = nn.parallel.DistributedDataParallel(discriminator, device_ids=ids)
    eg_module = eg.module if isinstance(eg, nn.parallel.DistributedDataParallel) else eg
    eg_train = torch.compile(eg) if t.compile else eg

    augment = Augment(flip=t.flip, color=t.color_jitter, scale=t.scale_jitter)
    episodes = EpisodeDataset(
        data,
        shots=t.shots,
        resolution=config.model.resolution,
        thickness=config.model.landmark_thickness,
        seed=t.seed,
        augment=augment,
    )
    sampler = EpisodeSampler(
        len(data), batch_size=t.batch_size, seed=t.seed, rank=env.rank, world_size=env.world_size, start_step=step
    )
    loader = torch.utils.data.DataLoader(
        episodes,
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=t.workers,
        pin_memory=gpu,
        persistent_workers=t.workers > 0,
        multiprocessing_context="spawn" if t.workers > 0 else None,
    )

    logger = Logger(run) if env.main else None
    stop = {"signal": None}

    def on_signal(signum, frame):  # finish the step, save, exit
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    last = min(t.steps, step + max_steps) if max_steps is not None else t.steps
    bar = tqdm(total=last, initial=step, unit="step", disable=not (env.main and progress), dynamic_ncols=True)
    logged: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    batches: Iterator = iter(loader)
    try:
        while step < last and stop["signal"] is None:
            batch = _to(next(batches), device, channels_last)
            loss_g, hinge, terms, fake, real_scores, fake_scores = train_step(
                batch,
                eg=eg_train,
                d_raw=d_raw,
                discriminator=discriminator,
                opt_g=opt_g,
                opt_d=opt_d,
                loss_fn=loss_fn,
                config=config,
                device=device,
            )

            if ema is not None:
                ema.update(eg_module)
            step += 1
            window_steps += 1
            if env.main:
                bar.update(1)
                if step % t.log_every == 0 or step == last:
                    elapsed = time.perf_counter() - window_start
                    logged = {
                        "loss/generator": loss_g.item(),
                        "loss/discriminator": hinge.item(),
                        **{f"loss/{k}": v.item() for k, v in terms.items() if k != "embedding_norm"},
                        "embedding/norm": terms["embedding_norm"].item(),
                        "score/real": real_scores.detach().float().mean().item(),
                        "score/fake": fake_scores.detach().float().mean().item(),
                        "speed/steps_per_second": window_steps / elapsed,
                        "speed/samples_per_second": window_steps * t.batch_size * env.world_size / elapsed,
                    }
                    logger.scalars(step, logged)
                    window_start, window_steps = time.perf_counter(), 0
                    main = {
                        k.split("/")[1]: v
                        for k, v in logged.items()
                        if k in ("loss/generator", "loss/discriminator", "loss/vgg", "loss/l1")
                    }
                    bar.set_postfix({k: f"{v:.3f}" for k, v in main.items()}, refresh=False)
                if step % t.sample_every == 0 or step == last:
                    logger.image(step, sample_grid(batch, fake))
            if step % t.checkpoint_every == 0 or step == last or stop["signal"] is not None:
                _save(run, step, config, len(data), eg_module, ema, d_raw, opt_g, opt_d, env)
                if env.main:
                    prune_checkpoints(run / "checkpoints", t.keep_checkpoints)
    finally:
        bar.close()
        if logger:
            logger.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop["signal"] is not None and env.main:
        print(f"talkinghead train: stopped at step {step}; checkpoint saved, --resume continues", file=sys.stderr)
    return TrainResult(step, logged, eg_module, d_raw, ema.module if ema is not None else None)


def _save(run, step, config, num_videos, eg_module, ema, d_raw, opt_g, opt_d, env) -> None:
    if not env.main:
        return
    save_checkpoint(
        checkpoint_path(run / "checkpoints", step),
        {
            "step": step,
            "config": config.to_dict(),
            "num_videos": num_videos,
            "embedder_generator": eg_module.state_dict(),
            **({"embedder_generator_ema": ema.module.state_dict()} if ema is not None else {}),
            "discriminator": d_raw.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
    )


def main(args) -> int:
    """`talkinghead train` (arguments parsed by cli.py)."""
    from .data import ShardError
    from .features import WeightsError

    try:
        saved = Path(args.out) / "config.json"
        if args.config is None and args.resume and saved.is_file():
            # Resuming without --config: the run's own settings (plus any --set).
            recorded = json.loads(saved.read_text())
            config = Config.from_dict({k: recorded[k] for k in ("model", "loss", "train")}).override(args.set)
        else:
            config = load_config(args.config or "paper", args.set)
        train(args.data, config, args.out, resume=args.resume, progress=not args.quiet, max_steps=args.max_steps)
    except (TrainError, ValueError, ShardError, WeightsError) as error:
        print(f"talkinghead train: {error}", file=sys.stderr)
        return 2
    return 0
