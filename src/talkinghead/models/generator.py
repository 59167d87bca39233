"""The paper's generator G(y, e): landmark image -> frame, the person given through AdaIN (paper §3.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.models.blocks import AdaINResBlock, ResBlockDown, SelfAttention, channels, conv
from talkinghead.models.inputs import GeneratorInputs, GeneratorOutput
from talkinghead.models.registry import register_generator


@dataclass
class AdaINSettings:
    """The `model.adain` config section."""

    # The generator downsamples to this size before its residual blocks (paper: 16 at 256 px).
    bottleneck_resolution: int = field(default=16, metadata={"range": (1, 2048)})
    bottleneck_blocks: int = field(default=5, metadata={"range": (0, 64)})  # residual AdaIN blocks there

    def validate(self, resolution: int) -> None:
        if self.bottleneck_resolution > resolution // 2:
            raise ValueError(f"bottleneck_resolution: must be <= resolution / 2, got {self.bottleneck_resolution}")


@register_generator("adain", AdaINSettings)
class AdaINGenerator(nn.Module):
    """Image-to-image network: down-sampling residual blocks with instance norm, residual and
    up-sampling residual blocks with AdaIN, self-attention at the chosen resolutions.

    The AdaIN parameters psi are a learned projection of the person's embedding, `psi = P e`
    (`adain_params`). `forward` takes psi directly, so few-shot fine-tuning can optimise a
    person-specific psi' initialised from `P e-hat` (paper §3.3).

    Tensors: `inputs.driving_landmark_images` `[B, 3, H, W]` (the only input it reads) and output
    frames `[B, 3, H, W]` in [-1, 1]; embeddings `[B, D]`; psi `[B, num_adain_params]`.
    """

    def __init__(
        self,
        *,
        resolution: int,
        base_channels: int,
        max_channels: int,
        embedding_dim: int,
        bottleneck_resolution: int,
        bottleneck_blocks: int,
        attention_resolutions: tuple[int, ...] = (),
    ):
        super().__init__()
        levels = int(math.log2(resolution // bottleneck_resolution))
        self.stem = conv(3, base_channels)
        down: list[nn.Module] = []
        size = resolution
        for level in range(levels):
            down.append(
                ResBlockDown(
                    channels(base_channels, max_channels, level),
                    channels(base_channels, max_channels, level + 1),
                    norm=True,
                )
            )
            size //= 2
            if size in attention_resolutions:
                down.append(SelfAttention(channels(base_channels, max_channels, level + 1)))
        self.down = nn.Sequential(*down)
        width = channels(base_channels, max_channels, levels)
        self.body = nn.ModuleList(AdaINResBlock(width, width) for _ in range(bottleneck_blocks))
        up: list[nn.Module] = []
        for level in reversed(range(levels)):
            up.append(
                AdaINResBlock(
                    channels(base_channels, max_channels, level + 1),
                    channels(base_channels, max_channels, level),
                    upsample=True,
                )
            )
            size *= 2
            if size in attention_resolutions:
                up.append(SelfAttention(channels(base_channels, max_channels, level)))
        self.up = nn.ModuleList(up)
        self.head = conv(base_channels, 3)
        self.num_adain_params = sum(b.num_params for b in [*self.body, *self.up] if isinstance(b, AdaINResBlock))
        # P: embedding -> AdaIN parameters. A plain matrix (not spectrally normalised), small at
        # first so every AdaIN starts near the identity.
        self.projection = nn.Parameter(torch.randn(self.num_adain_params, embedding_dim) * 0.01)

    def adain_params(self, embedding: torch.Tensor) -> torch.Tensor:
        """psi = P e: `[B, D] -> [B, num_adain_params]`."""
        return embedding @ self.projection.t()

    def forward(self, inputs: GeneratorInputs, adain_params: torch.Tensor) -> GeneratorOutput:
        h = self.down(self.stem(inputs.driving_landmark_images))
        offset = 0
        for block in [*self.body, *self.up]:
            if isinstance(block, AdaINResBlock):
                h = block(h, adain_params[:, offset : offset + block.num_params])
                offset += block.num_params
            else:
                h = block(h)
        return GeneratorOutput(frame=torch.tanh(self.head(F.relu(h))))
