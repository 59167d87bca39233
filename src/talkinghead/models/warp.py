"""The warp-guided generator: move the shots' own pixels, synthesise only what moving cannot give.

For each of the K shots (tensors at the model's resolution R):

1. prior flow: a thin-plate spline from the driving landmarks to the shot's, with fixed border
   points (flow.py; `prior_regularization` smooths it), as a `grid_sample` grid `[B*K, R, R, 2]`;
2. dense motion (`DenseMotion`): from the driving landmark image, the shot's landmark image and
   the prior-warped shot, at R/2, a residual flow (zero at initialisation), an occlusion mask
   (visible at initialisation) and a fusion logit (`dense_motion=False` leaves this network out);
3. the shot is encoded to R/4 features, warped by the refined flow and masked by the occlusion.

Of the K shots, the `fuse_shots` whose landmarks are closest to the driving ones are warped
(so the cost per frame does not grow with K) and fused per pixel with softmax weights: the learned
logits plus a prior that favours the closest shot and, with `fusion_agreement`, a term that
keeps a shot out where its warped pixels disagree with the closest shot's (no ghosting). More
shots cover more poses and mouth shapes. The fused features go through AdaIN residual blocks
driven by psi = P e-hat (the paper's conditioning: what must be invented comes from the person's
embedding) and up to R, where the decoder outputs a frame and a blend mask: the result is
`mask * fused warped image + (1 - mask) * synthesised frame`. At initialisation the mask favours
the warped image, so an untrained model starts at the training-free warp baseline rather than at
noise. Options for the synthesis (off by default): `decoder_landmarks` lets the decoder read the
driving landmark image; `mouth_prior` hands it the inside of a mouth opened wider than the
nearest shot's (`loss.synthesis` trains it on its own; docs/training-log.md, 2026-12-02 fourth
entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.models.blocks import AdaINResBlock, conv
from talkinghead.models.flow import float32, resize_grid, squared_distances, tps_grid, warp
from talkinghead.models.inputs import GeneratorInputs, GeneratorOutput
from talkinghead.models.registry import register_generator


def _setting(default, low=None, high=None):
    return field(default=default, metadata={"range": (low, high)} if low is not None else {})


@dataclass
class WarpSettings:
    """The `model.warp` config section (docs/model-card.md's ablation switches these)."""

    bottleneck_blocks: int = _setting(5, 0, 64)  # AdaIN residual blocks at R/4
    # Width of the dense-motion network, and its two refinements of the landmark (thin-plate
    # spline) flow.
    motion_channels: int = _setting(32, 1, 4096)
    dense_motion: bool = True  # False: no dense-motion network (spline flow and fusion prior only)
    residual_flow: bool = True
    occlusion: bool = True
    fuse_shots: int = _setting(3, 1, 64)  # the closest shots (by landmarks) warped and fused for each frame
    # Softness of the fusion's landmark-distance prior (in outer-eye-corner distances): smaller
    # favours the closest shot more.
    fusion_temperature: float = _setting(0.05, 1e-4, 10)
    # Where the fusion's prior measures the landmark distance: "global" (one distance per shot,
    # over all 68 points) or "local" (per pixel, over the landmarks near it, with a Gaussian of
    # `fusion_sigma` outer-eye-corner distances), so the mouth can come from the shot whose mouth
    # is closest while the eyes come from another.
    fusion_prior: str = "global"
    fusion_sigma: float = _setting(0.3, 1e-3, 10)
    # Fusion gated by agreement (0: off): a shot's weight at a pixel also falls with the squared
    # difference between its warped pixels and the nearest shot's there (mean over RGB in [-1, 1],
    # blurred over 5 x 5 at R/2), as `exp(-difference / fusion_agreement)`. Shots average only
    # where they agree with the nearest one, so misaligned warps add no ghosting.
    fusion_agreement: float = _setting(0.0, 0, 10)
    # The landmark spline is solved on an R / prior_downsample grid and interpolated (4: the
    # first models; 2: the `warp` baseline's grid, which is 3 FID sharper).
    prior_downsample: int = _setting(4, 1, 16)
    # Added to the spline kernel's diagonal (grid units): 1e-3 puts every landmark (to 0.1 px) where
    # the driving one is (the `warp` baseline); larger trades that for a smoother flow, which
    # moves less with dlib's landmark noise (docs/training-log.md, 2026-12-02 third entry).
    prior_regularization: float = _setting(1e-3, 1e-6, 10)
    # The eyes' own (landmarks 36-47; 0: `prior_regularization` like the rest). A blink moves the
    # lids 2-3 px at 128 px: the smoother spline (0.01) leaves the Mona Lisa's eyes open when the
    # driver's close, 1e-3 closes them (docs/training.md, "The eyes").
    eye_regularization: float = _setting(0.0, 0, 10)
    # Logit added to the blend mask: 2 starts at 88% warped pixels, 4 at 98% (the synthesised
    # part is then added only where training finds it helps).
    blend_bias: float = 2.0
    # The decoder also reads the driving landmark image (at R/4 and R/2, through convolutions that
    # start at zero, so a model starts as it was without them): where the driver's mouth opens
    # wider than any shot's, the warp can only stretch lips, and the decoder must know where that
    # is to synthesise the inside. Off in older files.
    decoder_landmarks: bool = False
    # In 0..1: inside the driving inner lips where they open wider than the nearest shot's, this
    # share of the blend goes to the synthesis (times how much of the opening that shot cannot
    # show): the warp stretches closed lips over an open mouth (0: off).
    mouth_prior: float = 0.0

    def __post_init__(self) -> None:
        if self.fusion_prior not in ("global", "local"):
            raise ValueError(f"fusion_prior: must be global or local, got {self.fusion_prior!r}")


def _block(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2))


class DenseMotion(nn.Module):
    """`[N, 9, r, r]` (driving landmarks, shot landmarks, prior-warped shot) -> residual flow
    `[N, 2, r, r]` (grid units), occlusion logit `[N, 1, r, r]`, fusion logit `[N, 1, r, r]`.
    A small hourglass: 3 down, 3 up, with skips."""

    def __init__(self, channels: int):
        super().__init__()
        widths = [channels, channels * 2, channels * 4, channels * 4]
        self.stem = _block(9, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1]) for i in range(3))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(3)))
        self.head = nn.Conv2d(widths[0], 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 4.0, 0.0]))  # no motion, all visible, even fusion

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.avg_pool2d(skips[-1], 2)))
        h = skips.pop()
        for block in self.up:
            h = block(
                torch.cat([F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False), skips.pop()], 1)
            )
        out = self.head(h)
        return out[:, :2], out[:, 2:3], out[:, 3:4]


@register_generator("warp", WarpSettings)
class WarpGenerator(nn.Module):
    """G(inputs, psi) -> `GeneratorOutput` (the frame `[B, 3, R, R]` in [-1, 1], its flow, fusion
    weights, blend mask and synthesised frame), reading the shots, their points and the driving points.

    `residual_flow` and `occlusion` switch the dense-motion refinements off (ablations),
    `dense_motion` the whole network; the prior flow and the AdaIN decoder are always there."""

    def __init__(
        self,
        *,
        resolution: int,
        base_channels: int,
        max_channels: int,
        embedding_dim: int,
        bottleneck_blocks: int,
        motion_channels: int = 32,
        dense_motion: bool = True,
        residual_flow: bool = True,
        occlusion: bool = True,
        fuse_shots: int = 3,
        fusion_temperature: float = 0.05,
        fusion_prior: str = "global",
        fusion_sigma: float = 0.3,
        fusion_agreement: float = 0.0,
        prior_downsample: int = 4,
        prior_regularization: float = 1e-3,
        eye_regularization: float = 0.0,
        blend_bias: float = 2.0,
        decoder_landmarks: bool = False,
        mouth_prior: float = 0.0,
    ):
        super().__init__()
        self.resolution, self.residual_flow, self.occlusion = resolution, residual_flow, occlusion
        self.fuse_shots, self.fusion_temperature, self.blend_bias = fuse_shots, fusion_temperature, blend_bias
        self.fusion_prior, self.fusion_sigma, self.prior_downsample = fusion_prior, fusion_sigma, prior_downsample
        self.fusion_agreement, self.prior_regularization = fusion_agreement, prior_regularization
        self.mouth_prior, self.eye_regularization = mouth_prior, eye_regularization
        widths = [min(base_channels * 2**i, max_channels) for i in range(3)]  # at R, R/2, R/4
        # Without it (`dense_motion=False`): the spline flow and the fusion prior alone, no learned
        # motion (the ablation found the learned refinements earned nothing; it is 45% of the cost).
        self.motion = DenseMotion(motion_channels) if dense_motion else None
        self.encoder = nn.Sequential(
            _block(3, widths[0]),
            nn.AvgPool2d(2),
            _block(widths[0], widths[1]),
            nn.AvgPool2d(2),
            _block(widths[1], widths[2]),
        )
        self.body = nn.ModuleList(AdaINResBlock(widths[2], widths[2]) for _ in range(bottleneck_blocks))
        self.up = nn.ModuleList(
            [AdaINResBlock(widths[2], widths[1], upsample=True), AdaINResBlock(widths[1], widths[0], upsample=True)]
        )
        self.head = conv(widths[0], 4)  # RGB and the blend mask's logit
        # The driving landmark image into the decoder, added before the R/4 blocks and the last
        # up-sampling block; zero-initialised (plain convolutions: spectral norm cannot start at 0).
        self.landmark_inputs = None
        if decoder_landmarks:
            self.landmark_inputs = nn.ModuleList(nn.Conv2d(3, width, 3, padding=1) for width in (widths[2], widths[1]))
            for layer in self.landmark_inputs:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        adain = [*self.body, *self.up]
        self.num_adain_params = sum(b.num_params for b in adain)
        self.projection = nn.Parameter(torch.randn(self.num_adain_params, embedding_dim) * 0.01)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The shots' features: `[K, 3, R, R] -> [K, C, R/4, R/4]` (what `source_features` holds)."""
        return self.encoder(frames)

    def adain_params(self, embedding: torch.Tensor) -> torch.Tensor:
        """psi = P e: `[B, D] -> [B, num_adain_params]`."""
        return embedding @ self.projection.t()

    def forward(self, inputs: GeneratorInputs, adain_params: torch.Tensor) -> GeneratorOutput:
        """The frame, and how it was made: the flow and fusion weights of the fused shots, the blend
        mask (1: warped) and the synthesised frame before the blend (`loss.synthesis` trains it)."""
        R, B = self.resolution, len(inputs)
        distance = _landmark_distance(inputs.source_points, inputs.driving_points)  # [B, K_all]
        K = min(self.fuse_shots, distance.shape[1])
        distance, nearest = distance.topk(K, dim=1, largest=False)  # the K closest shots, [B, K]
        rows = torch.arange(B, device=nearest.device)[:, None]
        shots = inputs.source_frames[rows, nearest].flatten(0, 1)  # [BK, 3, R, R]
        shot_points = inputs.source_points[rows, nearest]  # [B, K, 68, 2]
        grid, logits = self._motion(inputs, rows, nearest, shots, shot_points, distance)  # [BK, R/2, R/2, 2]
        flow = resize_grid(grid, R)
        warped = warp(shots, flow).unflatten(0, (B, K))  # [B, K, 3, R, R]
        if self.fusion_agreement > 0 and K > 1:
            logits = logits - _disagreement(warped, R // 2).detach() / self.fusion_agreement
        weights = torch.softmax(logits, dim=1)  # [B, K, 1, R/2, R/2]

        # Warp the shots' features (R/4) by the same flow, fuse, decode through AdaIN.
        quarter = R // 4
        if inputs.source_features is not None:  # encoded before, once for all frames (Avatar, ONNX)
            encoded = inputs.source_features[rows, nearest].flatten(0, 1)
        else:
            encoded = self.encode(shots)
        features = warp(encoded, resize_grid(grid, quarter)).unflatten(0, (B, K))
        out = self._decode((features * _resize5(weights, quarter)).sum(1), adain_params, inputs.driving_landmark_images)
        weights = _resize5(weights, R)
        warped = (warped * weights).sum(1)
        # The blend starts at sigmoid(blend_bias) warped image (2: 88%).
        mask = torch.sigmoid(out[:, 3:4] + self.blend_bias)
        if self.mouth_prior:  # synthesise inside a mouth opened wider than the nearest shot's
            mask = mask * (1 - self.mouth_prior * _mouth_opening(shot_points[:, 0], inputs.driving_points, R))
        synthesised = torch.tanh(out[:, :3])
        return GeneratorOutput(
            frame=mask * warped + (1 - mask) * synthesised,
            flow=flow.unflatten(0, (B, K)),
            shots=nearest,
            fusion_weights=weights,
            blend_mask=mask,
            synthesised=synthesised,
        )

    def _motion(self, inputs: GeneratorInputs, rows, nearest, shots, shot_points, distance):
        """The flow of each of the B x K fused shots at R/2 (`[BK, R/2, R/2, 2]` grid) and the
        fusion logits `[B, K, 1, R/2, R/2]`: the spline prior, refined by the dense-motion network."""
        R, (B, K) = self.resolution, nearest.shape
        half = R // 2
        # The prior flow, solved at R / prior_downsample (the spline is smooth) and used at R/2.
        prior = tps_grid(
            shot_points, inputs.driving_points, R, out_size=R // self.prior_downsample,
            regularization=self.prior_regularization, landmark_regularization=self._landmark_regularization(),
        )  # fmt: skip  # [B, K, r, r, 2]
        prior = resize_grid(prior.flatten(0, 1), half)
        # Per-pixel fusion weights over the K shots: a nearest-landmarks prior (+ learned logits).
        if self.fusion_prior == "local":
            distance = _local_distance(shot_points, inputs.driving_points, R, half, self.fusion_sigma)
        else:
            distance = distance[:, :, None, None, None].expand(-1, -1, 1, half, half)
        logits = -distance / self.fusion_temperature
        if self.motion is None:
            return prior, logits
        # The learned refinements: residual flow, occlusion, fusion logits.
        small = lambda x: F.interpolate(x, size=(half, half), mode="bilinear", align_corners=False)  # noqa: E731
        shot_drawn = inputs.source_landmark_images[rows, nearest].flatten(0, 1)
        driving_drawn = inputs.driving_landmark_images[:, None].expand(-1, K, -1, -1, -1).flatten(0, 1)
        delta, occlusion, fusion = self.motion(
            torch.cat([small(driving_drawn), small(shot_drawn), warp(small(shots), prior)], 1)
        )
        grid = prior + delta.permute(0, 2, 3, 1) if self.residual_flow else prior
        logits = logits + fusion.unflatten(0, (B, K))
        if self.occlusion:
            logits = logits + F.logsigmoid(occlusion).unflatten(0, (B, K))
        return grid, logits

    def _landmark_regularization(self) -> torch.Tensor | None:
        """`[68]` the spline's regularization per landmark: the eyes' own where set, else None."""
        if not self.eye_regularization:
            return None
        values = torch.full((68,), self.prior_regularization)
        values[36:48] = self.eye_regularization
        return values

    def _decode(self, h: torch.Tensor, adain_params: torch.Tensor, driving_drawn: torch.Tensor) -> torch.Tensor:
        """Fused features `[B, C, R/4, R/4]` -> `[B, 4, R, R]`: RGB and the blend mask's logit. With
        `decoder_landmarks`, the driving landmark image enters the first and the last block."""
        blocks = [*self.body, *self.up]
        taps = dict(zip((0, len(blocks) - 1), self.landmark_inputs)) if self.landmark_inputs is not None else {}
        offset = 0
        for index, block in enumerate(blocks):
            if index in taps:
                h = h + taps[index](F.interpolate(driving_drawn, size=h.shape[-2:], mode="area"))
            h = block(h, adain_params[:, offset : offset + block.num_params])
            offset += block.num_params
        return self.head(F.relu(h))


INNER_LIPS = list(range(60, 68))  # the 68-point scheme's inner lip contour, in order around it


def _polygon_area(points: torch.Tensor) -> torch.Tensor:
    """`[B]` area of `[B, n, 2]` closed polygons (shoelace)."""
    x, y = points.unbind(-1)
    return 0.5 * (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1).abs()


def _inside(points: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, 1, size, size]` 1 where a pixel centre lies inside the `[B, n, 2]` polygon (pixels),
    else 0 (crossing number)."""
    axis = torch.arange(size, device=points.device, dtype=points.dtype)
    py, px = (t.reshape(1, 1, -1) for t in torch.meshgrid(axis, axis, indexing="ij"))
    x0, y0 = points[..., 0, None], points[..., 1, None]  # [B, n, 1]
    x1, y1 = points.roll(-1, 1)[..., 0, None], points.roll(-1, 1)[..., 1, None]
    crosses = ((y0 > py) != (y1 > py)) & (px < (x1 - x0) * (py - y0) / (y1 - y0 + 1e-9) + x0)
    inside = crosses.sum(1) % 2  # [B, size^2]
    return inside.reshape(-1, 1, size, size).to(points.dtype)


def _mouth_opening(shot_points: torch.Tensor, driving_points: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, 1, size, size]`: inside the driving inner lips, the part of the opening that the shot's
    mouth does not show, `1 - shot area / driving area` (areas in units of the outer-eye-corner
    distance, clamped to [0, 1]); 0 elsewhere and where the driving mouth is closed. `shot_points`,
    `driving_points`: `[B, 68, 2]` pixels."""
    lips = driving_points[:, INNER_LIPS]
    driving = _polygon_area(lips) / _eye_distance(driving_points) ** 2
    shot = _polygon_area(shot_points[:, INNER_LIPS]) / _eye_distance(shot_points) ** 2
    missing = (1 - shot / driving.clamp_min(1e-6)).clamp(0, 1) * (driving > 0.01)
    inside = _inside(lips, size)
    # Soften the edge over 3 px, so the synthesised inside meets the warped lips without a seam.
    inside = F.avg_pool2d(inside, 3, stride=1, padding=1, count_include_pad=False)
    return inside * missing[:, None, None, None]


def _resize5(x: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, K, C, h, w]` -> `[B, K, C, size, size]` (bilinear)."""
    if x.shape[-1] == size:
        return x
    flat = F.interpolate(x.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
    return flat.unflatten(0, x.shape[:2])


def _disagreement(warped: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, K, 1, size, size]`: squared difference of each warped shot from the nearest one (index
    0), mean over RGB, at `size` and blurred over 5 x 5 pixels. `warped`: `[B, K, 3, R, R]`."""
    small = _resize5(warped, size)
    difference = ((small - small[:, :1]) ** 2).mean(2).flatten(0, 1)[:, None]  # [BK, 1, s, s]
    difference = F.avg_pool2d(difference, 5, stride=1, padding=2, count_include_pad=False)
    return difference.unflatten(0, warped.shape[:2])


def _landmark_errors(source_points: torch.Tensor, driving_points: torch.Tensor) -> torch.Tensor:
    """`[B, K, 68]` distance of each of a shot's centred landmarks from the driving ones, in units of
    the driving face's outer-eye-corner distance. `source_points` `[B, K, 68, 2]`, `driving_points`
    `[B, 68, 2]`."""
    s = source_points - source_points.mean(2, keepdim=True)
    d = driving_points - driving_points.mean(1, keepdim=True)
    return (s - d[:, None]).norm(dim=-1) / _eye_distance(driving_points)[:, None, None]


def _eye_distance(points: torch.Tensor) -> torch.Tensor:
    """`[B]` outer-eye-corner distance of `[B, 68, 2]` landmarks (at least 1 px)."""
    return (points[:, 36] - points[:, 45]).norm(dim=-1).clamp_min(1.0)


def _landmark_distance(source_points: torch.Tensor, driving_points: torch.Tensor) -> torch.Tensor:
    """`[B, K]` mean of `_landmark_errors` over the 68 landmarks."""
    return _landmark_errors(source_points, driving_points).mean(-1)


@float32
def _local_distance(
    source_points: torch.Tensor, driving_points: torch.Tensor, size: int, out: int, sigma: float
) -> torch.Tensor:
    """`[B, K, 1, out, out]`: at each pixel, the landmark distance of `_landmark_distance` taken
    over the driving landmarks near that pixel (a softmax of `-d^2 / 2 (sigma iod)^2` over them)
    instead of over all 68. `source_points` `[B, K, 68, 2]`, `driving_points` `[B, 68, 2]`, pixels
    of a `size` image; the map covers the same image at `out` x `out`."""
    B, K = source_points.shape[:2]
    error = _landmark_errors(source_points, driving_points)  # [B, K, 68]
    axis = (torch.arange(out, device=driving_points.device, dtype=driving_points.dtype) + 0.5) * (size / out) - 0.5
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    pixels = torch.stack([x, y], -1).reshape(1, -1, 2).expand(B, -1, -1)  # [B, out^2, 2]
    scale = 2 * (sigma * _eye_distance(driving_points)) ** 2  # [B]
    near = torch.softmax(-squared_distances(pixels, driving_points) / scale[:, None, None], dim=-1)
    return (near @ error.transpose(1, 2)).transpose(1, 2).reshape(B, K, 1, out, out)


__all__ = ["DenseMotion", "WarpGenerator", "WarpSettings"]
