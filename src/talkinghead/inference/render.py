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

On a CPU in float32 the enlargements and the bicubic sampling at S go through OpenCV
(`cv2.resize`, `cv2.remap`: the same maps and the same cubic kernel, the maps read to 1/32 px, at
a fraction of the time of `F.interpolate` / `F.grid_sample` there; docs/benchmarks.md); on other
devices and dtypes, and where gradients flow, through PyTorch.
"""

from __future__ import annotations

import cv2
import numpy as np
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
    if by_opencv(maps):
        return torch.from_numpy(_cv_resize(maps.permute(0, 2, 3, 1).numpy(), size)).permute(0, 3, 1, 2)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def by_opencv(tensor: torch.Tensor) -> bool:
    """Whether OpenCV can stand in for PyTorch's sampling of `tensor`: on a CPU, float32, no gradients."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and not tensor.requires_grad


def _cv_resize(maps: np.ndarray, size: int) -> np.ndarray:
    """`[N, r, r, C]` float32 -> `[N, size, size, C]`, bilinear with pixel centres at half pixels
    (PyTorch's `align_corners=False`)."""
    out = np.empty((len(maps), size, size, maps.shape[-1]), np.float32)
    for m, o in zip(np.ascontiguousarray(maps), out):
        o.reshape(size, size, -1)[:] = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR).reshape(
            size, size, -1
        )
    return out


def _move(shots: torch.Tensor, picked: torch.Tensor, flow: torch.Tensor, size: int) -> torch.Tensor:
    """`[N, 3, S, S]`: the shots `picked` (`[N]` indices into `[K, 3, S, S]` shots) moved by
    `[N, R, R, 2]` grids enlarged to S; bicubic, border padding. OpenCV's remap reads its maps to
    1/32 px (within 0.01 of PyTorch's on noise, 4e-5 on smooth images)."""
    if not (by_opencv(shots) and by_opencv(flow)):
        return warp(shots[picked], resize_grid(flow, size), "bicubic")
    pixels = _cv_resize(flow.numpy(), size)
    pixels += 1
    pixels *= size / 2
    pixels -= 0.5  # normalised -> pixel coordinates (align_corners=False)
    images = np.ascontiguousarray(shots.permute(0, 2, 3, 1).numpy())  # each shot once, channels last
    moved = np.empty((len(picked), size, size, 3), np.float32)
    for index, grid, out in zip(picked.tolist(), pixels, moved):
        cv2.remap(images[index], grid[..., 0], grid[..., 1], cv2.INTER_CUBIC, dst=out, borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(moved).permute(0, 3, 1, 2)


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
    if size == R:  # the generator's own sampling: the same frame, to the bit
        moved = warp(shots[output.shots.flatten()], output.flow.flatten(0, 1).to(shots.dtype))
    else:
        moved = _move(shots, output.shots.flatten(), output.flow.flatten(0, 1), size)
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
