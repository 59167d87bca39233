"""What a generator is given and what it gives back: one object each, so a generator that needs
other inputs (or has more to show) is a new class, not an edit at every call site.

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

    @classmethod
    def of(
        cls,
        *,
        driving_landmark_images: torch.Tensor,
        driving_points: torch.Tensor,
        source_frames: torch.Tensor,
        source_landmark_images: torch.Tensor,
        source_points: torch.Tensor,
        source_features: torch.Tensor | None = None,
    ) -> "GeneratorInputs":
        """The one way to build inputs: the driving side `[B, ...]`, and the shots either per
        frame (`[B, K, ...]`) or shared by all B frames (`[K, ...]`, expanded without a copy)."""
        B = driving_landmark_images.shape[0]

        def per_frame(value: torch.Tensor | None, dims: int) -> torch.Tensor | None:
            if value is None or value.dim() == dims + 1:
                return value
            return value[None].expand(B, *value.shape)

        return cls(
            driving_landmark_images=driving_landmark_images,
            source_frames=per_frame(source_frames, 4),
            source_landmark_images=per_frame(source_landmark_images, 4),
            source_points=per_frame(source_points, 3),
            driving_points=driving_points,
            source_features=per_frame(source_features, 4),
        )

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


@dataclass
class GeneratorOutput:
    """What a generator gives back, batched over B driving frames at the model's resolution R.

    Every generator fills `frame`; one that moves the shots' pixels also says how, so a renderer
    can repeat the move at another size: `flow` is a `grid_sample` grid per fused shot in
    normalised coordinates (`align_corners=False`), `shots` which of the K shots those are,
    `fusion_weights` their per-pixel weights (summing to 1 over the shots), `blend_mask` where
    the result is the fused warp (1) rather than `synthesised` (0).
    """

    frame: torch.Tensor  # [B, 3, R, R] in [-1, 1]
    flow: torch.Tensor | None = None  # [B, F, R, R, 2] in [-1, 1]
    shots: torch.Tensor | None = None  # [B, F] int64: indices into the K shots
    fusion_weights: torch.Tensor | None = None  # [B, F, 1, R, R]
    blend_mask: torch.Tensor | None = None  # [B, 1, R, R] in [0, 1]
    synthesised: torch.Tensor | None = None  # [B, 3, R, R] in [-1, 1], before the blend
