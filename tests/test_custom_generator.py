"""A generator is one file + one line: a class and its settings, defined here and registered with
`register_generator`, meta-learns, fits, saves, loads and animates without any change to the
package (docs/architecture.md, "Adding a generator")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead.models import GENERATORS, GeneratorInputs, GeneratorOutput, register_generator


@dataclass
class BlendSettings:
    """The `model.blend` config section."""

    width: int = field(default=4, metadata={"range": (1, 64)})


class BlendGenerator(nn.Module):
    """The nearest shot's pixels tinted by psi, plus a convolution of the driving landmarks: the
    smallest generator that reads the shots, the points and the embedding."""

    def __init__(self, *, resolution: int, embedding_dim: int, width: int):
        super().__init__()
        self.resolution = resolution
        self.landmarks = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))
        self.projection = nn.Linear(embedding_dim, 3)

    def adain_params(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.projection(embedding)  # [B, 3]: a colour shift per person

    def forward(self, inputs: GeneratorInputs, psi: torch.Tensor) -> GeneratorOutput:
        distance = (inputs.source_points - inputs.driving_points[:, None]).norm(dim=-1).mean(-1)  # [B, K]
        nearest = distance.argmin(1)
        shot = inputs.source_frames[torch.arange(len(inputs)), nearest]
        frame = torch.tanh(shot + 0.1 * self.landmarks(inputs.driving_landmark_images) + psi[:, :, None, None])
        return GeneratorOutput(frame=frame, shots=nearest[:, None])


@pytest.fixture
def blend_registered():
    register_generator("blend", BlendSettings)(BlendGenerator)
    yield
    del GENERATORS["blend"]


@pytest.mark.slow
def test_a_generator_defined_outside_the_package_trains_fits_and_animates(
    blend_registered, tiny_data, tmp_path, astronaut
):
    from talkinghead.checkpoint import export_model, list_checkpoints, load_model
    from talkinghead.config import load_config
    from talkinghead.inference.avatar import Avatar
    from talkinghead.inference.fitting import FitOptions, fit_avatar
    from talkinghead.training.train import train

    config = load_config("tiny", ["model.generator=blend", "model.blend.width=3", "train.steps=2"])
    assert config.model.settings == BlendSettings(width=3)
    with pytest.raises(ValueError, match="model.blend.width: must be in 1..64"):
        load_config("tiny", ["model.generator=blend", "model.width=0"])

    result = train(tiny_data, config, tmp_path / "run", progress=False)
    assert result.step == 2 and isinstance(result.embedder_generator.generator, BlendGenerator)
    model_file = export_model(list_checkpoints(tmp_path / "run" / "checkpoints")[-1], tmp_path / "blend.safetensors")
    model = load_model(model_file)
    assert model.config.model.settings == BlendSettings(width=3)

    for steps in (0, 2):  # feed-forward, and fine-tuned through the shared adversarial step
        avatar = fit_avatar([astronaut, np.ascontiguousarray(astronaut[:, ::-1])], model=model, shots=2,
                            options=FitOptions(steps=steps))  # fmt: skip
        assert isinstance(avatar.generator, BlendGenerator) and avatar.steps == steps
        landmarks = avatar.shot_landmarks + np.float32([1.0, 0.0])
        frames = np.stack(list(avatar.generate(landmarks)))
        assert frames.shape == (2, 32, 32, 3) and frames.std() > 5
        avatar.save(tmp_path / "blend.avatar")
        loaded = np.stack(list(Avatar.load(tmp_path / "blend.avatar").generate(landmarks)))
        assert np.array_equal(loaded, frames)
    # psi reaches the frame: another person's vector tints it.
    with torch.no_grad():
        inputs = avatar.generator_inputs(landmarks)
        own = avatar.runtime_generator()(inputs, avatar.psi.expand(2, -1))
        other = avatar.runtime_generator()(inputs, avatar.psi.expand(2, -1) + 0.5)
    assert (own.frame - other.frame).abs().mean() > 0.05 and own.shots.shape == (2, 1)
