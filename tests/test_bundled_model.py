"""The bundled model's seeded output slice (as diffusers tests its pipelines): a few pixel values
of a feed-forward frame of scikit-image's astronaut. A refactor must leave them as they are; a new
bundled model or a deliberate change of what the generator is given updates them, and says so
(last: cpu-warp-lean, the warp-guided generator, replaced the paper's generator on 2026-12-01;
its 2026-12-02 settings — agreement-gated fusion, blend bias 4 — leave this slice as it was)."""

from __future__ import annotations

import numpy as np
import torch

from talkinghead.inference.fitting import fit_avatar


def test_bundled_model_feed_forward_slice(astronaut):
    torch.manual_seed(0)
    avatar = fit_avatar([astronaut])
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


def test_bundled_model_fuses_only_shots_that_agree(astronaut):
    """The bundled file's agreement gate (`model.fusion_agreement`): the astronaut and her mirror
    image as two shots, driven between their landmarks (nearer the first). The mirror image warps
    to a different picture, so the gated frame is the nearest shot's alone; without the gate the
    fusion mixes the mirror image in."""
    torch.manual_seed(0)
    avatar = fit_avatar([astronaut, np.ascontiguousarray(astronaut[:, ::-1])], shots=2)
    driving = (0.6 * avatar.shot_landmarks[0] + 0.4 * avatar.shot_landmarks[1])[None].astype(np.float32)
    bundled, frames = avatar.config, {}
    for name, settings in [
        ("gated", []),
        ("ungated", ["model.fusion_agreement=0"]),
        ("nearest", ["model.fuse_shots=1"]),
    ]:
        avatar.config = bundled.override(settings)
        avatar.to("cpu")  # drops the generator built from the previous config
        frames[name] = next(avatar.generate(driving)).astype(np.float32)
    assert bundled.model.settings.fusion_agreement > 0
    assert np.abs(frames["gated"] - frames["nearest"]).mean() < 1.0  # of 255
    assert np.abs(frames["ungated"] - frames["nearest"]).mean() > 5.0
