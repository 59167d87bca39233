"""Few-shot avatars (paper §3.3): one or a few images of a person -> a person-specific generator.

    avatar = Avatar.fit(["mona_lisa.jpg"], steps=0)        # feed-forward: psi = P e-hat
    avatar = Avatar.fit(["me.mp4"], shots=8, steps=100)      # fine-tuned on 8 frames of a video
    avatar.save("mona.avatar")
    for frame in avatar.animate(Motion.load("talk.npz")):   # [S, S, 3] uint8 frames
        ...

Fitting computes e-hat (the mean embedding of the T shots), initialises the person-specific
AdaIN parameters psi' = P e-hat and the discriminator's vector w' = w0 + e-hat, then fine-tunes
G (with psi') and D on the shots with the meta-learning losses less the embedding match.
`steps=0` skips fine-tuning: the feed-forward (FF) avatar.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .config import Config
from .drawing import draw_batch
from .images import to_tensor, to_uint8
from .io import atomic_path
from .media import MediaError, is_video_path, load_image

AVATAR_FORMAT = "talkinghead-avatar"


class FitError(Exception):
    """Inputs that give no usable face; one line."""


def default_model_path() -> Path:
    """The model bundled with the package (trained on the shared talking-head videos)."""
    return Path(__file__).resolve().parent / "assets" / "default.safetensors"


@dataclass
class Avatar:
    """A person-specific generator and what it was made from.

    - `generator`, `psi`: G (fine-tuned or not) and its AdaIN parameters `[1, n]`
    - `shots`: `[T, S, S, 3] uint8` face crops; `shot_landmarks`: `[T, 68, 2]` crop pixels
    - `portrait`: the first input's full image, `[H, W, 3] uint8`; `portrait_box`: its crop box
      (x0, y0, side) in that image, for pasting generated crops back
    """

    config: Config
    generator: torch.nn.Module
    psi: torch.Tensor
    shots: np.ndarray
    shot_landmarks: np.ndarray
    portrait: np.ndarray
    portrait_box: np.ndarray
    steps: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.config.model.resolution

    # -- making one -----------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        inputs: Sequence[str | Path | np.ndarray],
        *,
        model: str | Path | None = None,
        shots: int = 8,
        steps: int = 0,
        epochs: float = 0,
        batch_size: int = 2,
        device: str | torch.device | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> "Avatar":
        """Fit an avatar to images (paths or `[H, W, 3] uint8` arrays) or to T frames of videos.

        Fine-tuning runs `steps` steps, or `epochs` passes over the shots (`finetune_steps`)."""
        from .checkpoint import load_model

        networks = load_model(model or default_model_path())
        crops, landmarks, portrait, box, notes = _detect_shots(inputs, networks[0].model.resolution, shots)
        avatar = cls.from_shots(
            networks, crops, landmarks, steps=steps, epochs=epochs, batch_size=batch_size, device=device,
            progress=progress, seed=seed
        )  # fmt: skip
        avatar.portrait, avatar.portrait_box, avatar.notes = portrait, box, notes
        return avatar

    @classmethod
    def from_shots(
        cls,
        networks: tuple,
        crops: np.ndarray,
        landmarks: np.ndarray,
        *,
        steps: int = 0,
        epochs: float = 0,
        batch_size: int = 2,
        device: str | torch.device | None = None,
        progress: bool = False,
        seed: int = 0,
        callback=None,
    ) -> "Avatar":
        """The few-shot stage on shots that are already face crops.

        `networks`: (config, embedder, generator, discriminator) as `load_model` gives them (the
        networks are not modified). `crops`: `[T, S, S, 3] uint8` at the model's resolution;
        `landmarks`: `[T, 68, 2]` in crop pixels. The portrait is the first crop. `callback(step,
        generator, psi)` runs after each fine-tuning step (scripts/finetune_sweep.py measures there).
        """
        config, embedder, generator, discriminator = networks
        if epochs:
            if steps:
                raise ValueError("give fine-tuning steps or epochs, not both")
            steps = finetune_steps(epochs, len(crops), batch_size)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        size = config.model.resolution
        frames = to_tensor(crops).to(device)  # [T, 3, S, S]
        drawn = to_tensor(draw_batch(landmarks, size, thickness=config.model.landmark_thickness or None)).to(device)
        embedder, generator, discriminator = embedder.to(device), generator.to(device), discriminator.to(device)
        with torch.no_grad():
            embedding = embedder(frames, drawn).mean(0, keepdim=True)  # e-hat, [1, D]
            psi = generator.adain_params(embedding)  # psi' initialised to P e-hat
        if steps > 0:
            generator, psi = _finetune(
                config, generator, discriminator, psi, embedding, frames, drawn,
                steps=steps, batch_size=batch_size, progress=progress, seed=seed, callback=callback
            )  # fmt: skip
        box = np.array([0, 0, size], np.float32)
        return cls(config, generator.cpu().eval(), psi.detach().cpu(), crops, landmarks, crops[0], box, steps)

    # -- using one ------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, landmarks: np.ndarray, *, batch_size: int = 8) -> Iterator[np.ndarray]:
        """Frames `[S, S, 3] uint8` for `[N, 68, 2]` landmarks in this avatar's crop pixels."""
        generator = self._runtime_generator()
        device = next(generator.parameters()).device
        thickness = self.config.model.landmark_thickness or None
        psi = self.psi.to(device)
        for start in range(0, len(landmarks), batch_size):
            chunk = landmarks[start : start + batch_size]
            drawn = to_tensor(draw_batch(chunk, self.size, thickness=thickness)).to(device)
            yield from to_uint8(generator(drawn, psi.expand(len(chunk), -1)))

    def _runtime_generator(self) -> torch.nn.Module:
        """The generator with spectral norm folded into plain weights: same output, and no
        power iteration or weight division on every call (3x faster on a CPU)."""
        if getattr(self, "_frozen", None) is None:
            from torch.nn.utils import parametrize

            from .models import build_generator

            # A freshly built copy, not a deepcopy: parametrized modules get a class made for them,
            # a deepcopy shares it, and removing the parametrization deletes `weight` from that
            # class, which broke the original (and every later avatar made from it).
            with torch.inference_mode(False), torch.no_grad():
                frozen = build_generator(self.config.model)
                frozen.load_state_dict(self.generator.state_dict())
                frozen.to(next(self.generator.parameters()).device).eval()
                for module in frozen.modules():
                    if parametrize.is_parametrized(module, "weight"):
                        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            self._frozen = frozen
        return self._frozen

    def animate(
        self, motion, *, mode: str = "relative", reference: str = "neutral", smooth: float = 1.0, batch_size: int = 8
    ) -> Iterator[np.ndarray]:
        """Frames driven by a `Motion` (see motion.py for the retargeting modes)."""
        landmarks = motion.smoothed(smooth).retarget(self.shot_landmarks[0], self.size, mode=mode, reference=reference)
        yield from self.generate(landmarks, batch_size=batch_size)

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """One safetensors file: generator weights, psi, shots, landmarks, portrait and config."""
        from safetensors.torch import save_file

        tensors = {f"generator.{k}": v.contiguous() for k, v in self.generator.state_dict().items()}
        tensors.update(
            psi=self.psi.contiguous(),
            shots=torch.from_numpy(np.array(self.shots, copy=True)),
            shot_landmarks=torch.from_numpy(self.shot_landmarks.astype(np.float32)),
            portrait=torch.from_numpy(np.array(self.portrait, copy=True)),
            portrait_box=torch.from_numpy(self.portrait_box.astype(np.float32)),
        )
        metadata = {
            "format": AVATAR_FORMAT,
            "version": "1",
            "config": json.dumps(self.config.to_dict()),
            "steps": str(self.steps),
            "notes": json.dumps(self.notes),
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Avatar":
        from safetensors import SafetensorError, safe_open

        from .models import build_generator

        path = Path(path)
        if not path.is_file():
            raise FitError(f"{path}: avatar file not found")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != AVATAR_FORMAT:
                    raise FitError(f"{path}: not a talkinghead avatar")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except SafetensorError:
            raise FitError(f"{path}: not a talkinghead avatar") from None
        config = Config.from_dict(json.loads(metadata["config"]))
        generator = build_generator(config.model)
        generator.load_state_dict({k[len("generator.") :]: v for k, v in tensors.items() if k.startswith("generator.")})
        return cls(
            config,
            generator.eval(),
            tensors["psi"],
            tensors["shots"].numpy(),
            tensors["shot_landmarks"].numpy(),
            tensors["portrait"].numpy(),
            tensors["portrait_box"].numpy(),
            int(metadata["steps"]),
            json.loads(metadata["notes"]),
        )


def _detect_shots(inputs, size: int, shots: int):
    """Face crops `[T, S, S, 3]` and landmarks `[T, 68, 2]` from images or frames of videos."""
    from .crop import CropConfig, clip_boxes, crop_image, to_crop
    from .landmarks import make_landmarker
    from .prepare import PrepareOptions, Source, extract_faces
    from .tracking import FaceTracker

    if not inputs:
        raise FitError("no input images")
    tracker = FaceTracker(make_landmarker())
    crops, landmarks, notes = [], [], []
    portrait, box = None, None
    videos = [p for p in inputs if not isinstance(p, np.ndarray) and is_video_path(Path(p))]
    per_video = max(1, -(-shots // max(len(videos), 1)))
    for item in inputs:
        name = "image" if isinstance(item, np.ndarray) else str(item)
        if not isinstance(item, np.ndarray) and is_video_path(Path(item)):
            options = PrepareOptions(crop_size=size, max_frames=per_video)
            clip, reason = extract_faces(Source(str(item), "video", ""), options)
            if clip is None:
                raise FitError(f"{item}: {reason}")
            crops.extend(clip.frames)
            landmarks.extend(clip.landmarks)
            notes.extend(f"{item}: {n}" for n in clip.meta["notes"])
            if portrait is None:
                portrait, box = _video_frame(item, int(clip.frame_numbers[0])), clip.boxes[0]
            continue
        try:
            image = item if isinstance(item, np.ndarray) else load_image(item)
        except MediaError as error:
            raise FitError(f"{name}: {error}") from None
        tracker.reset()
        points = tracker(image)
        if points is None:
            small = tracker.stats.largest_small_face
            raise FitError(f"{name}: " + (f"face too small ({small:.0f} px)" if small else "no face found"))
        if tracker.stats.max_faces > 1:
            notes.append(f"{name}: {tracker.stats.max_faces} faces; used the largest, most central one")
        boxes, _ = clip_boxes(points[None], np.zeros(1, np.float32), CropConfig(size=size))
        crops.append(crop_image(image, boxes[0], size))
        landmarks.append(to_crop(points, boxes[0], size))
        if portrait is None:
            portrait, box = image, boxes[0]
    return (
        np.stack(crops[: max(shots, len(inputs))]),
        np.stack(landmarks[: max(shots, len(inputs))]),
        portrait,
        box,
        notes,
    )


def _video_frame(path, number: int) -> np.ndarray:
    from .media import VideoReader

    with VideoReader(path) as reader:
        for n, _, rgb in reader:
            if n == number:
                return rgb
    raise FitError(f"{path}: frame {number} not found")


def finetune_steps(epochs: float, shots: int, batch_size: int = 2) -> int:
    """Steps that show each of `shots` frames `epochs` times at `batch_size` (at least one step).

    With a fixed number of steps a larger T sees each shot less often (at 200 steps of batch 2,
    8 shots 50 times each, 32 shots 12 times); counting passes over the shots compares T fairly."""
    if epochs < 0:
        raise ValueError(f"fine-tuning epochs must be >= 0, got {epochs}")
    return max(1, math.ceil(epochs * shots / min(batch_size, shots))) if epochs else 0


def _finetune(
    config, generator, discriminator, psi, embedding, frames, drawn, *, steps, batch_size, progress, seed, callback
):
    """Paper §3.3: fine-tune G (with psi') and D (with w' = w0 + e-hat) on the T shots."""
    from tqdm import tqdm

    from .losses import GeneratorLoss, discriminator_hinge_loss
    from .train import requires_grad

    t = config.train
    generator, discriminator = copy.deepcopy(generator).train(), copy.deepcopy(discriminator).train()
    psi = torch.nn.Parameter(psi.clone())
    # score_with adds w0, so this vector starts at e-hat and w' = w0 + e-hat.
    person = torch.nn.Parameter(embedding.clone())
    loss_fn = GeneratorLoss(replace(config.loss, embedding_match=0.0)).to(frames.device)
    scale = t.finetune_lr_scale
    opt_g = torch.optim.Adam([*generator.parameters(), psi], lr=scale * t.lr_generator, betas=tuple(t.betas))
    opt_d = torch.optim.Adam([*discriminator.parameters(), person], lr=scale * t.lr_discriminator, betas=tuple(t.betas))
    # With decay, step s (from 1) runs at (steps - s + 1) / steps of the full rates: the last
    # step is small, not 0.
    decay = (lambda done: 1 - done / steps) if t.finetune_lr_decay else (lambda done: 1.0)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, decay) for opt in (opt_g, opt_d)]
    # The shots never change: their content-network features are computed once, not every step.
    content = loss_fn.content.real_features(frames) if loss_fn.content is not None else None
    rng = torch.Generator().manual_seed(seed)
    count = len(frames)
    # leave=None: the bar stays when it is the only one (fit, animate) and goes when it is nested
    # under another (evaluate's per-clip bar).
    for step in tqdm(range(1, steps + 1), unit="step", desc="fine-tuning", leave=None, disable=not progress):
        index = torch.randperm(count, generator=rng)[: min(batch_size, count)].to(frames.device)
        real, landmarks = frames[index], drawn[index]
        vector = person.expand(len(index), -1)
        requires_grad(discriminator, False)
        fake = generator(landmarks, psi.expand(len(index), -1))
        scores, features = discriminator.score_with(
            torch.cat([real, fake]), torch.cat([landmarks, landmarks]), torch.cat([vector, vector])
        )
        loss, _ = loss_fn(
            real=real,
            fake=fake,
            real_content=None if content is None else {k: [m[index] for m in maps] for k, maps in content.items()},
            fake_scores=scores.chunk(2)[1],
            real_features=[f.chunk(2)[0] for f in features],
            fake_features=[f.chunk(2)[1] for f in features],
        )
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        requires_grad(discriminator, True)
        scores, _ = discriminator.score_with(
            torch.cat([real, fake.detach()]), torch.cat([landmarks, landmarks]), torch.cat([vector, vector])
        )
        loss_d = discriminator_hinge_loss(*scores.chunk(2))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for schedule in schedules:
            schedule.step()
        if callback is not None:
            callback(step, generator, psi)
    return generator, psi


def main(args) -> int:
    """`talkinghead fit` (arguments parsed by cli.py)."""
    import sys

    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"talkinghead fit: cannot write {out}: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    try:
        avatar = Avatar.fit(
            args.inputs, model=args.model, shots=args.shots, steps=args.steps, epochs=args.epochs,
            progress=not args.quiet
        )  # fmt: skip
        avatar.save(out)
    except (FitError, ValueError) as error:
        print(f"talkinghead fit: {error}", file=sys.stderr)
        return 1
    except PermissionError as error:
        print(f"talkinghead fit: cannot write {out}: {error.strerror}", file=sys.stderr)
        return 2
    for note in avatar.notes:
        print(f"note: {note}", file=sys.stderr)
    kind = "feed-forward" if avatar.steps == 0 else f"fine-tuned for {avatar.steps} steps"
    print(f"wrote {out}: {kind} avatar from {len(avatar.shots)} shot(s) at {avatar.size} px")
    return 0
