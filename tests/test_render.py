"""The renderer: the motion at the model's R, the portrait's own pixels moved at the output size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkinghead.inference.render import compose, upscale
from talkinghead.models import GeneratorInputs


def _warp_generator(**settings):
    from talkinghead.models.warp import WarpGenerator

    torch.manual_seed(0)
    shared = dict(resolution=64, base_channels=8, max_channels=16, embedding_dim=8, bottleneck_blocks=1)
    return WarpGenerator(**shared, fuse_shots=2, blend_bias=0.0, mouth_prior=0.5, **settings).eval()


def _inputs(shots: torch.Tensor, seed: int = 0) -> GeneratorInputs:
    g = torch.Generator().manual_seed(seed)
    K, R = shots.shape[0], shots.shape[-1]
    points = torch.rand(K, 68, 2, generator=g) * R * 0.5 + R * 0.25
    return GeneratorInputs.of(
        driving_landmark_images=torch.rand(2, 3, R, R, generator=g) * 2 - 1,
        driving_points=points[:2] + torch.randn(2, 68, 2, generator=g),
        source_frames=shots,
        source_landmark_images=torch.rand(K, 3, R, R, generator=g) * 2 - 1,
        source_points=points,
    )


def _smooth_shots(count: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def test_at_the_model_size_it_is_the_generators_frame_exactly():
    generator = _warp_generator()
    shots = _smooth_shots(3, 64)
    with torch.no_grad():
        output = generator(_inputs(shots), torch.randn(2, generator.num_adain_params) * 0.3)
    assert output.blend_mask.min() < 0.9  # the synthesis is in the frame too
    assert torch.equal(compose(output, shots, 64), output.frame)


def test_at_twice_the_size_it_moves_the_large_shots_the_same_way():
    """Shots that are the small ones enlarged give the small frame enlarged (to sampling error);
    shots with detail the small ones lack keep it."""
    generator = _warp_generator()
    shots = _smooth_shots(3, 64)
    with torch.no_grad():
        output = generator(_inputs(shots), torch.randn(2, generator.num_adain_params) * 0.3)
        large = compose(output, upscale(shots, 128), 128)
        assert large.shape == (2, 3, 128, 128)
        assert (large - upscale(output.frame, 128)).abs().mean() < 0.02
        stripes = upscale(shots, 128).clone()
        stripes[..., ::2] += 0.2  # 1 px detail the 64 px shots cannot hold
        detailed = compose(output, stripes, 128)
    high = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert high(detailed) > 2 * high(large)


def test_opencv_and_pytorch_compose_the_same_frame():
    """On a CPU in float32 the enlargements and the bicubic move go through OpenCV; in float64
    through PyTorch. The same frame either way (OpenCV reads its maps to 1/32 px)."""
    import dataclasses

    generator = _warp_generator()
    shots = upscale(_smooth_shots(3, 64), 160)
    shots[..., ::3] += 0.1  # detail the move must carry
    with torch.no_grad():
        output = generator(_inputs(_smooth_shots(3, 64)), torch.randn(2, generator.num_adain_params) * 0.3)
        by_opencv = compose(output, shots, 160)
        double = {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
        double = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in double.items()}
        by_torch = compose(type(output)(**double), shots.double(), 160).float()
    assert by_opencv.dtype == torch.float32 and by_opencv.shape == (2, 3, 160, 160)
    assert (by_opencv - by_torch).abs().mean() < 2e-3 and (by_opencv - by_torch).abs().max() < 0.05


def test_a_generator_without_a_flow_is_upscaled():
    from talkinghead.models import GeneratorOutput

    frame = _smooth_shots(1, 32)
    out = compose(GeneratorOutput(frame=frame), torch.zeros(1, 3, 64, 64), 64)
    assert out.shape == (1, 3, 64, 64) and (out - upscale(frame, 64)).abs().max() == 0


@pytest.fixture(scope="module")
def sharp_avatar(astronaut):
    from talkinghead.inference.fitting import fit_avatar

    return fit_avatar([astronaut], size=512)


def test_an_avatar_keeps_its_shots_at_the_size_the_portrait_holds(sharp_avatar, tmp_path):
    from talkinghead.inference.avatar import Avatar

    avatar = sharp_avatar
    side = int(avatar.portrait_box[2])  # the astronaut's face box: 166 px of her 512 px photo
    assert avatar.size == 128 and avatar.output_size == side == avatar.detail.shape[1]
    landmarks = avatar.shot_landmarks[:1] + np.float32([1.0, 0.5])
    frame = next(avatar.generate(landmarks))
    assert frame.shape == (side, side, 3)
    loaded = Avatar.load(avatar.save(tmp_path / "a.avatar"))
    assert np.array_equal(next(loaded.generate(landmarks)), frame)
    smaller = avatar.at_size(150)
    assert smaller.output_size == 150 and next(smaller.generate(landmarks)).shape == (150, 150, 3)
    assert avatar.at_size(128).detail is None  # at the model's size: the generator's own frames


def test_an_avatar_file_of_format_1_loads_and_renders_at_the_model_size(sharp_avatar, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from talkinghead.inference.avatar import Avatar

    path = sharp_avatar.save(tmp_path / "new.avatar")
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "detail"}
        metadata = {**f.metadata(), "version": "1"}
    save_file(tensors, str(tmp_path / "old.avatar"), metadata=metadata)
    old = Avatar.load(tmp_path / "old.avatar")
    assert old.detail is None and old.output_size == 128
    assert next(old.generate(old.shot_landmarks[:1])).shape == (128, 128, 3)
    save_file(tensors, str(tmp_path / "future.avatar"), metadata={**metadata, "version": "9"})
    with pytest.raises(ValueError, match="newer than this talkinghead"):
        Avatar.load(tmp_path / "future.avatar")
    assert json.loads(metadata["config"])["model"]["generator"] == "warp"


def test_the_paste_mask_follows_the_head_and_shows_no_box_edge(sharp_avatar):
    from talkinghead.inference.animate import paste_mask

    source = sharp_avatar.shot_landmarks[0]
    mask = paste_mask(source, source, 128)[..., 0]
    assert mask.shape == (128, 128)
    assert max(mask[0].max(), mask[-1].max(), mask[:, 0].max(), mask[:, -1].max()) < 1e-3  # fades out inside the crop
    inside = np.round(source).astype(int)
    assert mask[inside[:, 1], inside[:, 0]].min() > 0.95  # every landmark is covered
    turned = source + np.float32([12.0, 0.0])
    moved = paste_mask(source, turned, 128)[..., 0]
    assert (moved >= mask - 1e-6).all() and moved[:, 100:].sum() > mask[:, 100:].sum()  # both faces


def test_a_crop_that_leaves_the_frame_has_no_streaks(astronaut):
    from talkinghead.face.crop import crop_image

    box = np.array([-100, 200, 300])  # 100 px past the photo's left edge
    replicated = crop_image(astronaut, box, 300).astype(int)
    mirrored = crop_image(astronaut, box, 300, border="reflect").astype(int)
    # Repeated edge pixels: every row constant over the padding; mirrored ones vary like the photo.
    assert np.abs(np.diff(replicated[:, :100], axis=1)).max() == 0
    assert np.abs(np.diff(mirrored[:, :100], axis=1)).mean() > 2
    assert np.array_equal(mirrored[:, 100:], replicated[:, 100:])


@pytest.mark.slow
def test_the_readme_job_keeps_the_portraits_detail(portrait, tmp_path):
    """The README's command (paste, bundled model and motion): the face keeps at least half of the
    photo's detail (the variance of the Laplacian in the face box); the 128 px path kept 0.21."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from sharpness import measure

    kept = {size: measure(portrait, None, size, 40, tmp_path)["kept_detail"] for size in (128, 512)}
    assert kept[512] >= 0.5 and kept[128] < 0.3, kept
