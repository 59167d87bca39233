"""The paper's three networks. Pure `nn.Module`s: no devices, files or pre-processing here."""

from __future__ import annotations

from ..config import ModelConfig
from .discriminator import Discriminator
from .embedder import Embedder
from .generator import Generator

__all__ = ["Discriminator", "Embedder", "Generator", "build_generator", "build_networks"]


def _common(config: ModelConfig) -> dict:
    return dict(
        resolution=config.resolution,
        base_channels=config.base_channels,
        max_channels=config.max_channels,
        embedding_dim=config.embedding_dim,
        attention_resolutions=config.attention_resolutions,
    )


def build_generator(config: ModelConfig) -> Generator:
    return Generator(
        **_common(config),
        bottleneck_resolution=config.bottleneck_resolution,
        bottleneck_blocks=config.bottleneck_blocks,
    )


def build_networks(config: ModelConfig, num_videos: int) -> tuple[Embedder, Generator, Discriminator]:
    return Embedder(**_common(config)), build_generator(config), Discriminator(**_common(config), num_videos=num_videos)
