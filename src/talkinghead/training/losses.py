"""The paper's losses (§3.2) as small functions, and the content loss's feature networks.

Generator side:  L = L_CNT + L_ADV + L_MCH, with L_ADV = -D(x-hat) + L_FM.
Discriminator side: hinge loss, max(0, 1 + D(x-hat)) + max(0, 1 - D(x)).

Every term has a weight in `LossConfig`; a weight of 0 skips the term (and, for the content loss,
never loads its network).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.config import LossConfig
from talkinghead.features.lpips import LPIPS


def generator_hinge_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-D(x-hat), averaged: the generator raises the realism score of its frames."""
    return -fake_scores.mean()


def discriminator_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """L1 between the discriminator's features of real and generated frames (real ones fixed)."""
    return sum(F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features)) / len(real_features)


def region_l1_loss(fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Pixel L1 weighted by `region` `[B, 1, H, W]` in [0, 1], averaged over the region's area (so
    a small region weighs as much as a whole frame would)."""
    area = region.sum() * fake.shape[1]
    return ((fake - real).abs() * region).sum() / area.clamp_min(1.0)


def lip_points_loss(locator: nn.Module, fake: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """L1 between the inner-lip landmarks (60-67) a frozen `LipLocator` reads in generated mouth
    crops `[B, 3, s, s]` and the targets' (`points` `[B, 20, 2]`, lips 48-67 in crop pixels), in
    [-1, 1] crop units. The inner contour only: the outer lips lie outside the region the
    generator paints and are the warp's (on all 20 points, the seventh run: docs/training.md).
    Crops of another side than the locator's are resized to it first (the units do not change)."""
    from talkinghead.models.mouth import INNER_LIP_POINTS as inner
    from talkinghead.models.mouth import normalise_points

    side = fake.shape[-1]
    if side != locator.side:
        fake = F.interpolate(fake, size=(locator.side,) * 2, mode="bilinear", align_corners=False, antialias=True)
    return F.l1_loss(locator(fake)[:, inner].float(), normalise_points(points[:, inner], side))


def embedding_match_loss(embedding: torch.Tensor, video_vector: torch.Tensor) -> torch.Tensor:
    """L1 between the embedder's e-hat and the discriminator's W_i (paper's L_MCH(phi, W)).

    Both sides move toward each other. Since E and W have different optimizers, the training loop
    applies it twice: in the generator step with W_i fixed (moves E), in the discriminator step
    with e-hat fixed (moves W_i). Detach the side that must not move before calling.
    """
    return F.l1_loss(embedding, video_vector)


class ContentLoss(nn.Module):
    """Weighted L1 between features of real and generated frames in two pretrained networks.

    Paper: VGG19 (ImageNet) and VGGFace. Here: VGG16 (ImageNet) at relu1_1..relu5_1 and FaceNet
    (CASIA-WebFace) at five depths, on the central face region resized to its 160 px input.
    Frames `[B, 3, H, W]` in [-1, 1].
    """

    def __init__(self, vgg_weight: float, face_weight: float):
        super().__init__()
        from talkinghead.features import load_facenet, load_vgg16

        self.vgg_weight, self.face_weight = vgg_weight, face_weight
        self.vgg = load_vgg16() if vgg_weight else None
        self.facenet = load_facenet() if face_weight else None

    def _networks(self):
        from talkinghead.features.facenet import face_input
        from talkinghead.features.vgg import imagenet_normalize

        if self.vgg is not None:
            yield "vgg", self.vgg_weight, lambda x: self.vgg.features(imagenet_normalize(x))
        if self.facenet is not None:
            yield "face", self.face_weight, lambda x: self.facenet.features(face_input(x))

    @torch.no_grad()
    def real_features(self, real: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Each network's features of fixed real frames, to reuse across steps (fine-tuning)."""
        return {name: features(real) for name, _, features in self._networks()}

    def forward(
        self, real: torch.Tensor, fake: torch.Tensor, real_features: dict[str, list[torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor]:
        """`real_features`: `real_features(real)` computed before, which skips the real half."""
        terms: dict[str, torch.Tensor] = {}
        for name, weight, features in self._networks():
            if real_features is None:
                pairs = [f.chunk(2) for f in features(torch.cat([real, fake]))]
            else:
                pairs = zip(real_features[name], features(fake))
            terms[name] = weight * sum(F.l1_loss(f, r.detach()) for r, f in pairs)
        return terms


class GeneratorLoss(nn.Module):
    """All the generator-side terms; returns the total and each weighted term (for logging)."""

    def __init__(self, config: LossConfig, lip_locator: nn.Module | None = None):
        """`lip_locator`: a frozen `LipLocator`, for `config.lips` (the mouth trainer's)."""
        super().__init__()
        self.config = config
        self.content = ContentLoss(config.vgg, config.face) if (config.vgg or config.face) else None
        self.lpips = LPIPS() if config.lpips else None
        self.lip_locator = lip_locator

    def forward(
        self,
        *,
        real: torch.Tensor,
        fake: torch.Tensor,
        fake_scores: torch.Tensor,
        real_features: list[torch.Tensor],
        fake_features: list[torch.Tensor],
        embedding: torch.Tensor | None = None,
        video_vector: torch.Tensor | None = None,
        real_content: dict[str, list[torch.Tensor]] | None = None,
        synthesis: torch.Tensor | None = None,
        region: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`real_content`: the content networks' features of `real`, when computed once before;
        `synthesis`: the warp generator's synthesised frame before its blend, `[B, 3, H, W]`;
        `region`: `[B, 1, H, W]` in [0, 1], where `LossConfig.region` weighs the pixel L1;
        `points`: `[B, 20, 2]` the targets' lip landmarks in crop pixels, for `LossConfig.lips`."""
        c = self.config
        terms: dict[str, torch.Tensor] = {}
        if self.content is not None:
            terms.update(self.content(real, fake, real_content))
        if self.lpips is not None:
            terms["lpips"] = c.lpips * self.lpips.distance(real, fake).mean()
        if c.l1:
            terms["l1"] = c.l1 * F.l1_loss(fake, real)
        if c.synthesis and synthesis is not None:
            terms["synthesis"] = c.synthesis * F.l1_loss(synthesis, real)
        if c.region and region is not None:
            terms["region"] = c.region * region_l1_loss(fake, real, region)
        if c.lips and points is not None and self.lip_locator is not None:
            terms["lips"] = c.lips * lip_points_loss(self.lip_locator, fake, points)
        if c.adversarial:
            terms["adversarial"] = c.adversarial * generator_hinge_loss(fake_scores)
        if c.feature_matching:
            terms["feature_matching"] = c.feature_matching * feature_matching_loss(real_features, fake_features)
        if c.embedding_match and embedding is not None and video_vector is not None:
            terms["embedding_match"] = c.embedding_match * embedding_match_loss(embedding, video_vector.detach())
        total = sum(terms.values()) if terms else fake.sum() * 0
        return total, terms
