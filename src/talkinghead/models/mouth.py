"""The mouth generator: a small network for the mouth region alone, where the warp must stretch
closed lips over an open mouth and pixels must be invented (issue 32).

It reads, at the mouth-aligned crop's side s (64 px): the warped mouth crop (what the renderer
gives today) and the target's lips drawn (outer and inner contours), and the person through
AdaIN parameters psi = P e-hat from the paper's embedder run on the shots' mouth crops. An
encoder down to s/8, AdaIN residual blocks there and on the way up (the paper's conditioning),
skips from the encoder at s/2 and s/4, and a head that gives the synthesised mouth. Where it goes
(`blend`):

- "region" (since the third mouth run): inside the target's inner-lip polygon, grown and
  feathered (face/mouth.py `inner_mouth_mask`), the region the renderer pastes; the output is
  `region * synthesised + (1 - region) * warped`, and the generator reads the warped crop with
  part of that region hidden (`warped * (1 - hidden)`, `hidden = region * face/mouth.py
  hidden_share`: as far as the target opens wider than the shot it is warped from), as Wav2Lip
  hides the lower face: there the warp holds closed lips stretched over the opening, and a
  generator that can see them copies them (trained as pasted but seeing them, it painted closed
  lips where the drawing asked for an open mouth). Hidden always, it lost the person's own teeth
  where the shot showed them (open mouths 7 % worse than the warp in `evaluate`).
- "learned" (older files): where the head's fourth channel, a mask starting near 0 (bias -2),
  says. That mask learned to let only teeth in: about 0.2 of the inner mouth on a painting, whose
  lips then stayed shut (issue 32's opening 0.2 of the driver's; 0.92 with the same synthesis
  pasted over the whole region).

The embedder and the projection discriminator are the paper's (`Embedder`, `Discriminator`) at
the crop's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.face.mouth import DILATE
from talkinghead.models.blocks import AdaINResBlock, ResBlockDown, conv
from talkinghead.models.discriminator import Discriminator
from talkinghead.models.embedder import Embedder


@dataclass(frozen=True)
class MouthSettings:
    """The mouth networks' shape (stored in model files beside the face's config)."""

    side: int = 64  # the mouth-aligned crops' side
    channels: int = 16
    embedding_dim: int = 64
    blend: str = "region"  # where the synthesis goes: "region" (the inner mouth) or "learned" (a mask)
    dilate: float = DILATE  # the region: the inner lips grown by this many mouth widths
    # What of the warp inside the region the "region" blend hides where the target opens wider than
    # the shot: the inner lips grown by this many mouth widths (None: the whole region, as every
    # file before it). Smaller than `dilate`, the generator sees the lips around the opening (their
    # colour) and the warp's stretched band inside it stays hidden.
    hidden_dilate: float | None = None
    # The lips parted before the generator (face/parting.py `part_lips`, `Avatar.make_mouth`): the
    # shot's lips moved by two splines, and the generator hidden only from what no shot shows.
    # False in every file before it: one spline, and the hidden part from `hidden_dilate`.
    parting: bool = False

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise ValueError(f"mouth blend must be one of {', '.join(BLENDS)}, not {self.blend!r}")
        if not 0 < self.dilate <= 0.5:
            raise ValueError(f"mouth dilate must be in (0, 0.5] mouth widths, not {self.dilate}")
        if self.hidden_dilate is not None and not 0 <= self.hidden_dilate <= self.dilate:
            raise ValueError(f"mouth hidden_dilate must be in [0, dilate = {self.dilate}], not {self.hidden_dilate}")

    @classmethod
    def of(cls, values: dict) -> "MouthSettings":
        """From stored settings; files from before `blend` learned their mask, from before `dilate`
        grew the inner lips by `DILATE`, from before `hidden_dilate` hid the whole region, from before
        `parting` did not part the lips."""
        shape = {k: int(values[k]) for k in ("side", "channels", "embedding_dim")}
        hidden = values.get("hidden_dilate")
        return cls(
            **shape,
            blend=str(values.get("blend", "learned")),
            dilate=float(values.get("dilate", DILATE)),
            hidden_dilate=None if hidden is None else float(hidden),
            parting=bool(values.get("parting", False)),
        )

    def generator(self) -> "MouthGenerator":
        return MouthGenerator(
            side=self.side, channels=self.channels, embedding_dim=self.embedding_dim, blend=self.blend
        )


BLENDS = ("region", "learned")


class MouthGenerator(nn.Module):
    """(warped `[B, 3, s, s]`, lips `[B, 3, s, s]`, psi `[B, P]`, region `[B, 1, s, s]`) -> (mouth
    `[B, 3, s, s]` in [-1, 1], mask `[B, 1, s, s]`: where it is synthesised)."""

    def __init__(
        self, *, side: int = 64, channels: int = 16, embedding_dim: int = 64, blocks: int = 2, blend: str = "region"
    ):
        super().__init__()
        self.side, self.blend = side, blend
        widths = [channels, channels * 2, channels * 4]  # at s/2, s/4, s/8
        self.stem = conv(6, channels)
        self.down = nn.ModuleList(
            ResBlockDown(a, b, first=i == 0) for i, (a, b) in enumerate(zip([channels, *widths[:-1]], widths))
        )
        self.body = nn.ModuleList(AdaINResBlock(widths[2], widths[2]) for _ in range(blocks))
        self.up = nn.ModuleList(
            [
                AdaINResBlock(widths[2], widths[1], upsample=True),  # s/4, + skip
                AdaINResBlock(widths[1] * 2, widths[0], upsample=True),  # s/2, + skip
                AdaINResBlock(widths[0] * 2, channels, upsample=True),  # s
            ]
        )
        self.head = conv(channels, 3 if blend == "region" else 4)
        adain = [*self.body, *self.up]
        self.num_adain_params = sum(b.num_params for b in adain)
        self.projection = nn.Parameter(torch.randn(self.num_adain_params, embedding_dim) * 0.01)
        self.mask_bias = -2.0  # sigmoid(-2) = 12 % synthesised at first

    def adain_params(self, embedding: torch.Tensor) -> torch.Tensor:
        """psi = P e: `[B, D] -> [B, num_adain_params]`."""
        return embedding @ self.projection.t()

    def forward(
        self,
        warped: torch.Tensor,
        lips: torch.Tensor,
        psi: torch.Tensor,
        region: torch.Tensor,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`region` `[B, 1, s, s]`: the inner mouth as pasted (the "region" blend's mask); `hidden`:
        what of the warp the generator must not see (default: the region)."""
        synthesised, learned = self.synthesise(warped, lips, psi, region if hidden is None else hidden)
        mask = region.to(warped.dtype) if learned is None else learned
        return torch.lerp(warped, synthesised, mask), mask

    def synthesise(
        self, warped: torch.Tensor, lips: torch.Tensor, psi: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the synthesised mouth `[B, 3, s, s]` in [-1, 1] before the blend with `warped`, the
        learned mask `[B, 1, s, s]`, None with the "region" blend): the renderer blends the
        synthesis into frames at their own resolution, where `warped` is only their 64 px copy.
        `hidden` `[B, 1, s, s]` in [0, 1]: the part of `warped` the "region" blend does not see."""
        seen = warped * (1 - hidden.to(warped.dtype)) if self.blend == "region" else warped
        h = self.stem(torch.cat([seen, lips], 1))
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)  # s/2, s/4, s/8
        offset = 0
        for i, block in enumerate([*self.body, *self.up]):
            if i >= len(self.body) + 1:  # the up blocks after the first read the encoder's skip
                h = torch.cat([h, skips[len(self.body) + 2 - i]], 1)
            h = block(h, psi[:, offset : offset + block.num_params])
            offset += block.num_params
        out = self.head(F.relu(h))
        out = out.to(warped.dtype)  # bf16 under autocast
        learned = torch.sigmoid(out[:, 3:4] + self.mask_bias) if self.blend == "learned" else None
        return torch.tanh(out[:, :3]), learned


class MouthNetworks(nn.Module):
    """E and G of the mouth as one module (one optimizer, one state dict: `embedder.*`, `generator.*`)."""

    def __init__(self, settings: MouthSettings):
        super().__init__()
        s = settings
        self.settings = settings
        self.embedder = Embedder(
            resolution=s.side, base_channels=s.channels, max_channels=4 * s.channels, embedding_dim=s.embedding_dim
        )
        self.generator = s.generator()

    def embed(self, shots: torch.Tensor, shot_lips: torch.Tensor) -> torch.Tensor:
        """e-hat `[B, D]` of `[B, K, 3, s, s]` shots' mouth crops and their lips drawn."""
        return self.embedder.embed_shots(shots, shot_lips)

    def forward(
        self,
        shots: torch.Tensor,
        shot_lips: torch.Tensor,
        warped: torch.Tensor,
        target_lips: torch.Tensor,
        target_region: torch.Tensor,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mouth `[B, 3, s, s]`, mask `[B, 1, s, s]`, e-hat `[B, D]`); `target_region` `[B, 1, s, s]`:
        the target's inner mouth as pasted (the "region" blend's mask); `hidden` as `MouthGenerator`."""
        embedding = self.embed(shots, shot_lips)
        psi = self.generator.adain_params(embedding)
        mouth, mask = self.generator(warped, target_lips, psi, target_region, hidden)
        return mouth, mask, embedding


class MouthDiscriminator(Discriminator):
    """The paper's projection discriminator on the middle half of a mouth crop (side/2 px around
    the mouth's centre: the lips and the opening between them, little skin). Scored on the whole
    crop, whose skin, nose and chin the generator passes through from the warp, its real and
    generated scores never parted (the first run's hinge loss stayed at 2.0)."""

    def __init__(self, settings: MouthSettings, num_videos: int):
        s = settings
        super().__init__(
            resolution=s.side // 2, base_channels=s.channels, max_channels=4 * s.channels,
            embedding_dim=s.embedding_dim, num_videos=num_videos,
        )  # fmt: skip
        self.side = s.side

    def forward(
        self, frames: torch.Tensor, landmark_images: torch.Tensor, person: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Frames and lips drawn `[B, 3, side, side]`; person as `Discriminator.forward`."""
        a, b = self.side // 4, self.side // 4 + self.side // 2
        return super().forward(frames[..., a:b, a:b], landmark_images[..., a:b, a:b], person)


INNER_LIP_POINTS = slice(12, 20)  # landmarks 60-67 among the 20 lip points (48-67)


def normalise_points(points: torch.Tensor, side: int) -> torch.Tensor:
    """Crop pixels (OpenCV's: pixel centres at integers) -> `grid_sample`'s [-1, 1] units."""
    return (points + 0.5) * (2.0 / side) - 1.0


def crop_pixels(points: torch.Tensor, side: int) -> torch.Tensor:
    """The inverse of `normalise_points`."""
    return (points + 1.0) * (side / 2.0) - 0.5


class LipLocator(nn.Module):
    """`[B, 3, s, s]` mouth-aligned crop in [-1, 1] -> `[B, 20, 2]` its lip landmarks (48-67) in
    `normalise_points` units: a small regressor trained on real crops (training/lips.py), frozen,
    whose reading of a generated mouth is the mouth trainer's lip loss (`LossConfig.lips`): the
    lips must be where the drawing puts them, which L1 and VGG at 64 px reward only as a soft
    average (docs/training.md, the sixth mouth run). Four stride-2 convolutions to s/16, two
    linear layers."""

    def __init__(self, side: int = 64, channels: int = 16):
        super().__init__()
        self.side, self.channels = side, channels
        widths, layers, previous = [channels, 2 * channels, 4 * channels, 4 * channels], [], 3
        for width in widths:
            layers += [nn.Conv2d(previous, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            previous = width
        self.features = nn.Sequential(*layers, nn.Conv2d(previous, previous, 3, 1, 1), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(previous * (side // 16) ** 2, 256), nn.LeakyReLU(0.2), nn.Linear(256, 40)
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(crops)).view(-1, 20, 2)


def mouth_discriminator(settings: MouthSettings, num_videos: int) -> MouthDiscriminator:
    """The mouth's projection discriminator, one row of W per training video."""
    return MouthDiscriminator(settings, num_videos)
