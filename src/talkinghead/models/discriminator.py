"""The projection discriminator D(x, y, i) = V(x, y)^T (W_i + w0) + b (paper §3.1)."""

from __future__ import annotations

import torch
from torch import nn

from .embedder import DownTrunk


class Discriminator(nn.Module):
    """Realism of a frame given its landmarks, for training video i.

    Args: frames and landmark images `[B, 3, H, W]` in [-1, 1]; video indices `[B]` (int64).
    Returns: scores `[B]` and the trunk's intermediate features (for feature matching).

    `W` holds one column per training video (an embedding table); `w0` and `b` are shared. In
    few-shot fine-tuning, the single video's column is initialised from the person's embedding
    (`w' = w0 + e-hat`, paper §3.3) through `score_with`.
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
        self, frames: torch.Tensor, landmark_images: torch.Tensor, video_index: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.score_with(frames, landmark_images, self.W(video_index))

    def score_with(
        self, frames: torch.Tensor, landmark_images: torch.Tensor, video_vector: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score with an explicit `[B, D]` video vector in place of a row of W."""
        v, features = self.trunk(frames, landmark_images)  # [B, D]
        score = (v * (video_vector + self.w0)).sum(dim=1) + self.b
        return score, features
