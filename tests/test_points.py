"""One point convention (points.py) from data to training, fitting and evaluation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from talkinghead.face.crop import crop_image, to_crop, to_frame
from talkinghead.face.points import from_unit, rescale_points, to_unit


@pytest.mark.parametrize("interpolation", [cv2.INTER_AREA, cv2.INTER_LINEAR])
def test_rescale_points_follows_what_resize_does_to_the_pixels(interpolation):
    # A bright 2x2 blob centred at (20.5, 9.5) in a 64 px image; after resizing to 32 px its
    # intensity centroid is where rescale_points puts the point (the half-pixel term matters:
    # without it the point is 0.25 px off).
    image = np.zeros((64, 64), np.float32)
    image[9:11, 20:22] = 1.0
    small = cv2.resize(image, (32, 32), interpolation=interpolation)
    ys, xs = np.mgrid[:32, :32]
    centroid = np.array([(xs * small).sum(), (ys * small).sum()]) / small.sum()
    expected = rescale_points(np.array([20.5, 9.5]), 64, 32)
    np.testing.assert_allclose(centroid, expected, atol=0.02)
    assert np.abs(centroid - np.array([20.5, 9.5]) * 0.5).max() > 0.2


def test_crop_transform_round_trip_and_agrees_with_the_pixels():
    rng = np.random.default_rng(0)
    points = rng.uniform(40, 200, size=(68, 2)).astype(np.float32)
    box = np.array([30, 25, 200], np.float32)
    np.testing.assert_allclose(to_frame(to_crop(points, box, 128), box, 128), points, atol=1e-3)
    # A pixel at frame (130, 75) lands where to_crop says in the resized crop.
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[74:76, 129:131] = 255
    crop = crop_image(frame, box, 100).astype(np.float64)[..., 0]
    ys, xs = np.mgrid[:100, :100]
    centroid = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, to_crop(np.array([[129.5, 74.5]], np.float32), box, 100)[0], atol=0.05)
    np.testing.assert_allclose(from_unit(to_unit(points, 37), 37), points, atol=1e-4)


def test_a_crop_past_the_frame_repeats_the_edge_pixels():
    """No black band where the box leaves the frame: the warp would pull it across a turned face."""
    frame = np.zeros((100, 80, 3), np.uint8)
    frame[:, :, 0] = np.arange(80, dtype=np.uint8)[None] * 3  # red grows to the right
    frame[:, :, 1] = 150
    crop = crop_image(frame, np.array([-20, 50, 120]), 120)  # 20 px past the left, 70 past the bottom
    assert (crop[..., 1] == 150).all()
    np.testing.assert_array_equal(crop[:, :21, 0], 0)  # the frame's first column, repeated
    np.testing.assert_array_equal(crop[:, 99:, 0], 237)  # its last column
    np.testing.assert_array_equal(crop[60, 20:100, 0], frame[0, :, 0])  # inside: the frame itself


@pytest.mark.slow
def test_training_fitting_and_evaluation_at_another_size_draw_the_same_landmarks(carphone, tmp_path):
    """64 px data, a 32 px model: the landmark images drawn in training and in evaluation agree."""
    import shutil

    from talkinghead.checkpoint import export_model, list_checkpoints, load_model
    from talkinghead.config import load_config
    from talkinghead.data import FaceDataset
    from talkinghead.data.episodes import EpisodeDataset
    from talkinghead.data.prepare import PrepareOptions, prepare
    from talkinghead.evaluation.evaluate import EvalOptions, evaluate, load_split, split_clip
    from talkinghead.face.drawing import draw_batch
    from talkinghead.inference.fitting import FitOptions, fit_shots
    from talkinghead.training.train import train

    for name in ("anna", "ben"):
        (tmp_path / "in" / name).mkdir(parents=True)
        shutil.copy(carphone, tmp_path / "in" / name / "talk.mp4")
    prepare(
        [tmp_path / "in"], tmp_path / "data", PrepareOptions(crop_size=64, max_frames=10), workers=1, progress=False
    )
    data = FaceDataset(tmp_path / "data")
    assert data.meta(0)["crop_size"] == 64
    config = load_config("tiny", ["train.steps=1", "train.flip=0", "train.color_jitter=0", "train.scale_jitter=0"])
    train_run = tmp_path / "run"
    train(tmp_path / "data", config, train_run, progress=False)
    model = export_model(list_checkpoints(train_run / "checkpoints")[-1], tmp_path / "m.safetensors")

    # Training's view of a clip's frames at 32 px...
    episodes = EpisodeDataset(data, shots=2, resolution=32, seed=0)
    item = episodes[0, 0]
    # ...and evaluation's: every frame of the clip as a target.
    shot_index, target_index = split_clip(data.num_frames(0), 1, data.num_frames(0))
    _, _, _, target_lm = load_split(data, 0, 1, data.num_frames(0), 32)
    by_frame = dict(zip(target_index.tolist(), target_lm))
    shown = [i for i in item["frame_indices"].tolist() if i in by_frame]
    assert shown, "the episode drew no frame from the clip's second half; pick another seed"
    for n, index in enumerate(item["frame_indices"].tolist()):
        if index not in by_frame:
            continue
        points = item["source_points"][n] if n < 2 else item["target_points"]
        np.testing.assert_allclose(points.numpy(), by_frame[index], atol=1e-4)
        drawn = item["source_landmark_images"][n] if n < 2 else item["target_landmark_images"]
        evaluated = draw_batch(by_frame[index][None], 32)[0]
        np.testing.assert_array_equal(((drawn.permute(1, 2, 0).numpy() + 1) * 127.5).round(), evaluated)
        # The convention is not the naive scale: that would be a quarter-pixel off.
        assert np.abs(by_frame[index] - data.landmarks(0)[index] * 0.5).max() > 0.2

    # Fitting and evaluation run at the model's size on the bigger crops.
    frames = np.stack([data.frame(0, i) for i in range(2)])
    small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in frames])
    avatar = fit_shots(load_model(model), small, rescale_points(data.landmarks(0)[:2], 64, 32), FitOptions(steps=1))
    assert next(avatar.generate(avatar.shot_landmarks[:1])).shape == (32, 32, 3)
    summary = evaluate(
        model, tmp_path / "data", tmp_path / "eval", EvalOptions(shots=(1,), targets=2, steps=1, max_clips=1,
        methods=("ff", "ft")), progress=False,
    )  # fmt: skip
    # (dlib finds no face in 32 px frames, so landmark error is None here; LPIPS is measured.)
    assert summary["methods"]["ft"]["1"]["steps"] == 1
    assert all(torch.isfinite(torch.tensor(summary["methods"][m]["1"]["lpips"])) for m in ("ff", "ft"))
