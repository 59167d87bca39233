"""The warp-guided generator and the training-free warp baseline: landmark flow, generator,
meta-learning and fitting with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from talkinghead.config import load_config
from talkinghead.model import build_model
from talkinghead.models import GeneratorInputs
from talkinghead.models.flow import border_anchors, tps_grid, warp

TINY_WARP = ["model.generator=warp", "model.motion_channels=8"]


def test_thin_plate_spline_grid():
    torch.manual_seed(0)
    points = torch.rand(2, 68, 2) * 60 + 34
    image = torch.rand(2, 3, 128, 128)
    # Same landmarks: the identity warp.
    torch.testing.assert_close(warp(image, tps_grid(points, points, 128)), image, atol=1e-3, rtol=0)
    # Without border anchors, landmarks moved 5 px right: every output pixel reads 5 px to the right.
    shifted = tps_grid(points + torch.tensor([5.0, 0.0]), points, 128, anchors=0)
    identity = tps_grid(points, points, 128, anchors=0)
    torch.testing.assert_close(
        shifted - identity, torch.full_like(shifted, 0.0) + torch.tensor([5 * 2 / 128, 0.0]), atol=1e-4, rtol=0
    )
    # With anchors, the border stays where it is while the face moves.
    grid = tps_grid(points + torch.tensor([5.0, 0.0]), points, 128)
    assert (grid[:, 0, :, 1] - identity[:, 0, :, 1]).abs().max() < 0.02
    assert border_anchors(128, 5).shape == (16, 2)


def test_a_regularised_spline_moves_less_with_landmark_noise(astronaut):
    """`regularization` (the model's `prior_regularization`): on the astronaut's real landmarks,
    moved 4 px and jittered by 1 px as dlib's are from frame to frame, the smoothed spline's grid
    stays nearer the noise-free one than the exact spline's, and without jitter it is still the
    exact spline's to within a fraction of a pixel."""
    from talkinghead.inference.cropper import FaceCropper

    _, points, _, _ = FaceCropper(128).crop_image(astronaut)
    source = torch.from_numpy(points)[None]
    moved = source + torch.tensor([4.0, -2.0])
    truth = tps_grid(source, moved, 128)
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 1.0, (5, 68, 2)).astype(np.float32))
    pixels = lambda grid: float((grid - truth).norm(dim=-1).mean() * 64)  # noqa: E731 (grid units -> px)
    exact = pixels(tps_grid(source.expand(5, -1, -1), moved + noise, 128))
    smooth = pixels(tps_grid(source.expand(5, -1, -1), moved + noise, 128, regularization=0.03))
    assert smooth < 0.8 * exact
    clean = tps_grid(source, moved, 128, regularization=0.03)
    assert float((clean - truth).norm(dim=-1).max() * 64) < 0.3
    config = load_config("cpu-warp-lean", ["model.prior_regularization=0.03"])
    assert build_model(config, num_videos=1).generator.prior_regularization == 0.03


def test_the_eyes_own_regularization_closes_the_lids_the_smooth_spline_leaves_open(astronaut):
    """`landmark_regularization` (the model's `eye_regularization`): with the astronaut's real
    upper lids moved most of the way onto her lower ones (a blink), the smooth spline (0.01, the bundled model's)
    reads the shot more than a pixel away from its upper lids; exact on the eyes alone, it reads them."""
    from talkinghead.inference.cropper import FaceCropper

    _, points, _, _ = FaceCropper(128).crop_image(astronaut)
    source = torch.from_numpy(points)[None]
    closed = source.clone()
    lower = source[:, [41, 40, 47, 46]]
    closed[:, [37, 38, 43, 44]] = lower + 0.2 * (source[:, [37, 38, 43, 44]] - lower)  # nearly shut
    per_point = torch.full((68,), 0.01)
    per_point[36:48] = 1e-3

    def lid_error(grid):  # px between where the grid reads the closed upper lids and the shot's upper lids
        at = torch.from_numpy(np.round(closed[0, [37, 38, 43, 44]].numpy()).astype(np.int64))
        read = (grid[0, at[:, 1], at[:, 0]] + 1) * 64 - 0.5
        return float((read - source[0, [37, 38, 43, 44]]).norm(dim=-1).mean())

    smooth = lid_error(tps_grid(source, closed, 128, regularization=0.01))  # 1.6 px here; the lids 4.3 px apart
    eyes = lid_error(tps_grid(source, closed, 128, regularization=0.01, landmark_regularization=per_point))
    assert smooth > 1.2 and eyes < 0.8 and eyes < 0.5 * smooth  # (reading at whole pixels costs ~0.5 px)
    config = load_config("cpu-warp-lean", ["model.warp.eye_regularization=0.001"])
    generator = build_model(config, num_videos=1).generator
    assert generator.eye_regularization == 0.001 and generator._landmark_regularization()[40] == 0.001


def test_the_spline_keeps_float32_under_bf16_autocast(astronaut):
    """Mixed precision (`train.amp`: bf16 autocast on GPUs and on CPUs with native bf16) must not
    reach the landmark geometry: on the astronaut's real landmarks moved 4 px, the spline's grid
    and the fusion's local distances under CPU bf16 autocast equal float32's, and the bilinear
    warp of bf16 features stays within bf16 rounding of the float32 warp (with the geometry in
    bf16 the grid was up to 2 px off)."""
    from talkinghead.inference.cropper import FaceCropper
    from talkinghead.models.warp import _local_distance

    crop, points, _, _ = FaceCropper(128).crop_image(astronaut)
    source = torch.from_numpy(points)[None]
    moved = source + torch.tensor([4.0, -2.0])
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    grid = tps_grid(source, moved, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = tps_grid(source, moved, 128)
        distance = _local_distance(source[:, None], moved, 128, 64, 0.2)
        features = torch.nn.functional.conv2d(image, torch.eye(3)[:, :, None, None])  # bf16, as a conv's output
        warped = warp(features, grid)
    assert mixed.dtype == torch.float32 and distance.dtype == torch.float32
    torch.testing.assert_close(mixed, grid, atol=1e-6, rtol=0)
    torch.testing.assert_close(distance, _local_distance(source[:, None], moved, 128, 64, 0.2), atol=1e-6, rtol=0)
    assert (warped.float() - warp(image, grid)).abs().max() < 0.02  # bf16 rounding of the pixels only


def test_warp_baseline_follows_a_moved_face(astronaut):
    from talkinghead.evaluation.evaluate import warp_to
    from talkinghead.inference.cropper import FaceCropper

    crop, points, _, _ = FaceCropper(128).crop_image(astronaut)
    # The target: the face squeezed toward its centre horizontally, as if turned (an affine move
    # that the border anchors do not follow, so only a real warp can match it).
    centre = points.mean(0)
    matrix = np.array([[0.9, 0, 0.1 * centre[0]], [0, 1.0, 0]], np.float32)
    target = cv2.warpAffine(crop, matrix, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    target_points = points @ matrix[:, :2].T + matrix[:, 2]
    warped = warp_to(crop[None], points[None], target_points[None].astype(np.float32))[0]
    x0, y0 = np.floor(target_points.min(0)).astype(int)
    x1, y1 = np.ceil(target_points.max(0)).astype(int)
    face = (slice(y0, y1), slice(x0, x1))
    error_warp = np.abs(warped[face].astype(float) - target[face]).mean()
    error_still = np.abs(crop[face].astype(float) - target[face]).mean()
    assert error_warp < 0.6 * error_still, (error_warp, error_still)
    # `warp_bicubic`: the same move, sampled as the renderer samples, keeps more of the detail.
    cubic = warp_to(crop[None], points[None], target_points[None].astype(np.float32), mode="bicubic")[0]
    assert np.abs(cubic[face].astype(float) - target[face]).mean() < 0.6 * error_still
    detail = [cv2.Laplacian(cv2.cvtColor(f[face], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in (warped, cubic)]
    assert detail[1] > 1.1 * detail[0], detail


def _inputs(R: int, B: int, K: int, seed: int = 0) -> GeneratorInputs:
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(B, K, 68, 2, generator=g) * R * 0.5 + R * 0.25
    return GeneratorInputs.of(
        driving_landmark_images=torch.rand(B, 3, R, R, generator=g) * 2 - 1,
        # Smooth pictures (a 1 px move keeps them): random 4 x 4 images enlarged.
        source_frames=torch.nn.functional.interpolate(
            torch.rand(B * K, 3, 4, 4, generator=g) * 2 - 1, size=(R, R), mode="bilinear"
        ).unflatten(0, (B, K)),
        source_landmark_images=torch.rand(B, K, 3, R, R, generator=g) * 2 - 1,
        source_points=points,
        driving_points=points[:, 1] + 1.0,
    )


def test_warp_generator_starts_at_the_warp_and_learns_through_every_part():
    torch.manual_seed(0)
    config = load_config("tiny", TINY_WARP)
    model = build_model(config, num_videos=2)
    generator, R = model.generator, config.model.resolution
    inputs = _inputs(R, 2, 4)
    psi = generator.adain_params(model.embedder.embed_shots(inputs.source_frames, inputs.source_landmark_images))
    fake = generator(inputs, psi).frame
    assert fake.shape == (2, 3, R, R) and fake.abs().max() <= 1
    # At initialisation: close to shot 1 (the nearest) moved 1 px, far from the other shots.
    nearest = inputs.source_frames[:, 1]
    assert (fake - nearest).abs().mean() < 0.5 * (fake - inputs.source_frames[:, 0]).abs().mean()
    fake.square().mean().backward()
    assert generator.motion.head.weight.grad.abs().sum() > 0  # residual flow / occlusion / fusion
    assert generator.projection.grad.abs().sum() > 0  # psi = P e reaches the frame through AdaIN
    assert generator.encoder[0][0].weight.grad.abs().sum() > 0  # the shots' warped features
    # The person's embedding changes the frame (what is synthesised comes from it).
    with torch.no_grad():
        other = generator(inputs, psi + 0.5).frame
    assert (other - fake.detach()).abs().mean() > 1e-4
    # The shots it fuses are the closest ones: a far shot swapped in changes nothing.
    far = GeneratorInputs(**{**vars(inputs)})
    far.source_frames = inputs.source_frames.clone()
    far.source_points = inputs.source_points.clone()
    centre = far.source_points[:, 3].mean(1, keepdim=True)
    far.source_points[:, 3] = centre + 2 * (far.source_points[:, 3] - centre)  # shot 3's face now far...
    generator.eval()  # spectral norm's power iteration would otherwise move between the calls
    with torch.no_grad():
        before = generator(far, psi).frame
        far.source_frames[:, 3] = 1.0  # ...so its pixels do not matter
        torch.testing.assert_close(generator(far, psi).frame, before)


def test_local_fusion_takes_each_region_from_the_shot_closest_there():
    from talkinghead.models.warp import _local_distance

    torch.manual_seed(0)
    R = 128
    driving = torch.rand(1, 68, 2) * 60 + 34
    # Shot 0 has the driving mouth but its eyes 8 px off; shot 1 the driving eyes but its mouth off.
    shots = driving[:, None].repeat(1, 2, 1, 1)
    shots[0, 0, 36:48, 1] += 8.0
    shots[0, 1, 48:68, 1] += 8.0
    distance = _local_distance(shots, driving, R, R // 2, sigma=0.2)  # [1, 2, 1, 64, 64]
    assert distance.shape == (1, 2, 1, 64, 64)
    at = lambda point: distance[0, :, 0, int(point[1]) // 2, int(point[0]) // 2]  # noqa: E731
    mouth_centre, eye_centre = driving[0, 48:].mean(0), driving[0, 36:48].mean(0)
    assert at(mouth_centre)[0] < at(mouth_centre)[1]
    assert at(eye_centre)[1] < at(eye_centre)[0]


def test_agreement_keeps_a_disagreeing_shot_out_where_it_disagrees():
    """`fusion_agreement`: two shots equally close by landmarks that agree on the left half and not
    on the right. Without it the right half is their average (a ghost); with it, the nearest's."""
    from talkinghead.models.warp import WarpGenerator

    torch.manual_seed(0)
    R = 64
    inputs = _inputs(R, 1, 2)
    points = inputs.driving_points[:, None].repeat(1, 2, 1, 1)
    points[:, 1] += 0.25  # shot 0 the nearest, shot 1 almost as near: the prior weighs them evenly
    frames = inputs.source_frames[:, :1].repeat(1, 2, 1, 1, 1) * 0.5
    frames[:, 1, :, :, R // 2 :] = -frames[:, 1, :, :, R // 2 :] + 0.5  # shot 1 differs on the right
    inputs = GeneratorInputs.of(
        driving_landmark_images=inputs.driving_landmark_images,
        source_frames=frames,
        source_landmark_images=inputs.source_landmark_images,
        source_points=points,
        driving_points=inputs.driving_points,
    )
    settings = dict(resolution=R, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=0)
    settings.update(dense_motion=False, fuse_shots=2, fusion_temperature=10.0, blend_bias=30.0)
    psi = torch.zeros(1, WarpGenerator(**settings).num_adain_params)
    with torch.no_grad():
        plain = WarpGenerator(**settings).eval()(inputs, psi).frame[0]
        gated = WarpGenerator(**settings, fusion_agreement=0.01).eval()(inputs, psi).frame[0]
    nearest, rows = frames[0, 0], slice(8, -8)  # away from the border anchors
    left, right = slice(8, R // 2 - 8), slice(R // 2 + 8, -8)
    error = lambda out, side: (out[:, rows, side] - nearest[:, rows, side]).abs().mean()  # noqa: E731
    assert error(plain, left) < 0.02 and error(gated, left) < 0.02  # they agree: either way the same
    assert error(plain, right) > 0.1  # the average of two different pictures
    assert error(gated, right) < 0.02  # the nearest shot's


def test_without_dense_motion_it_is_the_untrained_refinement():
    """`dense_motion=False` drops the network: the same frames as an untrained one (zero residual
    flow, the same occlusion logit for every shot, zero fusion logits), for less work."""
    from talkinghead.models.warp import WarpGenerator

    torch.manual_seed(0)
    settings = dict(resolution=64, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=1)
    settings.update(fuse_shots=3, fusion_prior="local", prior_downsample=2)
    full, lean = WarpGenerator(**settings), WarpGenerator(**settings, dense_motion=False)
    missing = lean.load_state_dict(full.state_dict(), strict=False)
    assert not missing.missing_keys and all(k.startswith("motion.") for k in missing.unexpected_keys)
    assert sum(p.numel() for p in lean.parameters()) < sum(p.numel() for p in full.parameters())
    inputs, psi = _inputs(64, 2, 4), torch.randn(2, full.num_adain_params) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(lean.eval()(inputs, psi).frame, full.eval()(inputs, psi).frame, atol=1e-5, rtol=0)


def test_decoder_landmarks_start_as_the_model_without_them_and_then_read_the_driving_image():
    """`decoder_landmarks` adds zero-initialised inputs: a file without them loads and makes the
    same frames; once trained (weights non-zero), the frame depends on the driving landmark image
    itself, not only on the points the spline moves by, and the inputs learn from the loss."""
    from talkinghead.models.warp import WarpGenerator

    torch.manual_seed(0)
    settings = dict(resolution=64, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=1)
    settings.update(fuse_shots=2, dense_motion=False, blend_bias=0.0)
    plain, reading = WarpGenerator(**settings), WarpGenerator(**settings, decoder_landmarks=True)
    missing = reading.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("landmark_inputs.") for k in missing.missing_keys) and not missing.unexpected_keys
    inputs, psi = _inputs(64, 2, 3), torch.randn(2, plain.num_adain_params) * 0.1
    plain.eval(), reading.eval()
    with torch.no_grad():
        torch.testing.assert_close(reading(inputs, psi).frame, plain(inputs, psi).frame)
    out = reading(inputs, psi)  # the frame, its synthesised part, the blend
    fake, synthesised, mask = out.frame, out.synthesised, out.blend_mask
    assert synthesised.shape == fake.shape and (synthesised - fake).abs().mean() > 1e-3
    assert mask.shape == (2, 1, 64, 64) and 0 < mask.min() and mask.max() < 1
    fake.square().mean().backward()
    assert all(layer.weight.grad.abs().sum() > 0 for layer in reading.landmark_inputs)
    with torch.no_grad():
        for layer in reading.landmark_inputs:
            layer.weight.normal_(0, 0.1)
        other = GeneratorInputs(**{**vars(inputs)})
        other.driving_landmark_images = -inputs.driving_landmark_images
        assert (reading(other, psi).frame - reading(inputs, psi).frame).abs().mean() > 1e-3
        torch.testing.assert_close(plain(other, psi).frame, plain(inputs, psi).frame)  # without: the image is not read


def test_mouth_prior_synthesises_inside_a_mouth_the_shot_cannot_show(astronaut):
    """`mouth_prior`: the blend goes to the synthesis inside the driving inner lips, in proportion to
    how much of that opening the nearest shot lacks; nowhere when the shot's mouth is as open."""
    from talkinghead.inference.cropper import FaceCropper
    from talkinghead.models.warp import INNER_LIPS, WarpGenerator, _mouth_opening

    _, points, _, _ = FaceCropper(64).crop_image(astronaut)  # her real landmarks, mouth closed
    closed = torch.from_numpy(points)[None]  # [1, 68, 2]
    opened = closed.clone()
    opened[:, [65, 66, 67], 1] += 3.0  # the lower inner lip 3 px down: an open mouth
    opening = _mouth_opening(closed, opened, 64)
    assert opening.sum() > 5 and opening.max() <= 1
    ys, xs = torch.nonzero(opening[0, 0] > 0.5, as_tuple=True)
    lips = opened[0, INNER_LIPS]
    assert lips[:, 0].min() - 1 <= xs.min() and xs.max() <= lips[:, 0].max() + 1  # inside the lips
    assert _mouth_opening(opened, opened, 64).sum() == 0  # the shot shows that mouth: nothing to make

    torch.manual_seed(0)
    settings = dict(resolution=64, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=1)
    settings.update(fuse_shots=1, dense_motion=False)
    plain, prior = WarpGenerator(**settings), WarpGenerator(**settings, mouth_prior=1.0)
    prior.load_state_dict(plain.state_dict())
    inputs = GeneratorInputs.of(
        driving_landmark_images=torch.zeros(1, 3, 64, 64),
        source_frames=torch.rand(1, 1, 3, 64, 64) * 2 - 1,
        source_landmark_images=torch.zeros(1, 1, 3, 64, 64),
        source_points=closed[:, None],
        driving_points=opened,
    )
    psi = torch.zeros(1, plain.num_adain_params)
    with torch.no_grad():
        before = plain.eval()(inputs, psi).blend_mask
        after = prior.eval()(inputs, psi).blend_mask
    torch.testing.assert_close(after, before * (1 - opening))


def test_sampling_by_gather_is_grid_sample():
    """The ONNX exports' sampler: bilinear with border padding, as `grid_sample` (also off the image)."""
    import torch.nn.functional as F

    from talkinghead.models.flow import sample_by_gather

    torch.manual_seed(0)
    image, grid = torch.rand(2, 5, 17, 23), torch.rand(2, 9, 11, 2) * 2.6 - 1.3
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(sample_by_gather(image, grid), expected, atol=1e-5, rtol=0)


def test_encoded_shots_given_once_make_the_same_frames():
    """`source_features` (an avatar encodes its shots once) gives the frames the generator makes
    encoding them itself."""
    from dataclasses import replace

    from talkinghead.models.warp import WarpGenerator

    torch.manual_seed(0)
    generator = WarpGenerator(resolution=64, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=1)
    inputs, psi = _inputs(64, 3, 4), torch.randn(3, generator.num_adain_params) * 0.1
    features = torch.stack([generator.encode(shots) for shots in inputs.source_frames])
    with torch.no_grad():
        cached = generator.eval()(replace(inputs, source_features=features), psi).frame
        torch.testing.assert_close(cached, generator(inputs, psi).frame, atol=1e-5, rtol=0)


def test_prior_on_the_half_grid_is_the_warp_baseline(astronaut):
    """The generator with its learned parts off and the spline on R/2 makes the `warp` baseline's
    frame, to within one level (the baseline rounds to uint8)."""
    from talkinghead.evaluation.evaluate import warp_to
    from talkinghead.inference.cropper import FaceCropper
    from talkinghead.models.warp import WarpGenerator

    crop, points, _, _ = FaceCropper(128).crop_image(astronaut)
    target_points = points + np.float32([3.0, -2.0])
    baseline = warp_to(crop[None], points[None], target_points[None].astype(np.float32))[0]
    generator = WarpGenerator(
        resolution=128, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=0,
        residual_flow=False, occlusion=False, fuse_shots=1, prior_downsample=2, blend_bias=30.0,
    )  # fmt: skip
    frame = torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1
    blank = torch.zeros(1, 3, 128, 128)
    inputs = GeneratorInputs.of(
        driving_landmark_images=blank,
        source_frames=frame[None, None],
        source_landmark_images=blank[:, None],
        source_points=torch.from_numpy(points)[None, None],
        driving_points=torch.from_numpy(target_points)[None],
    )
    with torch.no_grad():
        out = generator(inputs, torch.zeros(1, generator.num_adain_params)).frame
    made = ((out[0].permute(1, 2, 0) + 1) * 127.5).numpy()
    assert np.abs(made - baseline.astype(np.float32)).max() <= 1.0 + 1e-3


@pytest.mark.slow
def test_warp_model_meta_learns_fits_and_animates(tiny_data, tiny_model, tmp_path, astronaut):
    from talkinghead.checkpoint import export_model, list_checkpoints, load_model
    from talkinghead.inference.avatar import Avatar
    from talkinghead.inference.fitting import FitOptions, fit_avatar
    from talkinghead.training.train import train

    # With the decoder reading the driving landmarks and the synthesis trained by its own L1 term.
    config = load_config("tiny", [*TINY_WARP, "train.steps=2", "model.decoder_landmarks=true", "loss.synthesis=1"])
    # --init: a paper-generator model's embedder and discriminator start the run; its generator,
    # another design, does not.
    started = train(tiny_data, config, tmp_path / "init", progress=False, max_steps=0, init=tiny_model)
    trained = load_model(tiny_model).embedder.state_dict()
    mine = started.embedder_generator.embedder.state_dict()
    assert all(torch.equal(mine[k], trained[k]) for k in trained)

    result = train(tiny_data, config, tmp_path / "run", progress=False)
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    assert result.losses["loss/synthesis"] > 0
    model = export_model(list_checkpoints(tmp_path / "run" / "checkpoints")[-1], tmp_path / "warp.safetensors")
    avatar = fit_avatar([astronaut, np.ascontiguousarray(astronaut[:, ::-1])], model=model, options=FitOptions(steps=2))
    assert avatar.config.model.generator == "warp" and avatar.steps == 2
    frames = np.stack(list(avatar.generate(avatar.shot_landmarks)))
    assert frames.shape == (2, 32, 32, 3)
    # Re-creating a shot from its own landmarks gives back (mostly) that shot: the pixels moved, not invented.
    assert np.abs(frames.astype(float) - avatar.shots).mean() < 40
    avatar.save(tmp_path / "a.avatar")
    np.testing.assert_array_equal(
        np.stack(list(Avatar.load(tmp_path / "a.avatar").generate(avatar.shot_landmarks))), frames
    )
