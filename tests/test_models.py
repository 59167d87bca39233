"""The three networks: shapes, AdaIN conditioning, projection discriminator, spectral norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from talkinghead.config import Config, load_config
from talkinghead.model import build_generator, build_model
from talkinghead.models import GENERATORS, GeneratorInputs
from talkinghead.models.blocks import AdaIN, SelfAttention


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = load_config("tiny")
    # eval(): spectral norm then reuses its power-iteration vectors instead of advancing them on
    # every forward, so repeated calls are comparable.
    return config.model, *(network.eval() for network in build_model(config, num_videos=5).networks())


def _inputs(landmark_images: torch.Tensor) -> GeneratorInputs:
    return GeneratorInputs(driving_landmark_images=landmark_images)


def _images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_ranges(tiny):
    config, embedder, generator, discriminator = tiny
    R, D = config.resolution, config.embedding_dim
    frames, landmarks = _images(6, R, 0).view(2, 3, 3, R, R), _images(6, R, 1).view(2, 3, 3, R, R)
    embedding = embedder.embed_shots(frames, landmarks)
    assert embedding.shape == (2, D) and (embedding >= 0).all()  # ReLU after sum pooling
    fake = generator(_inputs(landmarks[:, 0]), generator.adain_params(embedding)).frame
    assert fake.shape == (2, 3, R, R) and fake.abs().max() <= 1
    scores, features = discriminator(fake, landmarks[:, 0], torch.tensor([0, 4]))
    assert scores.shape == (2,) and len(features) >= 4
    assert features[0].shape[-1] == R // 2 and features[-1].shape[-1] == 4


def test_embedding_mean_over_shots(tiny):
    _, embedder, _, _ = tiny
    frames, landmarks = _images(3, 32, 2), _images(3, 32, 3)
    one_by_one = embedder(frames, landmarks).mean(0)
    together = embedder.embed_shots(frames[None], landmarks[None])[0]
    torch.testing.assert_close(together, one_by_one)


def test_identity_embedding_changes_the_output_through_adain(tiny):
    _, embedder, generator, _ = tiny
    landmarks = _images(1, 32, 4)
    e1 = embedder(_images(1, 32, 5), landmarks)
    e2 = embedder(_images(1, 32, 6), landmarks)
    assert not torch.allclose(e1, e2)
    out1 = generator(_inputs(landmarks), generator.adain_params(e1)).frame
    out2 = generator(_inputs(landmarks), generator.adain_params(e2)).frame
    assert (out1 - out2).abs().mean() > 1e-5
    # The embedding reaches the image only through the AdaIN parameters psi = P e: the gradient
    # of the output reaches P, and psi has one (scale, bias) pair per AdaIN channel.
    generator.zero_grad()
    generator(_inputs(landmarks), generator.adain_params(e1)).frame.sum().backward()
    assert generator.projection.grad.abs().sum() > 0
    adains = [m for m in generator.modules() if isinstance(m, AdaIN)]
    assert generator.num_adain_params == sum(2 * m.channels for m in adains) > 0
    # Each psi entry acts: moving one block's slice of psi changes the output.
    psi = generator.adain_params(e1).detach()
    moved = psi.clone()
    moved[:, -2 * adains[-1].channels :] += 0.5  # the last AdaIN's scales and biases
    assert (generator(_inputs(landmarks), moved).frame - generator(_inputs(landmarks), psi).frame).abs().mean() > 1e-4


def test_adain_with_zero_parameters_is_instance_norm_and_scales_otherwise():
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3 + 1
    adain = AdaIN(4)
    zero = torch.zeros(2, adain.num_params)
    normalised = (x - x.mean((2, 3), keepdim=True)) / (x.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(adain(x, zero), normalised, atol=1e-5, rtol=1e-5)
    params = torch.cat([torch.full((2, 4), 1.0), torch.full((2, 4), 0.25)], dim=1)  # scale 1 -> x2, bias 0.25
    torch.testing.assert_close(adain(x, params), 2 * normalised + 0.25, atol=1e-5, rtol=1e-5)


def test_discriminator_uses_the_video_column(tiny):
    _, _, _, discriminator = tiny
    frames, landmarks = _images(1, 32, 7), _images(1, 32, 8)
    with torch.no_grad():
        discriminator.W.weight[1] = 1.0
        discriminator.W.weight[2] = -1.0
    s1, _ = discriminator(frames, landmarks, torch.tensor([1]))
    s2, _ = discriminator(frames, landmarks, torch.tensor([2]))
    assert not torch.allclose(s1, s2)
    discriminator.zero_grad()
    s1.sum().backward()
    grad = discriminator.W.weight.grad
    assert grad[1].abs().sum() > 0 and grad[[0, 2, 3, 4]].abs().sum() == 0
    # score = V(x, y) . (W_i + w0) + b: with an explicit vector the same formula applies.
    explicit, _ = discriminator(frames, landmarks, discriminator.W.weight[1:2])
    torch.testing.assert_close(explicit, s1)


def test_spectral_norm_everywhere_and_attention_where_asked():
    config = load_config(
        "cpu", ["model.resolution=64", "model.bottleneck_resolution=8", "model.attention_resolutions=[32, 16]"]
    ).model
    networks = build_model(Config(model=config), num_videos=3).networks()
    for network in networks:
        for name, module in network.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                assert hasattr(module, "parametrizations") and "weight" in module.parametrizations, name
    embedder, generator, discriminator = networks
    # 64 px: attention after the blocks that reach 32 and 16 px (G: down and up paths).
    assert sum(isinstance(m, SelfAttention) for m in embedder.modules()) == 2
    assert sum(isinstance(m, SelfAttention) for m in generator.modules()) == 4


@pytest.mark.parametrize(
    "name, size", [("tiny", 32), ("cpu", 128), ("paper", 256), ("cpu-warp", 128), ("cpu-warp-lean", 128)]
)
def test_presets_build_networks_that_run_at_their_resolution(name, size):
    config = load_config(name)
    assert config.model.resolution == size
    torch.manual_seed(0)
    model = build_model(config, num_videos=2)
    landmarks, frames = torch.zeros(1, 3, size, size), torch.zeros(1, 1, 3, size, size)
    points = torch.rand(1, 68, 2) * size * 0.5 + size * 0.25  # the warp generators read them
    inputs = GeneratorInputs.of(
        driving_landmark_images=landmarks,
        driving_points=points + 1.0,
        source_frames=frames,
        source_landmark_images=landmarks[None],
        source_points=points[None],
    )
    with torch.no_grad():
        embedding = model.embedder.embed_shots(frames, landmarks[None])
        fake = model.generator(inputs, model.generator.adain_params(embedding)).frame
        score, _ = model.discriminator(fake, landmarks, torch.tensor([1]))
    assert embedding.shape == (1, config.model.embedding_dim) and fake.shape == (1, 3, size, size)
    assert score.shape == (1,) and torch.isfinite(score).all()


def test_config_errors_and_generator_dispatch():
    with pytest.raises(ValueError, match="power of two"):
        load_config("tiny", ["model.resolution=48"])
    with pytest.raises(ValueError, match="expected section.key=value"):
        load_config("tiny", ["steps=3"])
    with pytest.raises(ValueError, match="model.generator: 'nope' is not one of adain, warp"):
        load_config("tiny", ["model.generator=nope"])
    # The dispatch: each registered name builds its own class with its own section of the config.
    for name, entry in GENERATORS.items():
        config = load_config("tiny", [f"model.generator={name}"]).model
        assert type(build_generator(config)) is entry.cls and type(config.settings) is entry.settings
    # Model files written before `model.generator` existed load as the paper's generator.
    assert load_config("tiny").model.generator == "adain"
