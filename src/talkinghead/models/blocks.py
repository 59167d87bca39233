"""Building blocks shared by the embedder, generator and discriminator.

Every convolution and linear layer is spectrally normalised, as in the paper ("spectral
normalization for all convolutional and fully connected layers"). Feature maps are `[B, C, H, W]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2))


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Linear(in_features, out_features, bias=bias))


def channels(base: int, maximum: int, level: int) -> int:
    """Width at a given level of down-sampling: base, 2 base, 4 base, ... capped at maximum."""
    return min(base * 2**level, maximum)


class ResBlockDown(nn.Module):
    """Residual down-sampling block (BigGAN discriminator style), optionally instance-normalised.

    `first=True` leaves out the leading ReLU, for a block whose input is an image.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: bool = False, first: bool = False):
        super().__init__()
        self.first = first
        self.norm1 = nn.InstanceNorm2d(in_channels, affine=True) if norm else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(out_channels, affine=True) if norm else nn.Identity()
        self.conv1 = conv(in_channels, out_channels)
        self.conv2 = conv(out_channels, out_channels)
        self.skip = conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        h = h if self.first else F.relu(h)
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class ResBlock(nn.Module):
    """Residual block at constant resolution (no normalisation): the discriminator's last block."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv(channels, channels)
        self.conv2 = conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class AdaIN(nn.Module):
    """Adaptive instance normalisation: `(1 + scale) * IN(x) + bias`, scale and bias given per sample.

    The `1 +` keeps the block near identity when the projected parameters are near zero, which is
    where the projection P starts.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.norm = nn.InstanceNorm2d(channels, affine=False)

    @property
    def num_params(self) -> int:
        return 2 * self.channels

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        scale, bias = params.unflatten(1, (2, self.channels)).unbind(1)  # each [B, C]
        return self.norm(x) * (1 + scale[:, :, None, None]) + bias[:, :, None, None]


class AdaINResBlock(nn.Module):
    """Residual block whose two normalisations are AdaIN, optionally up-sampling by 2."""

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.adain1 = AdaIN(in_channels)
        self.adain2 = AdaIN(out_channels)
        self.conv1 = conv(in_channels, out_channels)
        self.conv2 = conv(out_channels, out_channels)
        self.skip = conv(in_channels, out_channels, 1) if upsample or in_channels != out_channels else None

    @property
    def num_params(self) -> int:
        return self.adain1.num_params + self.adain2.num_params

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        p1, p2 = params.split([self.adain1.num_params, self.adain2.num_params], dim=1)
        h = F.relu(self.adain1(x, p1))
        # The 1x1 skip before the up-sampling: the same numbers (nearest up-sampling commutes with a
        # per-pixel map) on a quarter of the pixels.
        skip = self.skip(x) if self.skip is not None else x
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.adain2(self.conv1(h), p2)))
        return h + skip


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019), keys and values pooled 2x2 as in BigGAN.

    Starts as the identity (`gamma = 0`) and learns how much attention to mix in.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.query = conv(channels, max(channels // 8, 1), 1)
        self.key = conv(channels, max(channels // 8, 1), 1)
        self.value = conv(channels, max(channels // 2, 1), 1)
        self.out = conv(max(channels // 2, 1), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, C/8]
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)  # [B, HW/4, C/8]
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)  # [B, HW/4, C/2]
        # SAGAN uses unscaled dot products; scale = 1 keeps that.
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]
        h = h.transpose(1, 2).reshape(B, -1, H, W)
        return x + self.gamma * self.out(h)


def global_sum_pool(x: torch.Tensor) -> torch.Tensor:
    """`[B, C, H, W] -> [B, C]`, as the paper's embedder and discriminator do."""
    return x.sum(dim=(2, 3))
