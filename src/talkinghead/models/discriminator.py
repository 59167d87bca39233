"""The projection discriminator D(x, y, i) = V(x, y)^T (W_i + w0) + b (paper §3.1)."""

from __future__ import annotations

import torch
from torch import nn

from talkinghead.models.embedder import DownTrunk


class Discriminator(nn.Module):
    """Realism of a frame given its landmarks, for training video i.

    Args: frames and landmark images `[B, 3, H, W]` in [-1, 1]; the person as training video
    indices `[B]` (int64: rows of W) or as vectors `[B, D]` standing in for a row (few-shot
    fine-tuning starts its vector at the person's embedding, so `w' = w0 + e-hat`, paper §3.3).
    Returns: scores `[B]` and the trunk's intermediate features (for feature matching).

    `W` holds one column per training video (an embedding table); `w0` and `b` are shared.
    """

    def __init__(
        self,
        *,
        resolution: int,
        base_channels: int,
        max_channels: int,
        embedding_dim: int,
        num_videos: int,
        attention_resolutions: tuple[int, ...] = (),
    ):
        super().__init__()
        self.trunk = DownTrunk(
            resolution=resolution,
            base_channels=base_channels,
            max_channels=max_channels,
            out_dim=embedding_dim,
            attention_resolutions=attention_resolutions,
            extra_block=True,
        )
        self.W = nn.Embedding(num_videos, embedding_dim)
        nn.init.normal_(self.W.weight, std=0.02)
        self.w0 = nn.Parameter(torch.zeros(embedding_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(
        self, frames: torch.Tensor, landmark_images: torch.Tensor, person: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        v, features = self.trunk(frames, landmark_images)  # [B, D]
        score = (v * (self.person_vectors(person) + self.w0)).sum(dim=1) + self.b
        return score, features

    def person_vectors(self, person: torch.Tensor) -> torch.Tensor:
        """`[B, D]`: the rows of W for video indices `[B]`, or the given vectors `[B, D]`."""
        return person if person.is_floating_point() else self.W(person)
