"""The bundled model's seeded output slice (as diffusers tests its pipelines): a few pixel values
of a feed-forward frame of scikit-image's astronaut. A refactor must leave them as they are; a new
bundled model or a deliberate change of what the generator is given updates them, and says so
(last: cpu-warp-lean, the warp-guided generator, replaced the paper's generator on 2026-12-01;
its 2026-12-02 settings — agreement-gated fusion, blend bias 4 — leave this slice as it was)."""

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
        [[226, 227, 226, 221], [221, 225, 227, 224], [223, 228, 227, 225], [227, 226, 229, 225]], np.int16
    )
    np.testing.assert_allclose(frame[60:64, 60:64, 0].astype(np.int16), expected, atol=1)
    # The crop and landmarks it was made from: the detector and the point convention (points.py).
    np.testing.assert_allclose(avatar.shot_landmarks[0, 0], [28.4157, 49.2349], atol=0.05)
