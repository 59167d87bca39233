"""The one place where uint8 images and float tensors convert into each other.

Tensors are `[..., 3, H, W]` float in [-1, 1]; arrays are `[..., H, W, 3]` uint8 RGB.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """`[..., H, W, 3]` uint8 -> `[..., 3, H, W]` float32 in [-1, 1]."""
    # A copy only when needed: torch wants writable, contiguous memory.
    tensor = torch.from_numpy(np.require(images, requirements=["C", "W"])).movedim(-1, -3)
    return tensor.float().div_(127.5).sub_(1.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """`[..., 3, H, W]` float in [-1, 1] -> `[..., H, W, 3]` uint8 (rounded, clipped)."""
    # + 128 and truncation round half up; cast to bytes before the transpose moves a quarter of
    # the memory (three passes where clamp, add, multiply, round, cast and a copy took six).
    array = tensor.detach().float().mul(127.5).add_(128.0).clamp_(0, 255).to(torch.uint8)
    return array.movedim(-3, -1).contiguous().cpu().numpy()
