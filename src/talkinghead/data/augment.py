"""Training augmentation: mirror, colour, and scale/shift jitter that keeps landmarks on the face.

An episode is one person in one clip, so the mirror and the colour change apply to all its frames
alike (the shots must still predict the target's look); scale and shift are drawn per frame (faces
move within a clip, and the generator should follow landmarks wherever they are). Geometry only
zooms in, with the shift bounded by the zoom, so every output pixel is a real pixel: no padded or
reflected borders for the generator to learn to paint.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The iBUG 68-point markup's left-right pairs: point i of a mirrored face is point MIRROR[i] of
# the original (the subject's right eye becomes their left eye, and so on).
MIRROR = np.array(
    [*range(16, -1, -1)]  # jaw
    + [*range(26, 16, -1)]  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)


def mirror_landmarks(landmarks, size: int):
    """`[N, 68, 2]` landmarks (numpy or torch; a new array) of the `size`-pixel frames mirrored
    left-right: x -> size - 1 - x, and each point swapped with its `MIRROR` partner."""
    mirrored = landmarks[:, MIRROR]  # advanced indexing: a copy
    mirrored[..., 0] = size - 1 - mirrored[..., 0]
    return mirrored


@dataclass(frozen=True)
class Augment:
    flip: float = 0.5  # probability of mirroring an episode
    color: float = 0.1  # brightness, contrast and saturation change up to this fraction
    scale: float = 0.1  # zoom in by up to this fraction, per frame
    shift: float = 1.0  # shift by up to this fraction of the margin the zoom leaves

    @property
    def active(self) -> bool:
        return bool(self.flip or self.color or self.scale)

    def __call__(
        self, frames: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """`[N, S, S, 3] uint8` frames and `[N, 68, 2]` landmarks in their pixels -> the same, augmented."""
        frames, landmarks = frames.copy(), landmarks.astype(np.float64)
        size = frames.shape[1]
        if rng.random() < self.flip:
            frames = np.ascontiguousarray(frames[:, :, ::-1])
            landmarks = mirror_landmarks(landmarks, size)
        if self.scale:
            centre = (size - 1) / 2
            for i in range(len(frames)):
                zoom = 1 + rng.uniform(0, self.scale)
                margin = (zoom - 1) * centre  # how far the zoomed image overhangs each side
                offset = centre - zoom * centre + rng.uniform(-1, 1, 2) * margin * self.shift
                matrix = np.array([[zoom, 0, offset[0]], [0, zoom, offset[1]]])
                frames[i] = cv2.warpAffine(frames[i], matrix, (size, size), flags=cv2.INTER_LINEAR)
                landmarks[i] = landmarks[i] * zoom + offset
        if self.color:
            brightness, contrast, saturation = rng.uniform(-self.color, self.color, 3)
            x = frames.astype(np.float32)
            grey = x.mean(axis=-1, keepdims=True)
            x = grey + (x - grey) * (1 + saturation)
            mean = x.mean()
            x = (x - mean) * (1 + contrast) + mean + 255 * brightness
            frames = np.clip(x + 0.5, 0, 255).astype(np.uint8)
        return frames, landmarks
