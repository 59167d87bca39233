"""The bundled model's seeded output slice (as diffusers tests its pipelines): a few pixel values
of a feed-forward frame of scikit-image's astronaut. A refactor must leave them as they are; a new
bundled model or a deliberate change of what the generator is given updates them, and says so."""

from __future__ import annotations

import numpy as np
import torch

from talkinghead.avatar import Avatar


def test_bundled_model_feed_forward_slice(astronaut):
    torch.manual_seed(0)
    avatar = Avatar.fit([astronaut])
    frame = next(avatar.generate(avatar.shot_landmarks[:1]))
    assert frame.shape == (128, 128, 3)
    # Red channel, rows and columns 60-63 (the face's middle). atol 1: uint8 rounding of float
    # sums that differ with the number of BLAS threads.
    expected = np.array(
        [[225, 227, 228, 226], [229, 232, 232, 230], [231, 234, 233, 231], [233, 235, 235, 233]], np.int16
    )
    np.testing.assert_allclose(frame[60:64, 60:64, 0].astype(np.int16), expected, atol=1)
    # The crop and landmarks it was made from: the detector and the point convention (points.py).
    np.testing.assert_allclose(avatar.shot_landmarks[0, 0], [28.4157, 49.2349], atol=0.05)
