"""The one point convention: pixel centres at integer coordinates.

Landmarks are `(x, y)` float coordinates in the pixels of some image, with the centre of pixel
`(i, j)` at `(i, j)`; an image `S` pixels wide spans `[-0.5, S - 0.5]`. This is what dlib and
OpenCV's drawing use, and what `cv2.resize` assumes when it maps pixel centres between sizes.
Changing the size of the image the points refer to is therefore a scale about `(-0.5, -0.5)`, not
about the origin:

    to = (from + 0.5) * to_size / from_size - 0.5

Normalised ("unit") coordinates are the continuous position in `[0, 1]` of the image side:
`unit = (pixels + 0.5) / size` (motion templates store these).
"""

from __future__ import annotations

import torch


def rescale_points(points, from_size: float, to_size: float):
    """Points in the pixels of a `from_size` image -> pixels of a `to_size` image (same content).

    `points`: `[..., 2]` array or tensor; `from_size` may be a scalar or broadcast against
    `points[..., :1]` (e.g. one crop side per frame)."""
    return (points + 0.5) * (to_size / from_size) - 0.5


def to_unit(points, size: float):
    """Pixel coordinates of a `size` image -> unit coordinates in [0, 1]."""
    return (points + 0.5) / size


def from_unit(points, size: float):
    """Unit coordinates -> pixel coordinates of a `size` image."""
    return points * size - 0.5


def to_grid(points: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates of a `size` image -> `grid_sample`'s `[-1, 1]` frame (align_corners=False)."""
    return (points + 0.5) * (2.0 / size) - 1.0


__all__ = ["from_unit", "rescale_points", "to_grid", "to_unit"]
