"""The few-shot stage (paper §3.3): a meta-learned model + T face crops -> a person's `Avatar`.

Fitting computes e-hat (the mean embedding of the T shots), initialises the person-specific AdaIN
parameters psi' = P e-hat and the discriminator's vector w' = w0 + e-hat, then fine-tunes G (with
psi') and D on the shots with the meta-learning losses less the embedding match, through the
same adversarial step as meta-learning (gan.py); `train.finetune_psi_only` keeps G's weights
and moves psi' alone. `steps=0` skips fine-tuning: the feed-forward (FF) avatar. The model
passed in is never modified.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from talkinghead.config import Config
from talkinghead.errors import UsageError
from talkinghead.face.drawing import draw_batch
from talkinghead.face.points import rescale_points
from talkinghead.inference.avatar import Avatar
from talkinghead.inference.mouth import fit_mouth
from talkinghead.media.images import to_tensor
from talkinghead.model import Model
from talkinghead.models import GeneratorInputs


@dataclass(frozen=True)
class FitOptions:
    """How to fine-tune. `lr_scale`, `lr_decay` and `psi_only` default (None) to what the model
    file stores (`train.finetune_lr_scale`, `train.finetune_lr_decay`, `train.finetune_psi_only`)."""

    steps: int = 0  # fine-tuning steps; 0 with epochs 0: feed-forward
    epochs: float = 0  # instead of steps: passes over the shots (`finetune_steps`)
    batch_size: int = 2
    lr_scale: float | None = None  # times the model's meta-learning rates
    lr_decay: bool | None = None  # both rates fall linearly to 0 over the steps
    psi_only: bool | None = None  # the generator side moves psi' only, not G's weights
    seed: int = 0
    guard: bool = True  # go back to the last good state when fine-tuning diverges (gan.DivergenceGuard)
    mouth: bool = True  # use the model's mouth generator when it has one (False: the warp's mouth)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise UsageError(f"fine-tuning steps must be >= 0, got {self.steps}")
        if self.epochs < 0:
            raise UsageError(f"fine-tuning epochs must be >= 0, got {self.epochs}")
        if self.steps and self.epochs:
            raise UsageError("give fine-tuning steps or epochs, not both")
        if self.batch_size < 1:
            raise UsageError(f"fine-tuning batch size must be >= 1, got {self.batch_size}")

    def total_steps(self, shots: int) -> int:
        return finetune_steps(self.epochs, shots, self.batch_size) if self.epochs else self.steps


def finetune_steps(epochs: float, shots: int, batch_size: int = 2) -> int:
    """Steps that show each of `shots` frames `epochs` times at `batch_size` (at least one step).

    With a fixed number of steps a larger T sees each shot less often (at 200 steps of batch 2,
    8 shots 50 times each, 32 shots 12 times); counting passes over the shots compares T fairly."""
    if epochs < 0:
        raise UsageError(f"fine-tuning epochs must be >= 0, got {epochs}")
    return max(1, math.ceil(epochs * shots / min(batch_size, shots))) if epochs else 0


def shot_inputs(frames: torch.Tensor, points: np.ndarray, drawn: torch.Tensor) -> GeneratorInputs:
    """Generator inputs that re-create each of the T shots from the others (leave one out).

    A generator that reads the shots would otherwise learn to copy the target from itself; with
    one shot there is no other, and it is its own source. `frames`, `drawn`: `[T, 3, S, S]` shots
    and their landmark images; `points`: `[T, 68, 2]`."""
    T = len(frames)
    target_points = torch.from_numpy(np.asarray(points, np.float32)).to(frames.device)
    others = torch.arange(T)[None].expand(T, -1)
    if T > 1:  # row i: every shot but i, [T, T - 1]
        others = others[~torch.eye(T, dtype=torch.bool)].view(T, T - 1)
    others = others.to(frames.device)
    return GeneratorInputs.of(
        driving_landmark_images=drawn,
        driving_points=target_points,
        source_frames=frames[others],
        source_landmark_images=drawn[others],
        source_points=target_points[others],
    )


def fit_shots(
    model: Model,
    crops: np.ndarray,
    landmarks: np.ndarray,
    options: FitOptions = FitOptions(),
    *,
    detail: np.ndarray | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    callback=None,
) -> Avatar:
    """The few-shot stage on shots that are already face crops; the avatar stays on `device`.

    `crops`: `[T, S, S, 3] uint8` at the model's resolution; `landmarks`: `[T, 68, 2]` in crop
    pixels. The portrait is the first crop. `detail`: the same crops at the output size D
    `[T, D, D, 3]` (the renderer moves their pixels; the mouth is fitted on them), or None.
    `callback(step, generator, psi)` runs after each fine-tuning step (scripts/finetune_sweep.py
    measures there).
    """
    config = model.config
    steps = options.total_steps(len(crops))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = config.model.resolution
    frames = to_tensor(crops).to(device)  # [T, 3, S, S]
    drawn = to_tensor(draw_batch(landmarks, size, thickness=config.model.landmark_thickness or None)).to(device)
    # Copies: the caller's networks stay where they are, untouched.
    embedder = copy.deepcopy(model.embedder).to(device).eval()
    generator = copy.deepcopy(model.generator).to(device).eval()
    with torch.no_grad():
        embedding = embedder(frames, drawn).mean(0, keepdim=True)  # e-hat, [1, D]
        psi = generator.adain_params(embedding)  # psi' initialised to P e-hat
    notes: list[str] = []
    if steps > 0:
        shots = ShotTensors(frames, drawn, shot_inputs(frames, landmarks, drawn))
        person = Person(generator, copy.deepcopy(model.discriminator).to(device), psi, embedding)
        notes = _finetune(config, person, shots, options, steps, progress=progress, callback=callback)
        psi = person.psi
    box = np.array([0, 0, size], np.float32)
    if detail is not None and detail.shape[1] <= size:
        detail = None
    mouth = None
    chosen = model.mouth_for(landmarks) if options.mouth else None
    if chosen is not None:
        mouth_crops = detail if detail is not None else crops
        mouth, mouth_notes = fit_mouth(
            chosen, mouth_crops, rescale_points(landmarks, size, mouth_crops.shape[1]), steps=steps, device=device,
            seed=options.seed, progress=progress,
        )  # fmt: skip
        notes = notes + mouth_notes
    return Avatar(config, generator.eval(), psi.detach(), crops, landmarks, crops[0], box, steps, notes, detail, mouth)


def fit_avatar(
    inputs: Sequence[str | Path | np.ndarray],
    *,
    model: str | Path | Model | None = None,
    shots: int = 8,
    options: FitOptions = FitOptions(),
    size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Avatar:
    """Portrait(s) (paths or `[H, W, 3] uint8` arrays) or T frames of videos -> an avatar: the face
    cropper, then the few-shot stage. `model`: a loaded model, a model file, or None for the
    bundled one. `size`: the frames' side (the shots are kept at it, at most what the inputs
    hold); None: the model's resolution."""
    from talkinghead.checkpoint import load_model
    from talkinghead.inference.cropper import FaceCropper

    if not isinstance(model, Model):
        model = load_model(model)
    detail = size if size and size > model.resolution else None
    found = FaceCropper(model.resolution, detail=detail)(inputs, shots)
    avatar = fit_shots(
        model, found.crops, found.landmarks, options, detail=found.detail, device=device, progress=progress
    )
    avatar.portrait, avatar.portrait_box, avatar.notes = found.portrait, found.box, found.notes + avatar.notes
    return avatar


@dataclass
class ShotTensors:
    """The T shots as fine-tuning uses them: frames and landmark images `[T, 3, S, S]` in [-1, 1],
    and the generator inputs that re-make each from the others (`shot_inputs`)."""

    frames: torch.Tensor
    drawn: torch.Tensor
    inputs: GeneratorInputs


@dataclass
class Person:
    """What fine-tuning moves: G (or only psi'), psi' `[1, P]`, D and the person's vector, which
    starts at e-hat `[1, D]` (D adds w0, so w' = w0 + e-hat)."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    psi: torch.Tensor
    embedding: torch.Tensor


def _finetune(
    config: Config, person: Person, shots: ShotTensors, options: FitOptions, steps: int, *, progress: bool, callback
) -> list[str]:
    """Paper §3.3: fine-tune G (with psi') and D (with w' = w0 + e-hat) on the T shots, in place
    (`person.psi` becomes the tuned psi'); with `psi_only`, psi' and D (G's weights stay as
    meta-learned). Returns notes on what the divergence guard did."""
    from tqdm import tqdm

    from talkinghead.training.gan import DivergenceGuard, ParameterModule, StepInputs, adversarial_step

    generator, frames = person.generator, shots.frames
    person.psi = psi = torch.nn.Parameter(person.psi.clone())
    vector = torch.nn.Parameter(person.embedding.clone())
    adversary, schedules = _adversary(config, person, vector, options, steps)
    # The shots never change: their content-network features are computed once, not every step.
    content = adversary.loss_fn.content.real_features(frames) if adversary.loss_fn.content is not None else None
    rng = torch.Generator().manual_seed(options.seed)
    free = ParameterModule(psi=psi, person=vector)
    watched = {"generator": generator, "discriminator": person.discriminator, "free": free}
    guard = (
        DivergenceGuard(watched, [adversary.opt_g, adversary.opt_d], schedulers=schedules) if options.guard else None
    )
    # leave=None: the bar stays when it is the only one (fit, animate) and goes when it is nested
    # under another (evaluate's per-clip bar).
    for step in tqdm(range(1, steps + 1), unit="step", desc="fine-tuning", leave=None, disable=not progress):
        index = torch.randperm(len(frames), generator=rng)[: min(options.batch_size, len(frames))].to(frames.device)
        inputs = shots.inputs.select(index)
        real = StepInputs(
            frames[index], shots.drawn[index], person=vector.expand(len(index), -1),
            real_content=None if content is None else {k: [m[index] for m in maps] for k, maps in content.items()},
        )  # fmt: skip
        out = adversarial_step(partial(_generate, generator, inputs, psi), real, adversary)
        if guard is not None:
            guard(step, out)
        for s in schedules:
            s.step()
        if callback is not None:
            callback(step, generator, psi)
    return [] if guard is None else _settle(guard, config, person, shots, steps)


def _adversary(config: Config, person: Person, vector: torch.nn.Parameter, options: FitOptions, steps: int):
    """Fine-tuning's losses (meta-learning's less the embedding match and, as it always was, the
    synthesis term), optimizers at the model's rates times `lr_scale`, and their schedules."""
    from talkinghead.training.gan import Adversary
    from talkinghead.training.losses import GeneratorLoss

    t, generator, discriminator = config.train, person.generator, person.discriminator
    generator.train(), discriminator.train()
    loss_fn = GeneratorLoss(replace(config.loss, embedding_match=0.0, synthesis=0.0)).to(person.psi.device)
    scale = t.finetune_lr_scale if options.lr_scale is None else options.lr_scale
    psi_only = t.finetune_psi_only if options.psi_only is None else options.psi_only
    generator.requires_grad_(not psi_only)
    tuned = [person.psi] if psi_only else [*generator.parameters(), person.psi]
    opt_g = torch.optim.Adam(tuned, lr=scale * t.lr_generator, betas=tuple(t.betas))
    opt_d = torch.optim.Adam([*discriminator.parameters(), vector], lr=scale * t.lr_discriminator, betas=tuple(t.betas))
    # With decay, step s (from 1) runs at (steps - s + 1) / steps of the full rates: the last
    # step is small, not 0.
    decay = t.finetune_lr_decay if options.lr_decay is None else options.lr_decay
    schedule = (lambda done: 1 - done / steps) if decay else (lambda done: 1.0)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, schedule) for opt in (opt_g, opt_d)]
    adversary = Adversary(discriminator, loss_fn, opt_g, opt_d, discriminator_steps=t.discriminator_steps, amp=t.amp)
    return adversary, schedules


def _settle(guard, config: Config, person: Person, shots: ShotTensors, steps: int) -> list[str]:
    """The guard's notes, after it compared the final state with the good and the starting ones."""
    notes = []
    if guard.restored:
        first, times = guard.restored[0][0], len(guard.restored)
        notes.append(
            f"fine-tuning diverged {times} time(s), first at step {first}; each time it went back to its "
            "last good state (and on at half the rates)"
        )
    points = shots.inputs.driving_points
    held_out, mirrored = mirrored_shots(shots.frames, points, shots.drawn, config.model.landmark_thickness)
    errors = partial(_errors, person.generator, person.psi, shots.inputs, shots.frames, held_out, mirrored, _lpips())
    settled = guard.settle(steps, errors)
    if settled:
        notes.append(f"after fine-tuning, {settled}")
    return notes


def mirrored_shots(
    frames: torch.Tensor, points: torch.Tensor, drawn: torch.Tensor, thickness: int | None = None
) -> tuple[GeneratorInputs, torch.Tensor]:
    """Poses that fine-tuning never trains on, with a known answer: each shot mirrored. Returns
    generator inputs that make the T mirrored shots from the T shots as they are, and the
    mirrored frames. `frames`, `drawn`: `[T, 3, S, S]` shots and their landmark images; `points`:
    `[T, 68, 2]` pixels; `thickness`: the model's landmark line width (None: drawing's default)."""
    from talkinghead.data.augment import mirror_landmarks

    size = frames.shape[-1]
    flipped = mirror_landmarks(points, size)
    flipped_drawn = to_tensor(draw_batch(flipped.cpu().numpy(), size, thickness=thickness or None))
    inputs = GeneratorInputs.of(
        driving_landmark_images=flipped_drawn.to(frames.device, frames.dtype),
        driving_points=flipped,
        source_frames=frames,
        source_landmark_images=drawn,
        source_points=points,
    )
    return inputs, frames.flip(-1)


@torch.no_grad()
def _errors(
    generator,
    psi: torch.Tensor,
    inputs: GeneratorInputs,
    frames: torch.Tensor,
    held_out: GeneratorInputs,
    mirrored: torch.Tensor,
    lpips,
    chunk: int = 8,
) -> dict[str, float]:
    """What the guard's `settle` compares (lower is better): the mean L1 of the T shots, each
    re-made from the others (the frames fine-tuning trains on), and the mean LPIPS of the T
    mirrored shots (`mirrored_shots`: new poses, where a run that learnt the shots by heart and
    lost the face elsewhere shows). In eval mode: spectral norm's power iteration must not move
    between calls."""
    training, lpips = generator.training, lpips.to(frames.device)
    generator.eval()
    remade = generator(inputs, psi.expand(len(inputs), -1)).frame.float()
    distances = []
    for start in range(0, len(held_out), chunk):
        part = held_out.select(slice(start, start + chunk))
        moved = generator(part, psi.expand(len(part), -1)).frame.float()
        distances.append(lpips(mirrored[start : start + chunk], moved))
    generator.train(training)
    return {
        "the re-made shots' L1": (remade - frames).abs().mean().item(),
        "the mirrored shots' LPIPS": torch.cat(distances).mean().item(),
    }


def _generate(generator: torch.nn.Module, inputs: GeneratorInputs, psi: torch.Tensor):
    from talkinghead.training.gan import Generated

    return Generated(generator(inputs, psi.expand(len(inputs), -1)))


@functools.cache
def _lpips():
    """LPIPS (VGG16), loaded once a process, for the guard's `_errors` (on the CPU; `_errors`
    moves it to the frames' device)."""
    from talkinghead.features.lpips import LPIPS

    return LPIPS()
