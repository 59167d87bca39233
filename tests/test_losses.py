"""Each loss term on known cases, and weights of 0 skipping terms."""

from __future__ import annotations

import pytest
import torch

from talkinghead.config import LossConfig
from talkinghead.training.losses import (
    ContentLoss,
    GeneratorLoss,
    discriminator_hinge_loss,
    embedding_match_loss,
    feature_matching_loss,
    generator_hinge_loss,
    region_l1_loss,
)


def test_hinge_losses():
    assert discriminator_hinge_loss(torch.tensor([2.0]), torch.tensor([-2.0])) == 0
    assert discriminator_hinge_loss(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert discriminator_hinge_loss(torch.tensor([0.5, 3.0]), torch.tensor([0.0, -1.0])) == pytest.approx(0.25 + 0.5)
    assert generator_hinge_loss(torch.tensor([1.0, 3.0])) == -2


def test_feature_matching_pulls_only_the_fake_side():
    real = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    assert feature_matching_loss(real, [r.detach().clone() for r in real]) == 0
    fake = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert loss > 0 and real[0].grad is None and fake[0].grad is not None


def test_embedding_match_is_l1():
    assert embedding_match_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])) == pytest.approx(1.5)


def test_the_region_l1_counts_only_inside_the_region_over_its_area():
    real, fake = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    region = torch.zeros(1, 1, 8, 8)
    region[..., 2:4, 2:4] = 1.0  # 4 of 64 pixels
    fake[..., 2:4, 2:4] = 0.5
    assert region_l1_loss(fake, real, region) == pytest.approx(0.5)  # not diluted by the other 60
    fake[..., 6:, 6:] = 1.0  # outside: does not count
    assert region_l1_loss(fake, real, region) == pytest.approx(0.5)
    loss = GeneratorLoss(LossConfig(vgg=0, face=0, adversarial=0, feature_matching=0, embedding_match=0, region=2.0))
    _, terms = loss(real=real, fake=fake, fake_scores=torch.zeros(1), real_features=[], fake_features=[], region=region)
    assert set(terms) == {"region"} and terms["region"] == pytest.approx(1.0)


def test_zero_weights_skip_terms_and_networks():
    loss = GeneratorLoss(LossConfig(vgg=0, face=0, adversarial=1, feature_matching=0, embedding_match=0))
    assert loss.content is None  # no feature network loaded at all
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    total, terms = loss(real=real, fake=real, fake_scores=torch.tensor([0.5, 1.5]), real_features=[], fake_features=[])
    assert set(terms) == {"adversarial"} and total == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def content():
    return ContentLoss(vgg_weight=1.0, face_weight=1.0)


def test_content_loss_zero_for_identical_and_growing_with_noise(content, astronaut):
    image = torch.from_numpy(astronaut[:256:2, 128:384:2].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    same = content(image, image)
    assert same["vgg"] == 0 and same["face"] == 0
    values = []
    for sigma in (0.05, 0.2, 0.5):
        noisy = (image + sigma * torch.randn_like(image, generator=None)).clamp(-1, 1)
        terms = content(image, noisy)
        values.append((terms["vgg"].item(), terms["face"].item()))
    assert values[0][0] < values[1][0] < values[2][0]
    assert values[0][1] < values[1][1] < values[2][1]


def test_content_loss_gradient_reaches_the_fake_only(content):
    real = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_()
    fake = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_()
    terms = content(real, fake)
    (terms["vgg"] + terms["face"]).backward()
    assert real.grad is None or real.grad.abs().sum() == 0
    assert fake.grad.abs().sum() > 0


def test_content_loss_with_precomputed_real_features_is_the_same(content, astronaut):
    # Fine-tuning computes the shots' features once and passes them every step.
    real = torch.from_numpy(astronaut[:256:2, 128:384:2].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    real = torch.cat([real, real.flip(-1)])
    fake = (real + 0.2 * torch.randn_like(real)).clamp(-1, 1).requires_grad_()
    direct = content(real, fake)
    grad = torch.autograd.grad(sum(direct.values()), fake)[0]
    features = content.real_features(real)
    cached = content(real, fake, features)
    cached_grad = torch.autograd.grad(sum(cached.values()), fake)[0]
    for name in ("vgg", "face"):
        assert cached[name].item() == pytest.approx(direct[name].item(), rel=1e-5)
    assert torch.allclose(cached_grad, grad, atol=1e-6)
    one = content(real[[1]], fake[[1]], {name: [f[[1]] for f in values] for name, values in features.items()})
    assert one["vgg"].item() == pytest.approx(content(real[[1]], fake[[1]])["vgg"].item(), rel=1e-5)


def test_the_lpips_term_is_the_evaluations_distance_and_descends(astronaut):
    # The mouth trainer's `--lpips`: the distance `evaluate` scores, with gradients to the fake.
    from talkinghead.evaluation.metrics import LPIPS

    real = torch.from_numpy(astronaut[:256:4, 128:384:4].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    blurred = torch.nn.functional.avg_pool2d(real, 5, 1, 2, count_include_pad=False)
    loss = GeneratorLoss(LossConfig(vgg=0, face=0, adversarial=0, feature_matching=0, embedding_match=0, lpips=2.0))
    fake = blurred.clone().requires_grad_()
    _, terms = loss(real=real, fake=fake, fake_scores=torch.zeros(1), real_features=[], fake_features=[])
    assert set(terms) == {"lpips"}
    assert terms["lpips"].item() == pytest.approx(2 * LPIPS()(real, blurred).item(), rel=1e-4)
    terms["lpips"].backward()
    with torch.no_grad():
        stepped = fake - 0.02 * fake.grad / fake.grad.abs().max()
        after = loss(real=real, fake=stepped, fake_scores=torch.zeros(1), real_features=[], fake_features=[])[1]
    assert 0 < after["lpips"] < terms["lpips"]
