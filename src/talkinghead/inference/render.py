"""The renderer: a generator's output composed at any output size S.

The networks run at the model's resolution R. What the warp generator shows is mostly the shots'
own pixels moved by a flow and fused per pixel, and a flow is resolution-free: a `grid_sample`
grid in normalised coordinates means the same at R and at S. So the motion is computed at R and
the move is repeated at S on the avatar's shots kept at S (Samsung's bi-layer model, ECCV 2020,
splits the same way): each shot's grid and fusion weight map upsampled to S, the shots sampled
there (bicubic: bilinear sampling of a moved image halves its fine detail), the synthesised frame
upsampled and blended in only where the blend mask lets it. At S = R this is the generator's own
frame, exactly. A generator without a flow (the paper's, which invents every pixel) renders at R
and is upscaled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from talkinghead.models import GeneratorOutput
from talkinghead.models.flow import resize_grid, warp


def upscale(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, C, R, R]` in [-1, 1] -> `[B, C, size, size]` (bicubic, clamped)."""
    if frames.shape[-1] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _resize(maps: torch.Tensor, size: int) -> torch.Tensor:
    """`[N, C, r, r]` weight or mask maps at `size` (bilinear: they are smooth)."""
    if maps.shape[-1] == size:
        return maps
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def compose(output: GeneratorOutput, shots: torch.Tensor | None, size: int | None = None) -> torch.Tensor:
    """The frames `[B, 3, S, S]` in [-1, 1] at `size` S (default: the shots' size).

    `output`: the generator's, at R; `shots`: the K shots it read, at S, `[K, 3, S, S]` in [-1, 1]
    (the same order), or None to upscale its frame. Without a flow the frame is upscaled."""
    R = output.frame.shape[-1]
    size = size or (shots.shape[-1] if shots is not None else R)
    if output.flow is None or shots is None:
        return upscale(output.frame, size)
    if shots.shape[-1] != size:
        raise ValueError(f"shots are {shots.shape[-1]} px, the output is {size} px")
    B, count = output.shots.shape  # the fused shots of each frame
    picked = shots[output.shots.flatten()]  # [B * count, 3, S, S]
    grid = resize_grid(output.flow.flatten(0, 1), size).to(picked.dtype)
    if size == R:  # the generator's own sampling: the same frame, to the bit
        moved = warp(picked, grid)
    else:
        moved = F.grid_sample(picked, grid, mode="bicubic", padding_mode="border", align_corners=False)
    moved = moved.unflatten(0, (B, count))
    if count == 1:  # one shot: its weight is 1 everywhere
        fused = moved[:, 0]
    else:
        weights = _resize(output.fusion_weights.flatten(0, 1), size).unflatten(0, (B, count))
        fused = (moved * weights).sum(1)
    mask = _resize(output.blend_mask, size)
    if size == R:
        return mask * fused + (1 - mask) * output.synthesised
    # The synthesis is smooth and let in where warping cannot serve: bilinear is enough there.
    return torch.lerp(_resize(output.synthesised, size), fused, mask).clamp_(-1, 1)
