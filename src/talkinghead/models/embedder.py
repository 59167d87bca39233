"""The embedder E(x, y): a frame and its landmark image -> a person's identity vector (paper §3.1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.models.blocks import ResBlock, ResBlockDown, SelfAttention, channels, global_sum_pool, linear


class DownTrunk(nn.Module):
    """Frame + landmark image -> feature maps down to 4x4, then a pooled vector.

    The embedder and the discriminator share this layout (not weights): residual down-sampling
    blocks without normalisation, self-attention at the chosen resolutions, global sum pooling and
    a ReLU. Returns the vector `[B, out_dim]` and every block's output (for feature matching).
    """

    def __init__(
        self,
        *,
        resolution: int,
        base_channels: int,
        max_channels: int,
        out_dim: int,
        attention_resolutions: tuple[int, ...],
        extra_block: bool = False,
    ):
        super().__init__()
        levels = int(math.log2(resolution // 4))
        blocks: list[nn.Module] = []
        in_channels, size = 6, resolution
        for level in range(levels):
            out_channels = channels(base_channels, max_channels, level)
            blocks.append(ResBlockDown(in_channels, out_channels, first=level == 0))
            in_channels, size = out_channels, size // 2
            if size in attention_resolutions:
                blocks.append(SelfAttention(in_channels))
        if extra_block:
            blocks.append(ResBlock(in_channels))  # the discriminator's extra block at 4x4
        self.blocks = nn.ModuleList(blocks)
        self.channels = in_channels
        self.project = linear(in_channels, out_dim) if in_channels != out_dim else None

    def forward(self, frames: torch.Tensor, landmark_images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.cat([frames, landmark_images], dim=1)  # [B, 6, H, W]
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        vector = F.relu(global_sum_pool(h))  # [B, C]
        if self.project is not None:
            vector = self.project(vector)
        return vector, features


class Embedder(nn.Module):
    """E(x, y) -> e: `[B, 3, H, W]` frames and landmark images in [-1, 1] -> `[B, D]` embeddings.

    `embed_shots` averages the K shots of each person into e-hat, as the paper does.
    """

    def __init__(
        self,
        *,
        resolution: int,
        base_channels: int,
        max_channels: int,
        embedding_dim: int,
        attention_resolutions: tuple[int, ...] = (),
    ):
        super().__init__()
        self.trunk = DownTrunk(
            resolution=resolution,
            base_channels=base_channels,
            max_channels=max_channels,
            out_dim=embedding_dim,
            attention_resolutions=attention_resolutions,
        )

    def forward(self, frames: torch.Tensor, landmark_images: torch.Tensor) -> torch.Tensor:
        return self.trunk(frames, landmark_images)[0]

    def embed_shots(self, frames: torch.Tensor, landmark_images: torch.Tensor) -> torch.Tensor:
        """`[B, K, 3, H, W]` shots -> `[B, D]` mean embedding e-hat."""
        B, K = frames.shape[:2]
        embeddings = self(frames.flatten(0, 1), landmark_images.flatten(0, 1))  # [B*K, D]
        return embeddings.unflatten(0, (B, K)).mean(dim=1)
