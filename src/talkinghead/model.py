"""The meta-learned model: a config and the three networks built from it (paper §3.1).

`checkpoint.load_model` reads one from a model file or a training checkpoint; `build_model` makes
fresh networks for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from talkinghead.config import Config, ModelConfig
from talkinghead.face.mouth import OPEN, lip_gap
from talkinghead.models import Discriminator, Embedder, generator_entry
from talkinghead.models.mouth import MouthNetworks, MouthSettings


def _shared(config: ModelConfig) -> dict:
    """The settings every network of a model shares."""
    return dict(
        resolution=config.resolution,
        base_channels=config.base_channels,
        max_channels=config.max_channels,
        embedding_dim=config.embedding_dim,
        attention_resolutions=config.attention_resolutions,
    )


def build_generator(config: ModelConfig) -> nn.Module:
    """The registered generator `config.generator` with its section of the config."""
    return generator_entry(config.generator).build(_shared(config), config.settings)


@dataclass
class Mouth:
    """The meta-learned mouth (issue 32): its embedder and generator, and its projection
    discriminator with a one-row W (fine-tuning gives it the person's w' = w0 + e-hat)."""

    settings: MouthSettings
    networks: MouthNetworks
    discriminator: Discriminator


@dataclass
class Model:
    """A meta-learned model: its config and the three networks (`checkpoint.load_model` makes one),
    and the mouth's networks when the file has them (None: the warp's mouth is kept); `closed_mouth`:
    the one `fit` uses instead for a person whose mouth is closed in every shot (a painting's), as
    `mouth_for` chooses."""

    config: Config
    embedder: Embedder
    generator: nn.Module
    discriminator: Discriminator
    mouth: Mouth | None = None
    closed_mouth: Mouth | None = None

    def mouth_for(self, landmarks: np.ndarray) -> Mouth | None:
        """The mouth for shots with `[T, 68, 2]` landmarks: `closed_mouth` when the file has one and
        no shot's lip gap is above face/mouth.py `OPEN` (there the warp can only stretch closed lips
        over an opening, and the "region" mouth hides them), else `mouth`."""
        if self.closed_mouth is not None and float(lip_gap(np.asarray(landmarks, np.float64)).max()) <= OPEN:
            return self.closed_mouth
        return self.mouth

    @property
    def resolution(self) -> int:
        return self.config.model.resolution

    def networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return self.embedder, self.generator, self.discriminator


def build_model(config: Config, num_videos: int) -> Model:
    """Fresh networks for a config; D gets one row of W per training video."""
    shared = _shared(config.model)
    return Model(
        config, Embedder(**shared), build_generator(config.model), Discriminator(**shared, num_videos=num_videos)
    )
