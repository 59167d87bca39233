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

import numpy as np
import torch

from .avatar import Avatar
from .drawing import draw_batch
from .errors import UsageError
from .images import to_tensor
from .models import GeneratorInputs, Model


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
    return GeneratorInputs(
        driving_landmark_images=drawn,
        source_frames=frames[others],
        source_landmark_images=drawn[others],
        source_points=target_points[others],
        driving_points=target_points,
    )


def fit_shots(
    model: Model,
    crops: np.ndarray,
    landmarks: np.ndarray,
    options: FitOptions = FitOptions(),
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    callback=None,
) -> Avatar:
    """The few-shot stage on shots that are already face crops; the avatar stays on `device`.

    `crops`: `[T, S, S, 3] uint8` at the model's resolution; `landmarks`: `[T, 68, 2]` in crop
    pixels. The portrait is the first crop. `callback(step, generator, psi)` runs after each
    fine-tuning step (scripts/finetune_sweep.py measures there).
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
        discriminator = copy.deepcopy(model.discriminator).to(device)
        inputs = shot_inputs(frames, landmarks, drawn)
        psi, notes = _finetune(
            config, generator, discriminator, psi, embedding, frames, drawn, inputs, options, steps,
            progress=progress, callback=callback,
        )  # fmt: skip
    box = np.array([0, 0, size], np.float32)
    return Avatar(config, generator.eval(), psi.detach(), crops, landmarks, crops[0], box, steps, notes)


def _finetune(
    config, generator, discriminator, psi, embedding, frames, drawn, inputs, options, steps, *, progress, callback
):
    """Paper §3.3: fine-tune G (with psi') and D (with w' = w0 + e-hat) on the T shots, in place;
    with `psi_only`, psi' and D (G's weights stay as meta-learned)."""
    from tqdm import tqdm

    from .gan import DivergenceGuard, ParameterModule, adversarial_step
    from .losses import GeneratorLoss

    t = config.train
    generator.train(), discriminator.train()
    psi = torch.nn.Parameter(psi.clone())
    # score_with adds w0, so this vector starts at e-hat and w' = w0 + e-hat.
    person = torch.nn.Parameter(embedding.clone())
    loss_fn = GeneratorLoss(replace(config.loss, embedding_match=0.0)).to(frames.device)
    scale = t.finetune_lr_scale if options.lr_scale is None else options.lr_scale
    psi_only = t.finetune_psi_only if options.psi_only is None else options.psi_only
    generator.requires_grad_(not psi_only)
    tuned = [psi] if psi_only else [*generator.parameters(), psi]
    opt_g = torch.optim.Adam(tuned, lr=scale * t.lr_generator, betas=tuple(t.betas))
    opt_d = torch.optim.Adam([*discriminator.parameters(), person], lr=scale * t.lr_discriminator, betas=tuple(t.betas))
    # With decay, step s (from 1) runs at (steps - s + 1) / steps of the full rates: the last
    # step is small, not 0.
    decay = t.finetune_lr_decay if options.lr_decay is None else options.lr_decay
    schedule = (lambda done: 1 - done / steps) if decay else (lambda done: 1.0)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, schedule) for opt in (opt_g, opt_d)]
    # The shots never change: their content-network features are computed once, not every step.
    content = loss_fn.content.real_features(frames) if loss_fn.content is not None else None
    rng = torch.Generator().manual_seed(options.seed)
    count = len(frames)
    # leave=None: the bar stays when it is the only one (fit, animate) and goes when it is nested
    # under another (evaluate's per-clip bar).
    watched = {"generator": generator, "discriminator": discriminator, "free": ParameterModule(psi=psi, person=person)}
    guard = DivergenceGuard(watched, [opt_g, opt_d], schedulers=schedules) if options.guard else None
    for step in tqdm(range(1, steps + 1), unit="step", desc="fine-tuning", leave=None, disable=not progress):
        index = torch.randperm(count, generator=rng)[: min(options.batch_size, count)].to(frames.device)
        vector = person.expand(len(index), -1)
        conditioning = torch.cat([drawn[index]] * 2), torch.cat([vector, vector])
        real_content = None if content is None else {k: [m[index] for m in maps] for k, maps in content.items()}
        out = adversarial_step(
            generate=partial(_generate, generator, inputs.select(index), psi),
            real=frames[index],
            discriminator=discriminator,
            score_frozen=partial(_score, discriminator, conditioning),
            score=partial(_score, discriminator, conditioning),
            loss_fn=loss_fn,
            opt_g=opt_g,
            opt_d=opt_d,
            discriminator_steps=t.discriminator_steps,
            loss_inputs=lambda _, content=real_content: {"real_content": content},
            device=frames.device,
            amp=t.amp,
        )
        if guard is not None:
            guard(step, out)
        for s in schedules:
            s.step()
        if callback is not None:
            callback(step, generator, psi)
    if guard is None:
        return psi, []
    notes = []
    if guard.restored:
        first, times = guard.restored[0][0], len(guard.restored)
        notes.append(
            f"fine-tuning diverged {times} time(s), first at step {first}; each time it went back to its "
            "last good state (and on at half the rates)"
        )
    held_out, mirrored = mirrored_shots(frames, inputs.driving_points, drawn, config.model.landmark_thickness)
    settled = guard.settle(steps, partial(_errors, generator, psi, inputs, frames, held_out, mirrored, _lpips()))
    if settled:
        notes.append(f"after fine-tuning, {settled}")
    return psi, notes


def mirrored_shots(
    frames: torch.Tensor, points: torch.Tensor, drawn: torch.Tensor, thickness: int | None = None
) -> tuple[GeneratorInputs, torch.Tensor]:
    """Poses that fine-tuning never trains on, with a known answer: each shot mirrored. Returns
    generator inputs that make the T mirrored shots from the T shots as they are, and the
    mirrored frames. `frames`, `drawn`: `[T, 3, S, S]` shots and their landmark images; `points`:
    `[T, 68, 2]` pixels; `thickness`: the model's landmark line width (None: drawing's default)."""
    from .data.augment import mirror_landmarks

    T, size = len(frames), frames.shape[-1]
    flipped = mirror_landmarks(points, size)
    flipped_drawn = to_tensor(draw_batch(flipped.cpu().numpy(), size, thickness=thickness or None))
    inputs = GeneratorInputs(
        driving_landmark_images=flipped_drawn.to(frames.device, frames.dtype),
        source_frames=frames[None].expand(T, -1, -1, -1, -1),
        source_landmark_images=drawn[None].expand(T, -1, -1, -1, -1),
        source_points=points[None].expand(T, -1, -1, -1),
        driving_points=flipped,
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
    remade = generator(inputs, psi.expand(len(inputs), -1)).float()
    distances = []
    for start in range(0, len(held_out), chunk):
        part = held_out.select(slice(start, start + chunk))
        moved = generator(part, psi.expand(len(part), -1)).float()
        distances.append(lpips(mirrored[start : start + chunk], moved))
    generator.train(training)
    return {
        "the re-made shots' L1": (remade - frames).abs().mean().item(),
        "the mirrored shots' LPIPS": torch.cat(distances).mean().item(),
    }


@functools.cache
def _lpips():
    """LPIPS (VGG16), loaded once a process, for the guard's `_errors` (on the CPU; `_errors`
    moves it to the frames' device)."""
    from .metrics import LPIPS

    return LPIPS()


def _score(discriminator, conditioning, frames: torch.Tensor):
    """D on `cat([real, fake])` against the shots' landmark images and the person's vector w'."""
    return discriminator.score_with(frames, *conditioning)


def _generate(generator, inputs: GeneratorInputs, psi: torch.Tensor) -> tuple[torch.Tensor, None]:
    return generator(inputs, psi.expand(len(inputs), -1)), None


def main(args) -> int:
    """`talkinghead fit` (arguments parsed by cli.py)."""
    import sys

    from .avatar import model_option
    from .checkpoint import load_model
    from .errors import check_input_file, check_output_file

    out = check_output_file(args.out, (".avatar",))
    for item in args.inputs:
        check_input_file(item, "image or video")
    model = load_model(model_option(args.model))
    options = FitOptions(steps=args.steps, epochs=args.epochs)
    avatar = Avatar.fit(args.inputs, model=model, shots=args.shots, options=options, progress=not args.quiet)
    avatar.save(out)
    for note in avatar.notes:
        print(f"note: {note}", file=sys.stderr)
    kind = "feed-forward" if avatar.steps == 0 else f"fine-tuned for {avatar.steps} steps"
    print(f"wrote {out}: {kind} avatar from {len(avatar.shots)} shot(s) at {avatar.size} px")
    return 0
