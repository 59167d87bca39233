"""The generator registry: a generator is one file that declares its class and its settings, and
registers them with one line.

    @dataclass
    class MySettings:                      # the `model.my` section of a config
        width: int = field(default=32, metadata={"range": (1, 4096)})

    @register_generator("my", MySettings)
    class MyGenerator(nn.Module):
        def __init__(self, *, resolution, embedding_dim, width): ...
        def adain_params(self, embedding): ...          # [B, D] -> psi [B, P]
        def forward(self, inputs: GeneratorInputs, psi) -> GeneratorOutput: ...

`model.generator = "my"` in a config then builds it (`talkinghead.model.build_generator`), trains
it, fits it and animates with it; nothing else names it. The constructor gets every field of its
settings and those of the shared model settings (`resolution`, `base_channels`, `max_channels`,
`embedding_dim`, `attention_resolutions`) that it names as keyword arguments.

This module imports nothing of the package: the config (above the networks) reads the registry,
the networks fill it.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    cls: type[nn.Module]
    settings: type  # a dataclass: the generator's own config section, with its defaults

    def build(self, shared: dict[str, Any], settings: Any) -> nn.Module:
        """The network, from the shared model settings and an instance of `self.settings`."""
        accepted = inspect.signature(self.cls).parameters
        common = {k: v for k, v in shared.items() if k in accepted}
        return self.cls(**common, **dataclasses.asdict(settings))


GENERATORS: dict[str, GeneratorEntry] = {}


def register_generator(name: str, settings: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make `model.generator = name` build this class with `settings` as its
    config section (`model.<name>`)."""
    if not dataclasses.is_dataclass(settings):
        raise TypeError(f"generator {name!r}: its settings must be a dataclass, got {settings!r}")

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        GENERATORS[name] = GeneratorEntry(name, cls, settings)
        return cls

    return register


def generator_entry(name: str) -> GeneratorEntry:
    """The registered generator called `name`; KeyError names the known ones."""
    if name not in GENERATORS:
        raise KeyError(f"not one of {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name]
