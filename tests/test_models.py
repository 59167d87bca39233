"""The three networks: shapes, AdaIN conditioning, projection discriminator, spectral norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from talkinghead.config import load_config
from talkinghead.models import build_networks
from talkinghead.models.blocks import SelfAttention


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = load_config("tiny").model
    # eval(): spectral norm then reuses its power-iteration vectors instead of advancing them on
    # every forward, so repeated calls are comparable.
    return config, *(network.eval() for network in build_networks(config, num_videos=5))


def _images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_ranges(tiny):
    config, embedder, generator, discriminator = tiny
    R, D = config.resolution, config.embedding_dim
    frames, landmarks = _images(6, R, 0).view(2, 3, 3, R, R), _images(6, R, 1).view(2, 3, 3, R, R)
    embedding = embedder.embed_shots(frames, landmarks)
    assert embedding.shape == (2, D) and (embedding >= 0).all()  # ReLU after sum pooling
    fake = generator(landmarks[:, 0], generator.adain_params(embedding))
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
    out1 = generator(landmarks, generator.adain_params(e1))
    out2 = generator(landmarks, generator.adain_params(e2))
    assert (out1 - out2).abs().mean() > 1e-5
    # The embedding reaches the image only through the AdaIN parameters psi = P e.
    psi = generator.adain_params(e1).detach().requires_grad_()
    generator(landmarks, psi).sum().backward()
    assert psi.grad.abs().sum() > 0
    assert psi.shape[1] == generator.num_adain_params
    # With zero psi every AdaIN is a plain instance norm: same output whatever the embedding.
    zero = torch.zeros_like(psi)
    torch.testing.assert_close(generator(landmarks, zero), generator(landmarks, zero.clone()))


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
    explicit, _ = discriminator.score_with(frames, landmarks, discriminator.W.weight[1:2])
    torch.testing.assert_close(explicit, s1)


def test_spectral_norm_everywhere_and_attention_where_asked():
    config = load_config(
        "cpu", ["model.resolution=64", "model.bottleneck_resolution=8", "model.attention_resolutions=[32, 16]"]
    ).model
    networks = build_networks(config, num_videos=3)
    for network in networks:
        for name, module in network.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                assert hasattr(module, "parametrizations") and "weight" in module.parametrizations, name
    embedder, generator, discriminator = networks
    # 64 px: attention after the blocks that reach 32 and 16 px (G: down and up paths).
    assert sum(isinstance(m, SelfAttention) for m in embedder.modules()) == 2
    assert sum(isinstance(m, SelfAttention) for m in generator.modules()) == 4


def test_presets_build():
    for name, size in (("tiny", 32), ("cpu", 128), ("paper", 256)):
        config = load_config(name).model
        assert config.resolution == size
    with pytest.raises(ValueError, match="power of two"):
        load_config("tiny", ["model.resolution=48"])
    with pytest.raises(ValueError, match="expected section.key=value"):
        load_config("tiny", ["steps=3"])
