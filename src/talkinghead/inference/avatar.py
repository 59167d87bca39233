"""The inference wrapper: a fitted person-specific generator, its file format, and generation.

    avatar = fit_avatar(["mona_lisa.jpg"])                                   # feed-forward (fitting.py)
    avatar = fit_avatar(["me.mp4"], shots=8, options=FitOptions(steps=100))  # fine-tuned on 8 frames
    avatar.save("mona.avatar")
    for frame in Avatar.load("mona.avatar").to("cuda").animate(Motion.load("talk.npz")):
        ...                                                                  # [S, S, 3] uint8 frames

The layers: `cropper.FaceCropper` finds and crops the face (keeping the crop's box in the
portrait), `fitting.fit_shots` runs the few-shot stage and returns an `Avatar`, which owns the
device, the dtype and the pre/post-processing around the generator. It knows nothing of how it
was made or of other runtimes (onnx.py wraps it for onnxruntime).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from talkinghead.checkpoint import config_from, read_safetensors
from talkinghead.config import Config
from talkinghead.errors import ModelFileError
from talkinghead.face.drawing import draw_batch
from talkinghead.face.parting import part_lips
from talkinghead.face.points import rescale_points
from talkinghead.inference.mouth import FittedMouth
from talkinghead.io import atomic_path
from talkinghead.media.images import to_tensor, to_uint8
from talkinghead.model import build_generator
from talkinghead.models import GeneratorInputs, GeneratorOutput

AVATAR_FORMAT = "talkinghead-avatar"

__all__ = ["AVATAR_FORMAT", "Avatar"]


@dataclass
class Avatar:
    """A person-specific generator and what it was made from.

    - `generator`, `psi`: G (fine-tuned or not) and its AdaIN parameters `[1, n]`, on the device
      the avatar was fitted on (or moved to with `to`)
    - `shots`: `[T, R, R, 3] uint8` face crops at the model's resolution R (what the networks
      read); `shot_landmarks`: `[T, 68, 2]` crop pixels of R
    - `portrait`: the first input's full image, `[H, W, 3] uint8`; `portrait_box`: its crop box
      (x0, y0, side) in that image, for pasting generated crops back
    - `detail`: the same crops at the output size D, `[T, D, D, 3] uint8`, whose pixels the
      renderer moves (render.py); None: frames are made at R
    - `mouth`: the person's fitted mouth generator, pasted into every frame inside the driving
      inner lips (mouth.py); None: the warp's mouth
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
    detail: np.ndarray | None = None
    mouth: FittedMouth | None = None

    @property
    def size(self) -> int:
        """The model's resolution R: the shots' and the landmarks' pixels."""
        return self.config.model.resolution

    @property
    def output_size(self) -> int:
        """The frames' side: the detail shots' D, or R without them."""
        return self.size if self.detail is None else int(self.detail.shape[1])

    def at_size(self, size: int) -> "Avatar":
        """The avatar rendering at `size` (at most its detail's size; R or more), sharing its
        networks. An avatar without detail stays at R."""
        import cv2

        if self.detail is None or size >= self.output_size:
            return self
        size = max(self.size, size // 2 * 2)
        smaller = [cv2.resize(shot, (size, size), interpolation=cv2.INTER_AREA) for shot in self.detail]
        copy = replace(self, detail=None if size == self.size else np.stack(smaller))
        copy._frozen, copy._source = getattr(self, "_frozen", None), getattr(self, "_source", None)
        copy._detail = None
        return copy

    @property
    def device(self) -> torch.device:
        return self.psi.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Avatar":
        """Move the generator and psi (in place) and return the avatar."""
        self.generator.to(device=device, dtype=dtype)
        self.psi = self.psi.to(device=device, dtype=dtype)
        if self.mouth is not None:
            self.mouth.to(device=device, dtype=dtype)
        self._frozen = self._source = self._detail = None
        return self

    # -- using one ------------------------------------------------------------------------------

    def generator_inputs(self, landmarks: np.ndarray) -> GeneratorInputs:
        """Inputs for driving landmarks `[N, 68, 2]` (crop pixels), on this avatar's device and dtype."""
        thickness = self.config.model.landmark_thickness or None
        if getattr(self, "_source", None) is None:
            frames = to_tensor(self.shots)[None]  # [1, T, 3, S, S]
            drawn = to_tensor(draw_batch(self.shot_landmarks, self.size, thickness=thickness))[None]
            points = torch.from_numpy(np.asarray(self.shot_landmarks, np.float32))[None]
            frames, drawn, points = (t.to(self.device, self.psi.dtype) for t in (frames, drawn, points))
            # The warp generator's encoding of the shots: the same for every frame, so computed once.
            encode = getattr(self.runtime_generator(), "encode", None)
            with torch.inference_mode(False), torch.no_grad():
                features = None if encode is None else encode(frames[0])[None]
            self._source = [frames, drawn, points, features]
        frames, drawn, points, features = self._source
        driving = to_tensor(draw_batch(landmarks, self.size, thickness=thickness))
        return GeneratorInputs.of(
            driving_landmark_images=driving.to(self.device, self.psi.dtype),
            driving_points=torch.from_numpy(np.asarray(landmarks, np.float32)).to(self.device, self.psi.dtype),
            source_frames=frames[0],
            source_landmark_images=drawn[0],
            source_points=points[0],
            source_features=None if features is None else features[0],
        )

    @torch.inference_mode()
    def outputs(self, landmarks: np.ndarray, *, batch_size: int = 8) -> Iterator[GeneratorOutput]:
        """The generator's outputs (frame, and where it has them flow, fusion weights, blend mask,
        synthesised frame) for `[N, 68, 2]` landmarks in this avatar's crop pixels, `batch_size`
        frames at a time."""
        generator = self.runtime_generator()
        for start in range(0, len(landmarks), batch_size):
            inputs = self.generator_inputs(landmarks[start : start + batch_size])
            yield generator(inputs, self.psi.expand(len(inputs), -1))

    def generate(self, landmarks: np.ndarray, *, batch_size: int = 8) -> Iterator[np.ndarray]:
        """Frames `[D, D, 3] uint8` (D: `output_size`) for `[N, 68, 2]` landmarks in this avatar's
        crop pixels of R: the generator's output composed at D on the detail shots (render.py)."""
        for start, output in zip(range(0, len(landmarks), batch_size), self.outputs(landmarks, batch_size=batch_size)):
            yield from to_uint8(self.render(output, landmarks[start : start + batch_size]).float())

    @torch.inference_mode()
    def render(self, output: GeneratorOutput, landmarks: np.ndarray | None = None) -> torch.Tensor:
        """A generator output at the output size: `[B, 3, D, D]` in [-1, 1], with the mouth made by
        the mouth generator inside the driving inner lips when the avatar has one and the driving
        `landmarks` `[B, 68, 2]` (crop pixels of R) are given."""
        from talkinghead.inference.render import compose

        frames = output.frame
        if self.detail is not None:
            if getattr(self, "_detail", None) is None:
                self._detail = to_tensor(self.detail).to(self.device, self.psi.dtype)  # [T, 3, D, D]
            frames = compose(output, self._detail, self.output_size)
        if self.mouth is not None and landmarks is not None:
            points = rescale_points(np.asarray(landmarks, np.float64), self.size, frames.shape[-1])
            # Composed frames are this call's own; the generator's frame is the caller's output's.
            frames = self.make_mouth(frames, points, inplace=frames is not output.frame)
        return frames

    def make_mouth(self, frames: torch.Tensor, points: np.ndarray, *, inplace: bool = False) -> torch.Tensor:
        """`[B, 3, D, D]` frames (in [-1, 1]; D the output size or R) with this avatar's mouth made
        for driving landmarks `[B, 68, 2]` in their pixels: the lips parted from the shots when the
        mouth parts them (face/parting.py), then the mouth generator's paste."""
        unseen = None
        if self.mouth.settings.parting:
            frames = frames if inplace else frames.clone()
            inplace = True
            if frames.shape[-1] != self.size and getattr(self, "_detail", None) is not None:
                shots = self._detail  # the detail shots, as compose moved them
            elif getattr(self, "_source", None) is not None:
                shots = self._source[0][0]  # the shots at R as the generator read them
            else:
                shots = to_tensor(self.shots).to(self.device, self.psi.dtype)
            shot_points = rescale_points(np.asarray(self.shot_landmarks, np.float64), self.size, shots.shape[-1])
            frames, unseen = part_lips(frames, points, shots, shot_points)
        return self.mouth.paste(frames, points, inplace=inplace, unseen=unseen)

    def runtime_generator(self) -> torch.nn.Module:
        """The generator with spectral norm folded into plain weights: same output, and no
        power iteration or weight division on every call (3x faster on a CPU)."""
        if getattr(self, "_frozen", None) is None:
            from torch.nn.utils import parametrize

            # A freshly built copy, not a deepcopy: parametrized modules get a class made for them,
            # a deepcopy shares it, and removing the parametrization deletes `weight` from that
            # class, which broke the original (and every later avatar made from it).
            with torch.inference_mode(False), torch.no_grad():
                frozen = build_generator(self.config.model)
                frozen.load_state_dict(self.generator.state_dict())
                frozen.to(self.device, self.psi.dtype).eval()
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
        """One safetensors file: generator weights, psi, shots (and their detail), landmarks,
        portrait and config, and the fitted mouth. Format version 2 added the detail, 3 the mouth
        (written only when there is one); older files load without them."""
        from safetensors.torch import save_file

        tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()}
        tensors.update(
            psi=self.psi.detach().cpu().contiguous(),
            shots=torch.from_numpy(np.array(self.shots, copy=True)),
            shot_landmarks=torch.from_numpy(self.shot_landmarks.astype(np.float32)),
            portrait=torch.from_numpy(np.array(self.portrait, copy=True)),
            portrait_box=torch.from_numpy(self.portrait_box.astype(np.float32)),
        )
        if self.detail is not None:
            tensors["detail"] = torch.from_numpy(np.array(self.detail, copy=True))
        if self.mouth is not None:
            tensors.update({f"mouth.{k}": v.detach().cpu().contiguous() for k, v in self.mouth.state_dict().items()})
        metadata = {
            "format": AVATAR_FORMAT,
            "version": "3" if self.mouth is not None else "2",
            "config": json.dumps(self.config.to_dict()),
            "steps": str(self.steps),
            "notes": json.dumps(self.notes),
        }
        if self.mouth is not None:
            metadata["mouth"] = json.dumps(self.mouth.metadata())
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Avatar":
        """An avatar file, on the CPU (`.to(device)` moves it)."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: avatar file not found")
        metadata, tensors = read_safetensors(
            path, AVATAR_FORMAT, "a talkinghead avatar (make one with talkinghead fit)"
        )
        if metadata.get("version", "1") not in ("1", "2", "3"):
            raise ModelFileError(f"{path}: avatar format {metadata.get('version')} is newer than this talkinghead")
        config = config_from(path, lambda: json.loads(metadata["config"]))
        generator = build_generator(config.model)
        try:
            generator.load_state_dict(
                {k[len("generator.") :]: v for k, v in tensors.items() if k.startswith("generator.")}
            )
            fixed = [tensors[k] for k in ("psi", "shots", "shot_landmarks", "portrait", "portrait_box")]
            steps, notes = int(metadata["steps"]), json.loads(metadata["notes"])
        except (RuntimeError, KeyError, ValueError):
            raise ModelFileError(f"{path}: a damaged avatar file (its parts do not fit together)") from None
        psi, shots, shot_landmarks, portrait, portrait_box = fixed
        detail = tensors["detail"].numpy() if "detail" in tensors else None
        if detail is not None and (len(detail) != len(shots) or detail.shape[1] < shots.shape[1]):
            raise ModelFileError(f"{path}: a damaged avatar file (its detail shots do not fit its shots)")
        mouth = None
        if "mouth" in metadata:
            try:
                mouth = FittedMouth.from_state(
                    json.loads(metadata["mouth"]), {k[6:]: v for k, v in tensors.items() if k.startswith("mouth.")}
                )
            except (RuntimeError, KeyError, ValueError, TypeError):
                raise ModelFileError(f"{path}: a damaged avatar file (its mouth does not fit together)") from None
        return cls(
            config, generator.eval(), psi, shots.numpy(), shot_landmarks.numpy(), portrait.numpy(),
            portrait_box.numpy(), steps, notes, detail, mouth,
        )  # fmt: skip
