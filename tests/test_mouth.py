"""The mouth metrics on real faces: the lip gap from dlib's landmarks, teeth by colour inside the
inner lips, and the mouth box's LPIPS split by open and closed mouths."""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.evaluation.mouth import (
    INNER_LIPS,
    OPEN,
    lip_gap,
    mouth_boxes,
    mouth_metrics,
    shows_teeth,
    teeth_share,
)


@pytest.fixture(scope="module")
def face(astronaut, landmarker):
    """The astronaut (smiling, teeth showing) and her landmarks from the real detector."""
    from talkinghead.face.tracking import FaceTracker

    points = FaceTracker(landmarker)(astronaut)
    assert points is not None
    return astronaut, points


def test_the_astronauts_smile_shows_teeth_and_a_painted_over_mouth_does_not(face):
    image, points = face
    assert lip_gap(points) > 0.05 and shows_teeth(image, points)
    closed = image.copy()
    inner = np.round(points[INNER_LIPS]).astype(np.int32)
    import cv2

    cv2.fillPoly(closed, [inner], (150, 60, 60))  # lips' red over the teeth
    assert teeth_share(closed, points) < 0.02 and not shows_teeth(closed, points)
    shut = points.copy()
    shut[[65, 66, 67]] = shut[[63, 62, 61]]  # the lower inner lip on the upper one
    assert lip_gap(shut) == pytest.approx(0, abs=1e-6) and teeth_share(image, shut) is None


def test_mouth_metrics_split_open_and_closed_targets(face):
    from talkinghead.evaluation.metrics import LPIPS

    image, points = face
    shut = points.copy()
    shut[[65, 66, 67]] = shut[[63, 62, 61]]
    landmarks = np.stack([points, shut])
    real = np.stack([image, image])
    blurred = np.stack([image, image])
    x0, y0, x1, y1 = mouth_boxes(points[None], image.shape[0])[0]
    blurred[:, y0:y1, x0:x1] = blurred[:, y0:y1, x0:x1].mean((1, 2), keepdims=True).astype(np.uint8)
    lpips = LPIPS()
    same = mouth_metrics(real, real, landmarks, [points, shut], lpips)
    worse = mouth_metrics(blurred, real, landmarks, [points, points], lpips)
    assert lip_gap(points) > OPEN  # the first target counts as open, the second as closed
    assert np.isnan(same["mouth_lpips_open"][1]) and np.isnan(same["mouth_lpips_closed"][0])
    assert same["mouth_lpips"].max() < 1e-3 and worse["mouth_lpips_open"][0] > 0.2
    assert same["mouth_opening_error"].max() < 1e-6 and worse["mouth_opening_error"][1] > 0.05
    assert same["teeth"][0] == 1.0 and worse["teeth"][0] == 0.0 and np.isnan(same["teeth"][1])
    # Sharpness on open targets only: the real mouth's own detail is 1, a flat smear of it far less.
    assert abs(same["mouth_sharpness_open"][0] - 1) < 1e-9 and np.isnan(same["mouth_sharpness_open"][1])
    assert worse["mouth_sharpness_open"][0] < 0.5


def test_a_mouth_aligned_crop_puts_the_corners_on_a_fixed_line(face):
    import cv2

    from talkinghead.face.mouth import MOUTH_WIDTH, align_mouth

    image, points = face
    tilted = cv2.warpAffine(image, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512))
    rotation = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    tilted_points = points @ rotation[:, :2].T + rotation[:, 2]
    for frame, landmarks in ((image, points), (tilted, tilted_points)):
        crop, moved, _ = align_mouth(frame, landmarks, 64)
        assert crop.shape == (64, 64, 3)
        np.testing.assert_allclose(moved[48], [31.5 - 32 * MOUTH_WIDTH, 31.5], atol=1e-3)
        np.testing.assert_allclose(moved[54], [31.5 + 32 * MOUTH_WIDTH, 31.5], atol=1e-3)
        assert shows_teeth(crop, moved)  # the same smile, upright and at one scale


@pytest.mark.slow
def test_mouth_episodes_pair_closed_shots_with_open_targets(tiny_data):
    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import LIPS, MouthEpisodes, warp_mouth
    from talkinghead.face.mouth import align_mouth, hidden_share

    data = FaceDataset(tiny_data)
    episodes = MouthEpisodes(data, shots=2, side=32, open_targets=1.0, closed_shots=1.0)
    clip = next(c for c in range(len(data)) if (lip_gap(data.landmarks(c)) > OPEN).any())
    item = episodes[(0, clip)]
    assert item["shots"].shape == (2, 3, 32, 32) and item["warped"].shape == item["target"].shape == (3, 32, 32)
    gaps = lip_gap(data.landmarks(clip))
    assert float(item["opening"]) > OPEN  # an open target ...
    picks = episodes._pick(clip, np.random.default_rng((0, 0, clip)))
    assert gaps[picks[:-1]].max() < gaps[picks[-1]]  # ... from shots more closed than it
    # Hidden from the generator: the warp inside the target's mouth, as far as it opens wider than the shot.
    share = float(hidden_share(gaps[picks[-1]], gaps[picks[:-1]].max()))
    assert 0 < share and item["target_hidden"].max() > 0
    assert torch.all(item["target_hidden"] <= item["target_region"] + 1e-6)
    # A run's `dilate` grows the region (the lips themselves from about 0.2 mouth widths).
    wider = MouthEpisodes(data, shots=2, side=32, open_targets=1.0, closed_shots=1.0, dilate=0.2)[(0, clip)]
    assert float(wider["target_region"].sum()) > 1.3 * float(item["target_region"].sum())
    assert torch.all(wider["target_region"] >= item["target_region"] - 0.02)
    # `hidden_dilate` hides less than the region: the lips around the opening stay in view.
    seeing = MouthEpisodes(data, shots=2, side=32, open_targets=1.0, closed_shots=1.0, hidden_dilate=0.0)[(0, clip)]
    assert torch.equal(seeing["target_region"], item["target_region"])
    assert 0 < float(seeing["target_hidden"].sum()) < 0.8 * float(item["target_hidden"].sum())
    # The warp puts the shot's lips where the target's are.
    frame, points = data.frame(clip, int(picks[0])), data.landmarks(clip)[picks[0]]
    crop, moved, _ = align_mouth(frame, points, 32)
    goal = moved.copy()
    goal[LIPS[12:]] += np.float32([0.0, 1.5])  # the inner lips 1.5 px lower
    assert np.abs(warp_mouth(crop, moved, goal).astype(int) - crop).mean() > 0.5


@pytest.mark.slow
def test_the_mouth_generator_trains_checkpoints_and_resumes(tiny_data, tmp_path):
    """Two steps, a checkpoint, two more from it, one more with a later end; a new run warm-started
    from it keeps its networks; the "region" blend changes only the region, the "learned" one
    starts near the warp."""
    import dataclasses

    import torch

    from talkinghead.checkpoint import list_checkpoints, load_checkpoint
    from talkinghead.models.mouth import MouthGenerator
    from talkinghead.training.mouth import MouthConfig, train_mouth

    config = MouthConfig(side=32, shots=2, channels=8, embedding_dim=16, batch_size=2, workers=0, steps=4,
                         checkpoint_every=2, log_every=1, sample_every=2)  # fmt: skip
    assert train_mouth(tiny_data, tmp_path / "run", config, max_steps=2, progress=False) == 2
    assert train_mouth(tiny_data, tmp_path / "run", config, resume=True, progress=False) == 4
    assert load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["step"] == 4
    longer = dataclasses.replace(config, steps=5)  # a finished run goes on to a new end
    assert train_mouth(tiny_data, tmp_path / "run", longer, resume=True, progress=False) == 5
    last = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    warm = dataclasses.replace(config, steps=1, init=str(last), lr_generator=0.0)
    train_mouth(tiny_data, tmp_path / "warm", warm, progress=False)
    start, trained = (load_checkpoint(list_checkpoints(tmp_path / r / "checkpoints")[-1]) for r in ("warm", "run"))
    key = "generator.head.parametrizations.weight.original"
    assert torch.equal(start["networks"][key], trained["networks"][key])
    warped, lips, region = torch.rand(1, 3, 32, 32) * 2 - 1, torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    region[..., 12:20, 8:24] = 1
    for blend in ("region", "learned"):
        generator = MouthGenerator(side=32, channels=8, embedding_dim=16, blend=blend).eval()  # no power steps
        psi = generator.adain_params(torch.rand(1, 16))
        mouth, mask = generator(warped, lips, psi, region)
        changed = (mouth - warped).abs().detach()[0].amax(0) > 1e-6
        if blend == "region":
            assert torch.equal(changed, region[0, 0] > 0)
            # What the warp left inside the region (stretched lips) is hidden from the generator.
            inside = torch.where(region > 0, torch.rand_like(warped), warped)
            assert torch.allclose(generator(inside, lips, psi, region)[0], mouth)
            outside = torch.where(region > 0, warped, torch.rand_like(warped))
            assert not torch.allclose(
                generator.synthesise(outside, lips, psi, region)[0], generator.synthesise(warped, lips, psi, region)[0]
            )
        else:
            assert mouth.shape == warped.shape and float(mask.detach().mean()) < 0.3


def test_train_mouth_lpips_replaces_the_vgg_term_and_channels_widen_the_networks(tiny_data, tmp_path):
    """`train-mouth --lpips W --channels C`: the run's loss has LPIPS at W in place of the VGG
    features' L1, the term is logged each step, and the checkpoint's networks are C wide."""
    import json

    from talkinghead.checkpoint import load_checkpoint
    from talkinghead.stages import train_mouth

    train_mouth(data=tiny_data, out=tmp_path / "run", steps=1, batch_size=2, side=32, lpips=2.0, channels=8,
                progress=False)  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    loss = config["loss"]
    assert loss["lpips"] == 2.0 and loss["vgg"] == 0.0 and config["channels"] == 8
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("step-*.pt")
    stem = [v for k, v in load_checkpoint(checkpoint)["networks"].items() if k.startswith("generator.stem")]
    assert stem and stem[0].shape[0] == 8  # default width: 16
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged and all(row["loss/lpips"] > 0 for row in logged if "loss/lpips" in row)
    assert any("loss/lpips" in row for row in logged)


@pytest.mark.slow
def test_a_model_file_carries_the_mouth_into_avatars_and_frames(tiny_data, astronaut, tmp_path):
    """export --mouth puts a train-mouth checkpoint into a model file; an avatar fitted with it
    keeps a fitted mouth through save and load; the mouth changes frames only around the driving
    inner lips; old model files have none."""
    from pathlib import Path

    from talkinghead.checkpoint import default_model_path, export_model, list_checkpoints, load_model
    from talkinghead.face.points import rescale_points
    from talkinghead.inference.avatar import Avatar
    from talkinghead.inference.fitting import FitOptions, fit_avatar
    from talkinghead.training.mouth import MouthConfig, train_mouth

    root = Path(__file__).resolve().parents[1]
    assert load_model(root / "models" / "cpu-warp-0769.safetensors").mouth is None  # files from before the mouth
    assert load_model().mouth.settings.side == 64  # the bundled model carries the trained one
    assert load_model().closed_mouth.settings.blend == "region"  # and the one for closed mouths
    assert load_model(root / "models" / "cpu-warp-lean-open-mouth.safetensors").mouth.settings.blend == "region"
    older = root / "checkpoints" / "mouth-step-000008265.pt"  # a run from before the region blend
    old = load_model(export_model(default_model_path(), tmp_path / "old.safetensors", mouth=older))
    assert old.mouth.settings.blend == "learned" and old.mouth.settings.dilate == 0.08  # from before `dilate`
    old_avatar = fit_avatar([astronaut], model=old, size=256)
    assert (
        old_avatar.mouth.generator.blend == "learned" and next(old_avatar.generate(old_avatar.shot_landmarks[:1])).shape
    )
    config = MouthConfig(side=32, shots=2, channels=8, embedding_dim=16, batch_size=2, workers=0, steps=2,
                         checkpoint_every=2, log_every=1, sample_every=2, dilate=0.2)  # fmt: skip
    train_mouth(tiny_data, tmp_path / "run", config, progress=False)
    path = export_model(
        default_model_path(), tmp_path / "m.safetensors", mouth=list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    )
    model = load_model(path)
    assert model.mouth is not None and model.mouth.settings.side == 32 and model.mouth.settings.dilate == 0.2
    with_mouth = fit_avatar([astronaut], model=model, size=256)
    without = fit_avatar([astronaut], model=model, size=256, options=FitOptions(mouth=False))
    assert with_mouth.mouth is not None and without.mouth is None
    driving = with_mouth.shot_landmarks[:1].copy()
    driving[0, 57:60, 1] += 6  # the lower lip down: an open mouth
    driving[0, 65:68, 1] += 6
    a, b = next(with_mouth.generate(driving)).astype(int), next(without.generate(driving)).astype(int)
    changed = np.abs(a - b).max(-1) > 8
    assert changed.any()
    points = rescale_points(driving[0], with_mouth.size, with_mouth.output_size)
    ys, xs = np.nonzero(changed)
    inner = points[60:68]
    width = np.linalg.norm(points[54] - points[48])
    assert xs.min() > inner[:, 0].min() - width / 2 and xs.max() < inner[:, 0].max() + width / 2
    assert ys.min() > inner[:, 1].min() - width / 2 and ys.max() < inner[:, 1].max() + width / 2
    with_mouth.save(tmp_path / "a.avatar")
    loaded = Avatar.load(tmp_path / "a.avatar")
    assert loaded.mouth is not None and loaded.mouth.shot_opening == with_mouth.mouth.shot_opening > 0.05  # her smile
    assert loaded.mouth.settings.dilate == 0.2
    assert np.abs(next(loaded.generate(driving)).astype(int) - a).max() <= 1
    fitted = fit_avatar([astronaut, np.ascontiguousarray(astronaut[:, ::-1])], model=model, size=256,
                        options=FitOptions(steps=2))  # fmt: skip
    assert fitted.mouth is not None and fitted.mouth.steps == 2


def test_mouth_fine_tuning_remakes_each_shot_from_the_others_near_and_far(face):
    """`fit_mouth`'s pairs: each shot from every other (up to `SOURCES`, drawn when there are more),
    warped to its lips, hidden where it opens wider than that shot; `hidden_dilate` hides less."""
    import torch

    from talkinghead.face.mouth import align_mouth
    from talkinghead.inference.mouth import SOURCES, _pairs
    from talkinghead.models.mouth import MouthSettings

    image, points = face
    crop, moved, _ = align_mouth(image, points.astype(np.float64), 32)
    count = 4
    shots, lips = np.repeat(crop[None], count, 0), np.repeat(moved[None], count, 0).astype(np.float64)
    lips[1:, [56, 57, 58, 65, 66, 67], 1] += np.array([0.5, 1.0, 1.5])[:, None]  # shots 1-3 open wider and wider
    pairs = _pairs(shots, lips, MouthSettings(side=32))
    assert len(pairs.target) == count * (count - 1) and pairs.warped.shape == (12, 3, 32, 32)
    hidden = pairs.hidden.flatten(1).sum(1).reshape(count, count - 1)
    assert float(hidden[0].sum()) == 0  # the closed shot is never wider than the one it is made from
    assert float(hidden[3, 0]) > float(hidden[3, 2]) >= 0  # the widest from the closed one: the most hidden
    assert torch.all(pairs.hidden <= pairs.region + 1e-6)
    seeing = _pairs(shots, lips, MouthSettings(side=32, hidden_dilate=0.0))
    assert float(seeing.hidden.sum()) < 0.8 * float(pairs.hidden.sum()) and torch.equal(seeing.region, pairs.region)
    many = _pairs(np.repeat(crop[None], SOURCES + 4, 0), np.repeat(moved[None], SOURCES + 4, 0), MouthSettings(side=32))
    assert len(many.target) == (SOURCES + 4) * SOURCES


def test_mouth_settings_read_older_files_and_refuse_a_hidden_part_beyond_the_region():
    from talkinghead.models.mouth import MouthSettings

    old = MouthSettings.of({"side": 64, "channels": 16, "embedding_dim": 64})
    assert old.blend == "learned" and old.hidden_dilate is None
    new = MouthSettings.of({"side": 96, "channels": 16, "embedding_dim": 64, "blend": "region", "hidden_dilate": 0.02})
    assert new.hidden_dilate == 0.02
    with pytest.raises(ValueError, match="hidden_dilate"):
        MouthSettings(dilate=0.08, hidden_dilate=0.1)


@pytest.mark.slow
def test_a_person_whose_mouth_is_closed_in_every_shot_gets_the_closed_mouth(face, tmp_path):
    """`export --closed-mouth` adds a second mouth and keeps the file's first; `fit` uses it when no
    shot's lips are apart by more than `OPEN` (the astronaut's smile keeps the model's mouth)."""
    from pathlib import Path

    import cv2
    import torch

    from talkinghead.checkpoint import default_model_path, export_model, load_model
    from talkinghead.inference.fitting import fit_shots
    from talkinghead.stages import _mouth_words

    root = Path(__file__).resolve().parents[1]
    closed = root / "checkpoints" / "mouth-region-step-000003197.pt"
    path = export_model(default_model_path(), tmp_path / "m.safetensors", closed_mouth=closed)
    model = load_model(path)
    bundled = load_model()
    assert model.mouth.settings == bundled.mouth.settings and model.closed_mouth.settings.side == 64
    key = "generator.head.parametrizations.weight.original"
    assert torch.equal(model.mouth.networks.state_dict()[key], bundled.mouth.networks.state_dict()[key])
    image, points = face
    assert lip_gap(points) > OPEN  # her smile
    shut = points.copy()
    shut[[65, 66, 67], 1] = shut[[63, 62, 61], 1]  # the lower inner lip onto the upper one
    assert model.mouth_for(points[None]) is model.mouth and model.mouth_for(shut[None]) is model.closed_mouth
    assert model.mouth_for(np.stack([shut, points])) is model.mouth  # one open shot is enough
    crop = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    avatar = fit_shots(model, crop[None], (shut * 128 / image.shape[0])[None].astype(np.float32))
    assert avatar.mouth.settings.blend == "region" and avatar.mouth.settings.side == 64
    smiling = fit_shots(model, crop[None], (points * 128 / image.shape[0])[None].astype(np.float32))
    assert smiling.mouth.settings.blend == "learned"
    # `fit` says which one it got.
    assert "paints the whole opening" in _mouth_words(avatar) and "own teeth" in _mouth_words(smiling)
    assert "parted" not in _mouth_words(avatar)  # this file's closed mouth is from before the parting
    assert "lips parted" in _mouth_words(
        fit_shots(bundled, crop[None], (shut * 128 / image.shape[0])[None].astype(np.float32))
    )
    assert load_model(root / "models" / "cpu-warp-0769.safetensors").closed_mouth is None  # older files


def test_the_warp_inside_the_mouth_is_hidden_as_far_as_the_target_opens_wider_than_the_shot():
    from talkinghead.face.mouth import OPEN, hidden_share

    shot = 0.05
    assert list(hidden_share([0.0, shot, shot + OPEN / 2, shot + OPEN, 0.9], shot)) == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_the_renderers_mouth_cut_matches_the_training_crops(face):
    """`cut_mouths` (torch, batched, at the frame's scale then area-averaged) gives the crop that
    `align_mouth` (OpenCV, what the mouth generator trained on) gives, at 1x and at 4x the size."""
    import cv2

    from talkinghead.face.mouth import align_mouth
    from talkinghead.inference.mouth import cut_mouths
    from talkinghead.media.images import to_tensor, to_uint8

    image, points = face
    for scale in (1, 4):
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        moved = (points + 0.5) * scale - 0.5
        reference, _, matrix = align_mouth(big, moved.astype(np.float64), 64)
        cut = to_uint8(cut_mouths(to_tensor(big[None]), matrix[None], 64))[0]
        assert np.abs(cut.astype(int) - reference).mean() < 4
        assert np.abs(cut.astype(int) - np.roll(reference, 3, axis=1)).mean() > 6  # a 3 px shift shows


def test_the_mouths_cut_and_paste_by_opencv_sample_as_grid_sample_does(face):
    """On a CPU in float32, `cut_mouths` and the paste (`_into_box`) go through OpenCV: the same
    samples as PyTorch's `grid_sample` path (float64 takes it) on the astronaut at 4x, her mouth
    near the frame's edge (reflected), and on noise, with border and zero padding."""
    import cv2
    import torch

    from talkinghead.face.mouth import mouth_transform
    from talkinghead.inference.mouth import _into_box, cut_mouths
    from talkinghead.media.images import to_tensor

    image, points = face
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    moved = (points + 0.5) * 4 - 0.5
    matrices = np.stack([mouth_transform(moved, 64), mouth_transform(moved - [moved[48:68, 0].max() - 4, 0], 64)])
    frames = to_tensor(np.stack([big, big]))
    noise = torch.rand_like(frames) * 2 - 1
    for tensor in (frames, noise):
        fast, exact = cut_mouths(tensor, matrices, 64), cut_mouths(tensor.double(), matrices, 64)
        assert fast.dtype == torch.float32 and (fast - exact).abs().max() < 1e-4
    crop = torch.rand(1, 3, 64, 64) * 2 - 1
    low, high = moved[48:68].min(0).astype(int) - 20, moved[48:68].max(0).astype(int) + 20
    for box in ((*low, *high), (0, 0, *high)):  # around the mouth; from the frame's corner
        for padding in ("border", "zeros"):
            fast, exact = (
                _into_box(crop, matrices[0], box, padding),
                _into_box(crop.double(), matrices[0], box, padding),
            )
            assert fast.shape == (1, 3, box[3] - box[1], box[2] - box[0]) and (fast - exact).abs().max() < 1e-4
    assert (_into_box(crop, matrices[0], box, "zeros")[..., 0, 0] == 0).all()  # the corner: outside the crop


def test_the_lips_drawing_fills_the_opening_and_the_discriminator_sees_only_the_middle(face):
    import torch

    from talkinghead.face.mouth import align_mouth, draw_lips, inner_mouth_mask
    from talkinghead.models.mouth import MouthSettings, mouth_discriminator

    image, points = face
    crop, moved, _ = align_mouth(image, points, 64)
    drawn = draw_lips(moved, 64)
    centre = np.round(moved[[62, 66]].mean(0)).astype(int)  # between the inner lips: open
    assert drawn[centre[1], centre[0], 2] == 255 and drawn[..., 2].sum() / 255 > 20
    assert drawn[:8, :, 2].max() == 0 and drawn[-8:, :, 2].max() == 0
    region = inner_mouth_mask(moved[None], 64)[0]
    assert region[centre[1], centre[0]] > 0.9 and region[:8].max() < 0.01
    torch.manual_seed(0)
    d = mouth_discriminator(MouthSettings(side=64, channels=8, embedding_dim=16), 2).eval()  # no power steps
    frames = torch.rand(2, 3, 64, 64) * 2 - 1
    lips, person = torch.zeros(2, 3, 64, 64), torch.tensor([0, 1])
    edited = frames.clone()
    edited[..., :16, :] = 1.0  # the chin and nose, outside its middle half
    middle = frames.clone()
    middle[..., 30:34, 30:34] = 1.0
    with torch.no_grad():
        score = d(frames, lips, person)[0]
        assert torch.equal(d(edited, lips, person)[0], score)
        assert not torch.equal(d(middle, lips, person)[0], score)


@pytest.mark.slow
def test_the_lip_locator_learns_resumes_and_its_loss_moves_the_generated_lips(tiny_data, tmp_path):
    """A few steps of the locator, a resume to a later end, its file loaded frozen; the lip loss
    gives the generated crop a gradient (and none to the locator); a mouth run with it logs the term."""
    import json

    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import MouthCrops
    from talkinghead.training.lips import held_out_error, load_lip_locator, train_lip_locator
    from talkinghead.training.losses import lip_points_loss
    from talkinghead.training.mouth import MouthConfig, train_mouth

    item = MouthCrops(FaceDataset(tiny_data), side=32)[(0, 0)]
    assert item["crop"].shape == (3, 32, 32) and item["points"].shape == (20, 2)
    run = tmp_path / "lips"
    stopped = train_lip_locator(tiny_data, run, side=32, channels=4, steps=2, batch_size=2, workers=0,
                                checkpoint_every=1, progress=False)  # fmt: skip
    assert stopped.name == "lip-locator.pt"
    path = train_lip_locator(tiny_data, run, validation=tiny_data, side=32, channels=4, steps=3, batch_size=2,
                             workers=0, checkpoint_every=1, progress=False)  # fmt: skip
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and "gap_correlation" in records[-1]
    locator = load_lip_locator(path)
    assert not any(p.requires_grad for p in locator.parameters())
    assert held_out_error(locator, FaceDataset(tiny_data), batches=1)["error_px"] > 0
    fake = torch.zeros(2, 3, 32, 32, requires_grad=True)
    lip_points_loss(locator, fake, torch.rand(2, 20, 2) * 32).backward()
    assert fake.grad.abs().sum() > 0
    # A generated crop of another side (a --side 64 run, this 32 px locator) is read at the
    # locator's side, in the same units: a smooth crop enlarged 2x scores as the crop itself.
    small, points = torch.rand(2, 3, 4, 4).mul(2).sub(1), torch.rand(2, 20, 2) * 32
    small = torch.nn.functional.interpolate(small, size=(32, 32), mode="bicubic", align_corners=False).clamp(-1, 1)
    big = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        scores = lip_points_loss(locator, small, points), lip_points_loss(locator, big, (points + 0.5) * 2 - 0.5)
    assert abs(scores[0] - scores[1]) < 0.02 * scores[0]
    loss = MouthConfig().loss.__class__(vgg=0.0, face=0.0, adversarial=0.1, l1=1.0, region=1.0, lips=1.0)
    config = MouthConfig(side=32, shots=2, channels=8, embedding_dim=16, batch_size=2, workers=0, steps=1,
                         log_every=1, sample_every=1, lip_locator=str(path), loss=loss)  # fmt: skip
    train_mouth(tiny_data, tmp_path / "mouth", config, progress=False)
    logged = json.loads((tmp_path / "mouth" / "metrics.jsonl").read_text().splitlines()[-1])
    assert any("lips" in key for key in logged)


def test_the_eye_opening_reads_open_eyes_and_lids_shut(face):
    """Issue 32's eye question is measured by the eyes' aspect ratio: the astronaut's open eyes
    (dlib's landmarks) read as open, the same with each upper lid on its lower one as shut."""
    from talkinghead.face.eyes import eye_opening

    _, points = face
    assert 0.2 < eye_opening(points) < 0.45
    shut = points.copy()
    shut[[37, 38, 43, 44]] = shut[[41, 40, 47, 46]]
    assert eye_opening(shut) < 1e-6
    assert eye_opening(np.stack([points, shut])).shape == (2,)


def _closed(points: np.ndarray) -> np.ndarray:
    """Landmarks with the inner lips met halfway (a closed mouth)."""
    shut = points.astype(np.float64).copy()
    middle = (shut[[61, 62, 63]] + shut[[67, 66, 65]]) / 2
    shut[[61, 62, 63]], shut[[67, 66, 65]] = middle, middle
    return shut


def test_parted_lips_move_each_lip_with_its_side_and_leave_the_gap_unseen(face):
    """face/parting.py on the astronaut's landmarks, the lips closed in the shot and the lower lip
    and jaw 10 px down in the driving frame: each lip and the chin come from where they were
    (thickness kept), the gap between the driving inner lips from nowhere; with the shot's own
    landmarks, every pixel of the mouth is seen."""
    from talkinghead.face.parting import lips_box, lips_mask, parted_map

    _, points = face
    shot = _closed(points)
    driving = shot.copy()
    lower = [*range(4, 13), *range(55, 60), 65, 66, 67]
    driving[lower, 1] += 10
    positions, valid = parted_map(shot, driving, np.arange(512), np.arange(512))

    def at(p):
        x, y = np.round(p).astype(int)
        return positions[y, x], valid[y, x]

    for index in (51, 57, 8):  # the upper lip, the lower lip, the chin
        moved, seen = at(driving[index])
        assert np.abs(moved - shot[index]).max() < 1.5 and seen > 0.9
    gap = (driving[62] + driving[66]) / 2
    assert at(gap)[1] < 0.1
    width = np.linalg.norm(driving[54] - driving[48])
    upper_lip = (driving[51] + driving[62]) / 2  # inside the upper lip: the upper lip's thickness kept
    assert abs(at(upper_lip)[0][1] - (shot[51, 1] + shot[62, 1]) / 2) < 0.05 * width
    same, everywhere = parted_map(shot, shot, np.arange(512), np.arange(512))
    x0, y0, x1, y1 = lips_box(shot, (512, 512))
    assert float(everywhere[y0:y1, x0:x1].min()) > 0.99
    grid = np.stack(np.meshgrid(np.arange(x0, x1), np.arange(y0, y1)), -1)
    assert np.abs(same[y0:y1, x0:x1] - grid).max() < 0.5  # no motion, nothing moves
    mask = lips_mask(driving, np.arange(x0, x1 + 20), np.arange(y0, y1 + 20))
    inside = np.round((driving[57] + driving[66]) / 2 - [x0, y0]).astype(int)  # in the lower lip
    assert mask[inside[1], inside[0]] > 0.99 and mask[0, 0] < 0.01


def test_the_mouth_trains_and_fine_tunes_on_parted_lips(face, tiny_data):
    """`MouthEpisodes(parting=True)` and `fit_mouth`'s pairs for a parting mouth: the warped mouth
    is `part_mouth`'s, hidden only where no shot shows it (inside the driving inner lips)."""
    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import MouthEpisodes, part_mouth, warp_mouth
    from talkinghead.face.mouth import align_mouth, inner_mouth_mask
    from talkinghead.inference.mouth import _pairs
    from talkinghead.models.mouth import MouthSettings

    image, points = face
    crop, moved, _ = align_mouth(image, _closed(points), 64)
    moved = moved.astype(np.float64)
    wide = moved.copy()
    wide[[*range(55, 60), 65, 66, 67], 1] += 6
    parted, unseen = part_mouth(crop, moved, wide)
    assert parted.shape == crop.shape and unseen.max() > 0.9
    inner = inner_mouth_mask(wide[None], 64, 0.05)[0]
    assert float((unseen * (inner < 0.01)).max()) < 0.05  # unseen only inside the driving inner lips
    plain = warp_mouth(crop, moved, wide)
    assert np.abs(parted[:8].astype(int) - plain[:8]).max() <= 1  # far from the lips: the one spline's
    pairs = _pairs(np.stack([crop, crop]), np.stack([moved, wide]), MouthSettings(side=64, parting=True))
    assert float(pairs.hidden[0].sum()) == pytest.approx(0.0, abs=1.0)  # the closed mouth from the open one
    assert float(pairs.hidden[1].sum()) > 20  # the open one from the closed one: its gap
    item = MouthEpisodes(FaceDataset(tiny_data), side=32, parting=True)[0, 0]
    assert item["warped"].shape == (3, 32, 32) and item["target_hidden"].shape == (1, 32, 32)
    assert torch.all((item["target_hidden"] >= 0) & (item["target_hidden"] <= 1))
    old = MouthSettings.of({"side": 64, "channels": 16, "embedding_dim": 64, "blend": "region"})
    assert not old.parting and MouthSettings.of({**vars(old), "parting": True}).parting
    from talkinghead.training.mouth import MouthConfig, settings_of

    assert settings_of(MouthConfig(parting=True)).parting  # `train-mouth --parting` files say so


def test_the_lips_are_parted_only_as_far_as_no_shot_has_the_driving_opening():
    from talkinghead.face.parting import FAR, NEAR, parting_share

    shots = np.array([0.0, 0.3])
    share = parting_share([0.0, 0.3 + NEAR, 0.15, 0.3 + FAR, 0.9, (NEAR + FAR) / 2], shots)
    assert np.allclose(share, [0.0, 0.0, 1.0, 1.0, 1.0, 0.5])


@pytest.mark.slow
def test_the_bundled_model_parts_the_lips_around_the_mouth_only(astronaut, tmp_path):
    """The bundled mouths part the lips (`MouthSettings.parting`, kept through an avatar file):
    driven wider than her smile, the astronaut's frames change only around the lips against the
    same mouth without parting; driven by her own landmarks, not at all."""
    import dataclasses

    from talkinghead.checkpoint import load_model
    from talkinghead.face.points import rescale_points
    from talkinghead.inference.avatar import Avatar
    from talkinghead.inference.fitting import fit_avatar

    model = load_model()
    assert model.mouth.settings.parting and model.closed_mouth.settings.parting
    avatar = fit_avatar([astronaut], model=model, size=256)
    own = avatar.shot_landmarks[:1].astype(np.float32)
    wide = own.copy()
    wide[0, [*range(5, 12), *range(55, 60), 65, 66, 67], 1] += 5  # the jaw and lower lip down (R px)
    parted = [next(avatar.generate(d)).astype(int) for d in (own, wide)]
    avatar.save(tmp_path / "a.avatar")
    loaded = Avatar.load(tmp_path / "a.avatar")
    assert loaded.mouth.settings.parting and np.array_equal(next(loaded.generate(wide)).astype(int), parted[1])
    avatar.mouth.settings = dataclasses.replace(avatar.mouth.settings, parting=False)
    plain = [next(avatar.generate(d)).astype(int) for d in (own, wide)]
    assert np.array_equal(parted[0], plain[0])
    changed = np.abs(parted[1] - plain[1]).max(-1) > 8
    assert changed.sum() > 50
    points = rescale_points(wide[0], avatar.size, avatar.output_size)
    width = np.linalg.norm(points[54] - points[48])
    ys, xs = np.nonzero(changed)
    assert xs.min() > points[48:60, 0].min() - width / 4 and xs.max() < points[48:60, 0].max() + width / 4
    assert ys.min() > points[48:60, 1].min() - width / 4 and ys.max() < points[48:60, 1].max() + width / 4


def test_the_opening_measures_ceiling_paints_only_the_unseen_inside_black(astronaut):
    """`scripts/mouth_opening.py --interior black`: driven wider than her smile, the astronaut's
    frame turns near-black inside the parted lips only, and the model's own mouth comes back after;
    `--interior teeth` darkens only the lower part of that."""
    import sys
    from pathlib import Path

    from talkinghead.checkpoint import load_model
    from talkinghead.face.points import rescale_points
    from talkinghead.inference.fitting import fit_avatar

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from mouth_opening import black_interior

    avatar = fit_avatar([astronaut], model=load_model(), size=256)
    wide = avatar.shot_landmarks[:1].astype(np.float32).copy()
    wide[0, [*range(5, 12), *range(55, 60), 65, 66, 67], 1] += 5  # the jaw and lower lip down (R px)
    made = next(avatar.generate(wide)).astype(int)
    with black_interior():
        black = next(avatar.generate(wide)).astype(int)
    assert np.array_equal(next(avatar.generate(wide)).astype(int), made)
    darker = (made - black).sum(-1) > 60
    assert darker.sum() > 20 and black[darker].sum(-1).min() < 120  # towards (38, 9, 1) where wholly unseen
    points = rescale_points(wide[0], avatar.size, avatar.output_size)
    ys, xs = np.nonzero(darker)
    inner = points[60:68]
    assert xs.min() >= inner[:, 0].min() - 3 and xs.max() <= inner[:, 0].max() + 3
    assert ys.min() >= inner[:, 1].min() - 3 and ys.max() <= inner[:, 1].max() + 3
    # `--interior teeth`: the top of the gap keeps the model's paint; only its lower part turns dark.
    wider = wide.copy()
    wider[0, [*range(5, 12), *range(55, 60), 65, 66, 67], 1] += 3
    made = next(avatar.generate(wider)).astype(int)
    with black_interior():
        darker = (made - next(avatar.generate(wider)).astype(int)).sum(-1) > 60
    with black_interior(0.4):
        lower = (made - next(avatar.generate(wider)).astype(int)).sum(-1) > 60
    assert 0 < lower.sum() < 0.7 * darker.sum() and not (lower & ~darker).any()
    assert np.nonzero(lower)[0].mean() > np.nonzero(darker)[0].mean() + 1  # the gap's lower part


def test_the_ceilings_donor_lips_are_compared_in_the_mouths_own_frame():
    """`scripts/mouth_ceiling.py --donors`: a lip shape does not change when the whole face is
    turned, scaled and moved; the corners land on (-1, 0) and (1, 0); the nearest shape is found,
    and the frames near the target are left out."""
    import sys
    from pathlib import Path

    from conftest import media, read_pts

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from mouth_ceiling import lip_shape, nearest_lips

    points = read_pts(media("einstein.pts")).astype(np.float64)
    angle = np.deg2rad(25)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (points @ turn.T) * 1.7 + [40.0, -12.0]
    shapes = lip_shape(np.stack([points, moved]))
    np.testing.assert_allclose(shapes[0], shapes[1], atol=1e-9)
    np.testing.assert_allclose(shapes[0, [0, 6]], [[-1, 0], [1, 0]], atol=1e-9)
    assert shapes[0, 18, 1] > shapes[0, 14, 1]  # the lower inner lip (66) below the upper (62)

    opened = points.copy()
    opened[[*range(55, 60), 65, 66, 67], 1] += 6  # the lower lip down
    wider = points.copy()
    wider[[*range(55, 60), 65, 66, 67], 1] += 9  # nearer the wanted one than the closed lips
    pool = lip_shape(np.stack([points, wider, opened, points]))
    wanted = lip_shape(opened[None])[0]
    assert nearest_lips(pool, wanted) == (2, 0.0)
    index, distance = nearest_lips(pool, wanted, skip=(2, 3))  # the exact one left out
    assert index == 1 and distance > 0
    with pytest.raises(ValueError, match="no lip shape left"):
        nearest_lips(pool, wanted, skip=(-3, 4))  # nothing outside the window
