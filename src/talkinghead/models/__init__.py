"""The paper's networks. Pure `nn.Module`s: no devices, files or pre-processing here.

A generator is any module with `adain_params(embedding [B, D]) -> psi [B, P]` and
`forward(inputs: GeneratorInputs, psi) -> frames [B, 3, R, R] in [-1, 1]`; `model.generator` in
the config picks one from `GENERATORS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from torch import nn

from ..config import ModelConfig
from ..errors import UsageError
from .discriminator import Discriminator
from .embedder import Embedder
from .generator import AdaINGenerator
from .inputs import GeneratorInputs
from .warp import WarpGenerator

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "AdaINGenerator",
    "Discriminator",
    "Embedder",
    "GENERATORS",
    "GeneratorInputs",
    "Model",
    "WarpGenerator",
    "build_generator",
    "build_model",
]


def _common(config: ModelConfig) -> dict:
    return dict(
        resolution=config.resolution,
        base_channels=config.base_channels,
        max_channels=config.max_channels,
        embedding_dim=config.embedding_dim,
        attention_resolutions=config.attention_resolutions,
    )


def _adain(config: ModelConfig) -> AdaINGenerator:
    return AdaINGenerator(
        **_common(config),
        bottleneck_resolution=config.bottleneck_resolution,
        bottleneck_blocks=config.bottleneck_blocks,
    )


def _warp(config: ModelConfig) -> WarpGenerator:
    return WarpGenerator(
        **{k: v for k, v in _common(config).items() if k != "attention_resolutions"},
        bottleneck_blocks=config.bottleneck_blocks,
        motion_channels=config.motion_channels,
        dense_motion=config.dense_motion,
        fuse_shots=config.fuse_shots,
        fusion_temperature=config.fusion_temperature,
        fusion_prior=config.fusion_prior,
        fusion_sigma=config.fusion_sigma,
        fusion_agreement=config.fusion_agreement,
        prior_downsample=config.prior_downsample,
        prior_regularization=config.prior_regularization,
        blend_bias=config.blend_bias,
        decoder_landmarks=config.decoder_landmarks,
        mouth_prior=config.mouth_prior,
        residual_flow=config.residual_flow,
        occlusion=config.occlusion,
    )


GENERATORS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "adain": _adain,
    "warp": _warp,
}


def build_generator(config: ModelConfig) -> nn.Module:
    if config.generator not in GENERATORS:
        raise UsageError(f"model.generator {config.generator!r}: not one of {', '.join(GENERATORS)}")
    return GENERATORS[config.generator](config)


@dataclass
class Model:
    """A meta-learned model: its config and the three networks (`checkpoint.load_model` makes one)."""

    config: "Config"
    embedder: Embedder
    generator: nn.Module
    discriminator: Discriminator

    @property
    def resolution(self) -> int:
        return self.config.model.resolution

    def networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return self.embedder, self.generator, self.discriminator


def build_model(config: "Config", num_videos: int) -> Model:
    """Fresh networks for a config; D gets one row of W per training video."""
    m = config.model
    return Model(
        config,
        Embedder(**_common(m)),
        build_generator(m),
        Discriminator(**_common(m), num_videos=num_videos),
    )
