"""The paper's networks. Pure `nn.Module`s with keyword constructors: no devices, files, configs or
pre-processing here (`talkinghead.model` builds them from a config).

A generator is any module with `adain_params(embedding [B, D]) -> psi [B, P]` and
`forward(inputs: GeneratorInputs, psi) -> GeneratorOutput`, registered with its settings by
`register_generator` (registry.py); importing this package registers the two built in.
"""

from talkinghead.models.discriminator import Discriminator
from talkinghead.models.embedder import Embedder
from talkinghead.models.generator import AdaINGenerator, AdaINSettings
from talkinghead.models.inputs import GeneratorInputs, GeneratorOutput
from talkinghead.models.registry import GENERATORS, generator_entry, register_generator
from talkinghead.models.warp import WarpGenerator, WarpSettings

__all__ = [
    "AdaINGenerator",
    "AdaINSettings",
    "Discriminator",
    "Embedder",
    "GENERATORS",
    "GeneratorInputs",
    "GeneratorOutput",
    "WarpGenerator",
    "WarpSettings",
    "generator_entry",
    "register_generator",
]
