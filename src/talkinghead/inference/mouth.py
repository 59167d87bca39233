"""The mouth in use (issue 32): a person's mouth generator, fitted on the T shots, and its paste
into rendered frames at the output size.

    mouth = fit_mouth(model.mouth, detail_shots, landmarks, steps=100)   # psi' = P e-hat (+ fine-tuning)
    frames = mouth.paste(frames, driving_landmarks)                      # [B, 3, D, D] in [-1, 1]

Per frame, the rendered frame's mouth is cut as a mouth-aligned crop (face/mouth.py) on the
driving landmarks, the generator corrects it from the driving lips drawn and psi', and its
output goes back into the frame inside the driving inner-lip polygon, dilated and feathered (and,
in older files whose generator learned a mask, only where that mask says it synthesised):
elsewhere the frame keeps its pixels at full resolution (the crop is 64 px; a 512 px frame's mouth
is about 4x that).

Fitting follows the paper's few-shot stage on the mouth crops: e-hat of the T shots, psi' = P
e-hat, w' = w0 + e-hat, then (T >= 2 and steps > 0) G, psi' and D fine-tuned on pairs among the
shots (each shot re-made from each other shot, up to 8, warped to its lips, as in meta-learning)
with the divergence guard; held out for the guard: the same pairs mirrored.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.face.mouth import (
    FEATHER,
    INNER_LIPS,
    align_mouth,
    draw_lips,
    hidden_share,
    lip_gap,
    mouth_transform,
    region_and_hidden,
)
from talkinghead.inference.render import by_opencv
from talkinghead.media.images import to_tensor
from talkinghead.model import Mouth
from talkinghead.models.mouth import MouthGenerator, MouthSettings

# Fine-tuning: half the meta-learning rate for G (training/mouth.py MouthConfig), D's rate, and its
# losses less the embedding match.
LR_GENERATOR, LR_DISCRIMINATOR, BATCH = 1e-4, 4e-4, 4
SOURCES = 8  # fine-tuning pairs: each shot re-made from up to this many others (`_pairs`)


@dataclass
class FittedMouth:
    """A person's mouth generator (spectral norm folded in), its psi' `[1, P]` and the widest lip gap
    of its shots (`shot_opening`: how much of the frame's mouth the generator sees, face/mouth.py
    `hidden_share`). `synthesiser`:
    the same synthesis run elsewhere, `(crops, lips, hidden) -> (mouth, learned mask or None)`,
    float32 (onnxruntime: onnx.py `OnnxMouth`, set by `OnnxAvatar`); None: this generator."""

    settings: MouthSettings
    generator: MouthGenerator
    psi: torch.Tensor
    steps: int = 0
    shot_opening: float = 0.0
    synthesiser: Callable | None = field(default=None, repr=False, compare=False)

    def to(self, device=None, dtype=None) -> "FittedMouth":
        self.generator.to(device=device, dtype=dtype)
        self.psi = self.psi.to(device=device, dtype=dtype)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What an avatar file stores: `generator.*` (plain weights) and `psi`."""
        return {**{f"generator.{k}": v for k, v in self.generator.state_dict().items()}, "psi": self.psi}

    def metadata(self) -> dict:
        return {**dataclasses.asdict(self.settings), "steps": self.steps, "shot_opening": self.shot_opening}

    @classmethod
    def from_state(cls, metadata: dict, tensors: dict[str, torch.Tensor]) -> "FittedMouth":
        """The inverse of `state_dict` and `metadata`."""
        settings = MouthSettings.of(metadata)
        generator = _plain(settings)
        generator.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("generator.")})
        steps, opening = int(metadata.get("steps", 0)), float(metadata.get("shot_opening", 0.0))
        return cls(settings, generator, tensors["psi"], steps, opening)

    @torch.inference_mode()
    def paste(
        self, frames: torch.Tensor, landmarks: np.ndarray, *, inplace: bool = False, unseen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`frames` `[B, 3, D, D]` in [-1, 1] with the mouth made inside the driving inner lips;
        `landmarks`: `[B, 68, 2]` driving landmarks in the frames' pixels. `inplace`: into `frames`
        themselves (a caller that owns them saves a copy of the batch). `unseen` `[B, 1, D, D]`: with
        `settings.parting`, what face/parting.py `part_lips` found no shot shows, hidden from the generator (without
        it, the region as far as the driving lips open wider than the shots, `hidden_share`)."""
        s, size = self.settings.side, frames.shape[-1]
        matrices = np.stack([mouth_transform(points, s) for points in landmarks])  # frame px -> crop px
        crops = cut_mouths(frames, matrices, s)
        points = np.einsum("bij,bkj->bki", matrices[:, :, :2], landmarks) + matrices[:, None, :, 2]
        lips = to_tensor(np.stack([draw_lips(p, s) for p in points])).to(frames.device, frames.dtype)
        # The synthesis itself, not the generator's blend with the 64 px crop: blended here into the
        # frame's own pixels under the same mask (the blend applied twice would square it).
        alpha, hidden = _masks(points, self.settings, crops.device, crops.dtype)
        if unseen is not None:
            hidden = cut_mouths(unseen.to(crops.dtype), matrices, s)
        else:
            hide = torch.from_numpy(hidden_share(lip_gap(landmarks), self.shot_opening)).to(alpha.device, alpha.dtype)
            hidden = hidden * hide[:, None, None, None]
        mouth, learned = self.synthesise(crops, lips, hidden)
        if learned is not None:
            alpha = alpha * learned
        out = frames if inplace else frames.clone()
        for b in range(len(frames)):
            box = _paste_box(landmarks[b], matrices[b], size, self.settings.dilate)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            moved = _into_box(mouth[b : b + 1], matrices[b], box, "border")
            weight = _into_box(alpha[b : b + 1], matrices[b], box, "zeros")
            region = out[b : b + 1, :, y0:y1, x0:x1]
            out[b : b + 1, :, y0:y1, x0:x1] = torch.lerp(region, moved.clamp(-1, 1), weight)
        return out

    def synthesise(
        self, crops: torch.Tensor, lips: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The generator's synthesis (`MouthGenerator.synthesise`) of `[B, 3, s, s]` crops and lips,
        `hidden` `[B, 1, s, s]` of the crops unseen, with this person's psi', by `synthesiser` when set."""
        if self.synthesiser is None:
            return self.generator.synthesise(crops, lips, self.psi.expand(len(crops), -1), hidden)
        mouth, learned = self.synthesiser(crops.float(), lips.float(), hidden.float())
        cast = partial(torch.Tensor.to, device=crops.device, dtype=crops.dtype)
        return cast(mouth), None if learned is None else cast(learned)


def cut_mouths(frames: torch.Tensor, matrices: np.ndarray, side: int) -> torch.Tensor:
    """`[B, 3, side, side]` mouth-aligned crops of `[B, 3, H, W]` frames by `[B, 2, 3]` similarities
    (frame px -> crop px), sampled at the frame's own scale and area-averaged down (no aliasing)."""
    H, W = frames.shape[-2:]
    scale = float(np.sqrt(np.abs(np.linalg.det(matrices[:, :, :2]))).min())  # crop px per frame px
    k = max(1, int(round(1 / scale)))
    fine = (np.arange(side * k) + 0.5) / k - 0.5  # crop px of the fine samples
    if by_opencv(frames):
        return _cut_by_opencv(frames, matrices, side, k, fine)
    grid = torch.cat([_grid(cv2.invertAffineTransform(m), fine, fine, (W, H)) for m in matrices])
    crops = F.grid_sample(
        frames, grid.to(frames.dtype), mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return F.avg_pool2d(crops, k) if k > 1 else crops


def _into_box(crop: torch.Tensor, matrix: np.ndarray, box: tuple[int, int, int, int], padding: str) -> torch.Tensor:
    """`[1, C, y1 - y0, x1 - x0]`: a `[1, C, s, s]` crop sampled (bilinear) at the frame's pixels of
    `box` (x0, y0, x1, y1), mapped into it by `matrix` (frame px -> crop px); outside the crop,
    `padding` ("border" or "zeros", as `grid_sample`'s). On a CPU in float32 by `cv2.warpAffine`,
    the same sampling in a fraction of the time."""
    x0, y0, x1, y1 = box
    if not by_opencv(crop):
        grid = _grid(matrix, np.arange(x0, x1), np.arange(y0, y1), crop.shape[-2:][::-1]).to(crop.device, crop.dtype)
        return F.grid_sample(crop, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    shifted = matrix.astype(np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)  # box px -> crop px
    border = cv2.BORDER_REPLICATE if padding == "border" else cv2.BORDER_CONSTANT
    image = crop[0].permute(1, 2, 0).contiguous().numpy()
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(image, shifted, (x1 - x0, y1 - y0), flags=flags, borderMode=border, borderValue=0)
    return torch.from_numpy(moved.reshape(y1 - y0, x1 - x0, -1)).permute(2, 0, 1)[None]


def _reach(positions: np.ndarray, size: int) -> tuple[int, int]:
    """The pixel range [first, last) that bilinear samples at `positions` read from a side of
    `size`: the whole side when any lies outside it."""
    low, high = float(positions.min()), float(positions.max())
    if low < 0 or high > size - 1:
        return 0, size
    return max(0, int(np.floor(low))), min(size, int(np.ceil(high)) + 2)


def _cut_by_opencv(frames: torch.Tensor, matrices: np.ndarray, side: int, k: int, fine: np.ndarray) -> torch.Tensor:
    """`cut_mouths` on a CPU in float32: the same fine samples by `cv2.remap` (reflected at the
    frame's edges, as `grid_sample`'s reflection padding) from only the frame's pixels they reach,
    then `cv2.resize`'s area average, k x k exactly (within 2e-5 of the PyTorch path, on noise
    too; at a 499 px paste a third faster; docs/benchmarks.md)."""
    H, W = frames.shape[-2:]
    out = np.empty((len(frames), side, side, frames.shape[1]), np.float32)
    for b, matrix in enumerate(matrices):
        inverse = cv2.invertAffineTransform(matrix).astype(np.float32)  # crop px -> frame px
        xs, ys = _mapped(inverse, fine, fine)
        # The frame's pixels the samples reach; along an axis they leave the frame on, all of it
        # (reflected samples can land anywhere on it).
        x0, x1 = _reach(xs, W)
        y0, y1 = _reach(ys, H)
        region = frames[b, :, y0:y1, x0:x1].permute(1, 2, 0).contiguous().numpy()
        xs -= np.float32(x0)
        ys -= np.float32(y0)
        samples = cv2.remap(region, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if k > 1:
            samples = cv2.resize(samples, (side, side), interpolation=cv2.INTER_AREA)
        out[b] = samples.reshape(side, side, -1)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _masks(
    points: np.ndarray, settings: MouthSettings, device="cpu", dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, 1, s, s]` each, on `device` in `dtype`: the region the mouth is pasted in and the
    part of it whose warp may be hidden (face/mouth.py `region_and_hidden` of `[B, 68, 2]` crop-pixel
    landmarks, by the mouth's `dilate` and `hidden_dilate`)."""
    masks = region_and_hidden(points, settings.side, settings.dilate, settings.hidden_dilate)
    return tuple(torch.from_numpy(m)[:, None].to(device, dtype) for m in masks)


def _paste_box(landmarks: np.ndarray, matrix: np.ndarray, size: int, dilate: float) -> tuple[int, int, int, int] | None:
    """The frame's pixels the paste can change: the inner lips' box grown by the dilation and
    feather (in frame px), clipped to the frame; None when it is empty."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    margin = (dilate + 2 * FEATHER) * np.linalg.norm(landmarks[54] - landmarks[48]) + 2 / scale
    low, high = landmarks[INNER_LIPS].min(0) - margin, landmarks[INNER_LIPS].max(0) + margin
    x0, y0 = (int(max(0, np.floor(v))) for v in low)
    x1, y1 = (int(min(size, np.ceil(v))) for v in high)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _grid(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """`[1, len(ys), len(xs), 2]` grid_sample coordinates (align_corners=False) in an image of
    `size` (width, height) for the pixels (xs x ys) of another, mapped by the `[2, 3]` `matrix`
    (those pixels -> the image's pixels)."""
    # The affine map composed with pixel -> normalised first, then evaluated once.
    scale = np.array([[2 / size[0]], [2 / size[1]]])
    m = matrix * scale
    m[:, 2] += scale[:, 0] / 2 - 1
    return torch.from_numpy(np.stack(_mapped(m, xs, ys), -1))[None]


def _mapped(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels (xs x ys) mapped by a `[2, 3]` affine `matrix`: their x and y, `[len(ys), len(xs)]`
    float32 each, evaluated once per axis and summed by broadcasting (in float32: a grid of
    192 x 192 no longer costs a millisecond)."""
    xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)

    def along(row: np.ndarray) -> np.ndarray:
        return ((row[0] * xs)[None, :] + (row[1] * ys + row[2])[:, None]).astype(np.float32, copy=False)

    return along(matrix[0]), along(matrix[1])


# -- fitting ------------------------------------------------------------------------------------


def mouth_shots(crops: np.ndarray, landmarks: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The shots' mouth-aligned crops `[T, side, side, 3] uint8` and their landmarks `[T, 68, 2]`
    in crop pixels, from face crops `[T, S, S, 3]` and their landmarks in those crops' pixels."""
    aligned = [align_mouth(crop, points.astype(np.float64), side) for crop, points in zip(crops, landmarks)]
    return np.stack([c for c, _, _ in aligned]), np.stack([p for _, p, _ in aligned])


def fit_mouth(
    mouth: Mouth,
    crops: np.ndarray,
    landmarks: np.ndarray,
    *,
    steps: int = 0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> tuple[FittedMouth, list[str]]:
    """The few-shot stage of the mouth on face crops `[T, S, S, 3] uint8` (any S; the detail shots
    give the sharpest mouths) and their landmarks `[T, 68, 2]` in those pixels. Returns the fitted
    mouth (on `device`) and notes. `steps` of fine-tuning when T >= 2 (with one shot there are no
    pairs to learn from: feed-forward)."""
    s = mouth.settings.side
    shots, points = mouth_shots(crops, landmarks, s)
    lips = np.stack([draw_lips(p, s) for p in points])
    frames, drawn = to_tensor(shots).to(device), to_tensor(lips).to(device)
    networks = copy.deepcopy(mouth.networks).to(device).eval()
    with torch.no_grad():
        embedding = networks.embedder(frames, drawn).mean(0, keepdim=True)  # e-hat [1, D]
        psi = networks.generator.adain_params(embedding)  # psi' = P e-hat
    generator, notes = networks.generator, []
    if steps > 0 and len(shots) >= 2:
        pairs = _pairs(shots, points, mouth.settings, seed=seed)
        discriminator = copy.deepcopy(mouth.discriminator).to(device)
        psi, notes = _finetune(generator, discriminator, psi, embedding, pairs, steps, seed=seed, progress=progress)
    elif steps > 0:
        notes = ["the mouth was not fine-tuned: one shot has no pairs to learn from (feed-forward)"]
    opening = float(lip_gap(points).max())
    fitted = FittedMouth(
        mouth.settings, _frozen(generator, mouth.settings), psi.detach(), steps if not notes else 0, opening
    )
    return fitted.to(device), notes


def _frozen(generator: MouthGenerator, settings: MouthSettings) -> MouthGenerator:
    """A copy with spectral norm folded into plain weights (the same output, no power iteration),
    in eval mode."""
    frozen = settings.generator()
    frozen.load_state_dict(generator.state_dict())
    _fold(frozen)
    return frozen.to(next(generator.parameters()).device).eval().requires_grad_(False)


def _plain(settings: MouthSettings) -> MouthGenerator:
    """A mouth generator with plain weights (no spectral norm), to load a frozen one's state into."""
    generator = settings.generator()
    _fold(generator)
    return generator.eval().requires_grad_(False)


def _fold(module: torch.nn.Module) -> None:
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


@dataclass
class Pairs:
    """Self-reconstruction pairs among the shots, `[T, 3, s, s]` in [-1, 1] each: target i, the
    shot nearest it warped to its lips, and its lips drawn; `region` `[T, 1, s, s]`: its inner
    mouth as pasted (where the region loss weighs); `hidden`: what of it the generator does not see."""

    target: torch.Tensor
    warped: torch.Tensor
    lips: torch.Tensor
    region: torch.Tensor
    hidden: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.target, self.warped, self.lips, self.region, self.hidden

    def mirrored(self) -> "Pairs":
        return Pairs(*(t.flip(-1) for t in self.tensors()))


def _pairs(
    shots: np.ndarray, points: np.ndarray, settings: MouthSettings, *, sources: int = SOURCES, seed: int = 0
) -> Pairs:
    """Each shot re-made from up to `sources` others (all of them at T <= `sources` + 1; else a
    seeded draw), each warped to its lips: near pairs, where the warp is nearly right, and far ones,
    where the target opens wider than the shot and the generator must paint what it hides. (Only
    the nearest shot, as before 2026-12-06: fine-tuning taught it to pass the warp, and at T = 8 it
    lowered the mouth-box LPIPS 0.9 %; docs/training.md.)"""
    from talkinghead.data.mouth import mouth_input

    side, count = shots.shape[1], len(shots)
    rng = np.random.default_rng(seed)
    index = []
    for i in range(count):
        others = np.array([j for j in range(count) if j != i])
        if len(others) > sources:
            others = np.sort(rng.choice(others, sources, replace=False))
        index += [(i, int(j)) for j in others]
    target = np.array([i for i, _ in index])
    lips = np.stack([draw_lips(p, side) for p in points])[target]
    region, hidden = (m[target] for m in _masks(points, settings))
    made = [
        mouth_input(shots[j], points[j], points[i], hidden[n].numpy(), settings.parting)
        for n, (i, j) in enumerate(index)
    ]
    warped = np.stack([w for w, _ in made])
    hidden = torch.from_numpy(np.stack([h for _, h in made]))
    return Pairs(to_tensor(shots[target]), to_tensor(warped), to_tensor(lips), region, hidden)


def _finetune(generator, discriminator, psi, embedding, pairs: Pairs, steps: int, *, seed: int, progress: bool):
    """G, psi' and D (with w' = w0 + e-hat) on the pairs, in place on `generator`; returns the tuned
    psi' and the guard's notes."""
    from tqdm import tqdm

    from talkinghead.config import LossConfig
    from talkinghead.models import GeneratorOutput
    from talkinghead.training.gan import (
        Adversary,
        DivergenceGuard,
        Generated,
        ParameterModule,
        StepInputs,
        adversarial_step,
    )
    from talkinghead.training.losses import GeneratorLoss

    device = psi.device
    pairs = Pairs(*(t.to(device) for t in pairs.tensors()))
    psi, vector = torch.nn.Parameter(psi.clone()), torch.nn.Parameter(embedding.clone())
    generator.train(), discriminator.train()
    loss = LossConfig(vgg=0.1, face=0.0, adversarial=0.1, feature_matching=1.0, embedding_match=0.0, l1=1.0, region=1.0)
    adversary = Adversary(
        discriminator,
        GeneratorLoss(loss).to(device),
        torch.optim.Adam([*generator.parameters(), psi], lr=LR_GENERATOR, betas=(0.0, 0.999)),
        torch.optim.Adam([*discriminator.parameters(), vector], lr=LR_DISCRIMINATOR, betas=(0.0, 0.999)),
    )
    free = ParameterModule(psi=psi, person=vector)
    guard = DivergenceGuard(
        {"generator": generator, "discriminator": discriminator, "free": free}, [adversary.opt_g, adversary.opt_d]
    )

    def generate(index):
        mouth, mask = generator(
            pairs.warped[index], pairs.lips[index], psi.expand(len(index), -1), pairs.region[index], pairs.hidden[index]
        )
        return Generated(GeneratorOutput(frame=mouth, blend_mask=mask))

    rng = torch.Generator().manual_seed(seed)
    count = len(pairs.target)
    for step in tqdm(range(1, steps + 1), unit="step", desc="mouth fine-tuning", leave=None, disable=not progress):
        index = torch.randperm(count, generator=rng)[: min(BATCH, count)].to(device)
        real = StepInputs(
            pairs.target[index], pairs.lips[index], person=vector.expand(len(index), -1), region=pairs.region[index]
        )
        guard(step, adversarial_step(partial(generate, index), real, adversary))
    held_out = pairs.mirrored()
    settled = guard.settle(steps, partial(_errors, generator, psi, pairs, held_out))
    generator.eval()
    notes = []
    if guard.restored:
        notes.append(f"mouth fine-tuning diverged {len(guard.restored)} time(s); it went back to a good state")
    if settled:
        notes.append(f"after mouth fine-tuning, {settled}")
    return psi.detach(), notes


@torch.no_grad()
def _errors(generator, psi, pairs: Pairs, held_out: Pairs) -> dict[str, float]:
    """The guard's measures: L1 of the re-made shots' mouths and of the mirrored ones (new lips)."""
    training = generator.training
    generator.eval()
    values = {}
    for name, p in (("the re-made mouths' L1", pairs), ("the mirrored mouths' L1", held_out)):
        made, _ = generator(p.warped, p.lips, psi.expand(len(p.target), -1), p.region, p.hidden)
        values[name] = (made.float() - p.target).abs().mean().item()
    generator.train(training)
    return values
