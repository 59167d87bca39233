"""What a generator is given: one object, so a generator that needs other inputs is a new class,
not an edit at every call site.

Every field is batched over B driving frames. Coordinates are pixels of the model's resolution R,
pixel centres at integers (points.py); images are in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class GeneratorInputs:
    driving_landmark_images: torch.Tensor  # [B, 3, R, R] the target's landmarks, drawn
    source_frames: torch.Tensor | None = None  # [B, K, 3, R, R] the person's shots
    source_landmark_images: torch.Tensor | None = None  # [B, K, 3, R, R] the shots' landmarks, drawn
    source_points: torch.Tensor | None = None  # [B, K, 68, 2] the shots' landmarks
    driving_points: torch.Tensor | None = None  # [B, 68, 2] the target's landmarks
    # [B, K, C, R/4, R/4] the warp generator's encoding of source_frames (`WarpGenerator.encode`),
    # when computed once for many frames (an avatar's shots never change); None: it encodes them.
    source_features: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.driving_landmark_images.shape[0]

    def select(self, index: torch.Tensor | slice) -> "GeneratorInputs":
        """The inputs of some of the B driving frames."""
        return GeneratorInputs(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    def to(self, *args, **kwargs) -> "GeneratorInputs":
        """`Tensor.to` on every field (floating fields only get a dtype)."""
        return GeneratorInputs(**{f.name: _to(getattr(self, f.name), args, kwargs) for f in fields(self)})


def _take(value, index):
    return None if value is None else value[index]


def _to(value, args, kwargs):
    return None if value is None else value.to(*args, **kwargs)
