"""Augmentation moves landmarks exactly as it moves the face: checked with the real detector."""

from __future__ import annotations

import numpy as np
import torch

from talkinghead.data import FaceDataset
from talkinghead.data.augment import MIRROR, Augment
from talkinghead.data.episodes import EpisodeDataset
from talkinghead.face.tracking import FaceTracker


def nme(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))


def _detect(landmarker, image: np.ndarray) -> np.ndarray:
    landmarks = FaceTracker(landmarker)(image)
    assert landmarks is not None
    return landmarks


def test_mirror_is_a_pairing_of_the_68_points():
    assert sorted(MIRROR) == list(range(68))
    assert (MIRROR[MIRROR] == np.arange(68)).all()
    assert MIRROR[36] == 45 and MIRROR[48] == 54 and MIRROR[30] == 30 and MIRROR[0] == 16


def test_flip_zoom_and_shift_keep_landmarks_on_the_face(landmarker, astronaut):
    face = astronaut[20:276, 90:346]  # 256 px around her face
    truth = _detect(landmarker, face)
    frames = np.stack([face, face, face])
    augment = Augment(flip=1.0, color=0.0, scale=0.15)
    out, moved = augment(frames, np.stack([truth] * 3), np.random.default_rng(3))
    for image, expected in zip(out, moved):
        # The detector on the augmented image finds the points where the augmentation put them,
        # with each point's name kept (the subject's right eye is still point 36-41).
        assert nme(_detect(landmarker, image), expected) < 0.04
        assert expected[36, 0] < expected[45, 0]  # right eye on the image's left, as in any frontal face
    # Zoom and shift are per frame.
    assert not np.allclose(moved[0], moved[1])


def test_colour_is_one_change_for_the_whole_episode(astronaut):
    face = astronaut[20:276, 90:346]
    frames = np.stack([face, face])
    landmarks = np.zeros((2, 68, 2))
    out, _ = Augment(flip=0.0, color=0.3, scale=0.0)(frames, landmarks, np.random.default_rng(0))
    assert np.array_equal(out[0], out[1])
    assert np.abs(out.astype(int) - frames).mean() > 2


def test_episodes_are_augmented_and_still_reproducible(tiny_data):
    data = FaceDataset(tiny_data)
    plain = EpisodeDataset(data, shots=2, resolution=32, seed=0)
    augmented = EpisodeDataset(data, shots=2, resolution=32, seed=0, augment=Augment(flip=1.0, scale=0.1))
    a, b = augmented[0, 1], augmented[0, 1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["target_frame"], plain[0, 1]["target_frame"])
    off = EpisodeDataset(data, shots=2, resolution=32, seed=0, augment=Augment(flip=0, color=0, scale=0))
    assert all(torch.equal(off[0, 1][k], plain[0, 1][k]) for k in a)
