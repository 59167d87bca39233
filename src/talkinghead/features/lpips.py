"""LPIPS (Zhang et al. 2018), v0.1 with the VGG16 backbone: a perceptual distance the evaluation
scores with and fine-tuning's divergence guard watches."""

from __future__ import annotations

import torch
from torch import nn


class LPIPS(nn.Module):
    """LPIPS v0.1 with the VGG16 backbone (the `lpips` package's `LPIPS(net="vgg")`)."""

    # The package's ScalingLayer: ImageNet statistics expressed for inputs in [-1, 1].
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self) -> None:
        super().__init__()
        from talkinghead.features import load_vgg16

        self.vgg = load_vgg16()

    @torch.no_grad()
    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """`[B]` distances of `[B, 3, H, W]` frames in [-1, 1] (no gradient: the evaluation's)."""
        return self.distance(real, fake)

    def distance(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """`[B]`, as `forward`, with gradients to the frames (a training loss: `LossConfig.lpips`)."""
        from talkinghead.features.vgg import LPIPS_TAPS

        shift = real.new_tensor(self.SHIFT)[None, :, None, None]
        scale = real.new_tensor(self.SCALE)[None, :, None, None]
        features = self.vgg.features((torch.cat([real, fake]) - shift) / scale, LPIPS_TAPS)
        distance = real.new_zeros(real.shape[0])
        for layer, head in zip(features, self.vgg.lpips_heads):
            a, b = layer.chunk(2)
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit length along channels
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            distance += ((a - b).pow(2) * head[None, :, None, None]).sum(1).mean(dim=(1, 2))
        return distance
