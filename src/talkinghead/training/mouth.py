"""Meta-learning the mouth generator (issue 32): `talkinghead train-mouth`.

The paper's machinery on mouth-aligned crops (data/mouth.py): the embedder reads the K shots'
mouth crops and lips into e-hat, the mouth generator (models/mouth.py) corrects the warped
mouth through AdaIN parameters psi = P e-hat, the projection discriminator scores the mouth with
the target's lips and the clip's row of W, and E, G and D step through the same adversarial
step as the face (gan.py), with its losses (L1, VGG perceptual at the crop's size, hinge
adversarial, feature matching, embedding match). Many samples a second on two cores instead of
one: the crops are 64 px and the networks small.

Run folder: config.json, checkpoints/step-*.pt (the last few; `--resume` continues from the
newest), metrics.jsonl, samples/ and tensorboard/, as `talkinghead train` writes them.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from talkinghead.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from talkinghead.config import LossConfig
from talkinghead.data import FaceDataset
from talkinghead.data.augment import Augment
from talkinghead.data.episodes import episode_batches
from talkinghead.data.mouth import MouthEpisodes
from talkinghead.face.mouth import DILATE
from talkinghead.io import write_json
from talkinghead.media.images import to_uint8
from talkinghead.models import Discriminator, Embedder, GeneratorOutput
from talkinghead.models.mouth import MouthNetworks, MouthSettings, mouth_discriminator
from talkinghead.training.gan import Adversary, Generated, StepInputs, StepOutput, adversarial_step
from talkinghead.training.lips import load_lip_locator
from talkinghead.training.losses import GeneratorLoss
from talkinghead.training.train import Logger, TrainError, log_values


@dataclass
class MouthConfig:
    side: int = 64  # the mouth-aligned crops' side
    blend: str = "region"  # where the synthesis goes (models/mouth.py); runs before it: "learned"
    dilate: float = DILATE  # the region: inner lips grown by this many mouth widths (runs before it: DILATE)
    hidden_dilate: float | None = None  # what of the warp is hidden (models/mouth.py MouthSettings); None: the region
    parting: bool = False  # the lips parted before the generator (models/mouth.py MouthSettings; runs before it: off)
    shots: int = 4  # K per episode
    channels: int = 16
    embedding_dim: int = 64
    batch_size: int = 8
    lr_generator: float = 2e-4
    lr_discriminator: float = 4e-4
    steps: int = 20_000
    seed: int = 0
    init: str = ""  # a train-mouth checkpoint this run started from (warm start), "" for none
    lip_locator: str = ""  # a trained LipLocator (training/lips.py) for the lip loss (`loss.lips`), "" for none
    workers: int = 1  # one loader process makes 200 episodes/s: ten times what a step uses
    amp: bool = True  # bf16 autocast where the CPU runs bf16 natively (2x here)
    log_every: int = 25
    sample_every: int = 250
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    loss: LossConfig = field(
        # The embedding match at 1, not the paper's 80: at 80 the embedder's ReLU output collapsed
        # to zero (and stays dead) before W could move. W starts at the embedder's vectors, as the
        # face's trainer does (`init_person_vectors`); a W left at its random init pulled e-hat to 0.
        # The region term (the L1 inside the target's inner mouth, grown and feathered as pasted)
        # is what makes it invent: the crop-wide L1 and VGG alone left the warp as it was.
        default_factory=lambda: LossConfig(
            vgg=0.1, face=0.0, adversarial=0.1, feature_matching=1.0, embedding_match=1.0, l1=1.0, region=1.0
        )
    )


def settings_of(config: MouthConfig) -> MouthSettings:
    """The networks' shape in a training config."""
    return MouthSettings(
        side=config.side,
        channels=config.channels,
        embedding_dim=config.embedding_dim,
        blend=config.blend,
        dilate=config.dilate,
        hidden_dilate=config.hidden_dilate,
        parting=config.parting,
    )


def generate_mouth(networks: MouthNetworks, batch: dict[str, torch.Tensor]) -> Generated:
    """One step's generator side on a batch of `MouthEpisodes` items."""
    mouth, mask, embedding = networks(
        batch["shots"], batch["shot_lips"], batch["warped"], batch["target_lips"], batch["target_region"],
        batch["target_hidden"],
    )  # fmt: skip
    return Generated(GeneratorOutput(frame=mouth, blend_mask=mask), embedding)


def train_mouth(
    data: str | Path,
    run: str | Path,
    config: MouthConfig = MouthConfig(),
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> int:
    """Meta-learn the mouth networks on a prepared data set; returns the last step. Checkpoints
    every `checkpoint_every` steps and when stopped (Ctrl-C, SIGTERM)."""
    from tqdm import tqdm

    data, run = FaceDataset(data), Path(run)
    found = list_checkpoints(run / "checkpoints")
    if found and not resume:
        raise TrainError(f"{run} already has checkpoints; add --resume to continue it, or choose another --out")
    state = load_checkpoint(found[-1]) if found and resume else None
    if state is not None:  # the run's own settings, but this call's end: --steps extends a finished run
        config = dataclasses.replace(_config_from(state["config"]), steps=config.steps)
    torch.manual_seed(config.seed)
    networks = MouthNetworks(settings_of(config))
    discriminator = mouth_discriminator(settings_of(config), len(data))
    betas = (0.0, 0.999)
    adversary = Adversary(
        discriminator,
        GeneratorLoss(config.loss, load_lip_locator(config.lip_locator) if config.lip_locator else None),
        torch.optim.Adam(networks.parameters(), lr=config.lr_generator, betas=betas),
        torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=betas),
        amp=config.amp,
    )
    step = 0
    if state is not None:
        networks.load_state_dict(state["networks"])
        discriminator.load_state_dict(state["discriminator"])
        adversary.opt_g.load_state_dict(state["opt_g"])
        adversary.opt_d.load_state_dict(state["opt_d"])
        step = int(state["step"])
    else:
        init_person_vectors(networks.embedder, discriminator, data, config)
        if config.init:
            warm_start(networks, discriminator, Path(config.init))
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", {**dataclasses.asdict(config), "num_videos": len(data)})
    batches = _batches(data, config, step)
    logger, last = Logger(run, step), min(config.steps, step + max_steps) if max_steps else config.steps
    stopped = {"signal": None}
    previous = {s: signal.signal(s, lambda n, f: stopped.update(signal=n)) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=last, initial=step, unit="step", desc="mouth", disable=not progress, dynamic_ncols=True)
    window = time.perf_counter()
    try:
        while step < last and stopped["signal"] is None:
            batch = next(batches)
            real = StepInputs(
                batch["target"], batch["target_lips"], person=batch["video_index"], region=batch["target_region"],
                points=batch["target_points"],
            )  # fmt: skip
            out = adversarial_step(partial(generate_mouth, networks, batch), real, adversary)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == last:
                seconds, window = time.perf_counter() - window, time.perf_counter()
                logger.scalars(
                    step, log_values(out, config.log_every / seconds, config.log_every * config.batch_size / seconds)
                )
            if step % config.sample_every == 0 or step == last:
                logger.image(step, _samples(batch, out))
            if step % config.checkpoint_every == 0 or step == last or stopped["signal"] is not None:
                _save(run, step, config, len(data), networks, adversary)
    finally:
        bar.close()
        logger.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return step


@torch.no_grad()
def init_person_vectors(embedder: Embedder, discriminator: Discriminator, data: FaceDataset, config: MouthConfig):
    """Each clip's row of W set to the embedder's e-hat of K of its mouth crops (un-augmented)."""
    episodes = MouthEpisodes(data, shots=config.shots, side=config.side, seed=config.seed, dilate=config.dilate)
    was_training = embedder.training
    embedder.eval()
    for clip in range(len(data)):
        item = episodes[0, clip]
        discriminator.W.weight[clip] = embedder.embed_shots(item["shots"][None], item["shot_lips"][None])[0]
    embedder.train(was_training)


def warm_start(networks: MouthNetworks, discriminator: Discriminator, checkpoint: Path) -> None:
    """A new run's E, G and D from another run's checkpoint: every tensor whose shape matches, and
    the leading part of one that shrank along its first axis (the "learned" blend's four-channel
    head into the "region" blend's three); W only when the number of clips is the same."""
    state = load_checkpoint(checkpoint)
    try:
        sources = (state["networks"], state["discriminator"])
    except (KeyError, TypeError):
        raise TrainError(f"{checkpoint}: not a train-mouth checkpoint (--init)") from None
    for module, source in zip((networks, discriminator), sources):
        target = module.state_dict()
        for key, value in target.items():
            old = source.get(key)
            if old is None or old.shape == value.shape:
                target[key] = value if old is None else old.clone()
                continue
            shrank = value.dim() > 0 and old.shape[1:] == value.shape[1:] and len(old) > len(value)
            if shrank and key != "W.weight":  # W: another data set's clips
                target[key] = old[: len(value)].clone()
        module.load_state_dict(target)


def _batches(data: FaceDataset, config: MouthConfig, step: int):
    episodes = MouthEpisodes(
        data, shots=config.shots, side=config.side, seed=config.seed, augment=Augment(scale=0.05), dilate=config.dilate,
        hidden_dilate=config.hidden_dilate, parting=config.parting,
    )  # fmt: skip
    return episode_batches(
        episodes, len(data), batch_size=config.batch_size, seed=config.seed, start_step=step, workers=config.workers
    )


def _samples(batch: dict[str, torch.Tensor], out: StepOutput, rows: int = 8):
    """`[rows * s, 4 * s, 3] uint8`: lips | warped | generated | real."""
    n = min(rows, len(out.fake))
    columns = [batch["target_lips"][:n], batch["warped"][:n], out.fake[:n], batch["target"][:n]]
    return to_uint8(torch.cat([torch.cat(list(c.float()), 1) for c in columns], 2))


def _save(run: Path, step: int, config: MouthConfig, num_videos: int, networks: nn.Module, adversary: Adversary):
    save_checkpoint(
        checkpoint_path(run / "checkpoints", step),
        {
            "step": step,
            "config": dataclasses.asdict(config),
            "num_videos": num_videos,
            "networks": networks.state_dict(),
            "discriminator": adversary.discriminator.state_dict(),
            "opt_g": adversary.opt_g.state_dict(),
            "opt_d": adversary.opt_d.state_dict(),
        },
    )
    prune_checkpoints(run / "checkpoints", config.keep_checkpoints)


def _config_from(values: dict) -> MouthConfig:
    """A run's stored config; runs from before `blend` learned their mask."""
    return MouthConfig(**{"blend": "learned", **values, "loss": LossConfig(**values["loss"])})
