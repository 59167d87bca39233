"""Each metric on known cases: identical images, growing noise or shift, a set against itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import media, read_pts

from talkinghead.evaluation.metrics import CSIM, FID, LPIPS, landmark_nme, psnr, ssim
from talkinghead.media.images import to_tensor, to_uint8
from talkinghead.media.video import VideoReader, load_image


@pytest.fixture(scope="module")
def face(astronaut) -> torch.Tensor:
    return to_tensor(astronaut[0:256, 100:356])[None]  # [1, 3, 256, 256], her face


def _noisy(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    return (image + sigma * noise).clamp(-1, 1)


def test_pixel_metrics(face):
    assert ssim(face, face).item() == pytest.approx(1.0)
    assert torch.isinf(psnr(face, face)).all() or psnr(face, face).item() > 100
    levels = [_noisy(face, s) for s in (0.05, 0.1, 0.3)]
    s = [ssim(face, x).item() for x in levels]
    p = [psnr(face, x).item() for x in levels]
    assert s[0] > s[1] > s[2] and p[0] > p[1] > p[2]
    assert psnr(face, levels[1]).item() == pytest.approx(20 * np.log10(2 / 0.1), abs=1.0)  # sigma 0.1 of range 2


def test_lpips_zero_for_identical_and_monotonic(face):
    lpips = LPIPS()
    assert lpips(face, face).item() == pytest.approx(0.0, abs=1e-7)
    noise = [lpips(face, _noisy(face, s)).item() for s in (0.05, 0.1, 0.3)]
    assert noise[0] < noise[1] < noise[2]
    shifts = [lpips(face, torch.roll(face, k, dims=3)).item() for k in (2, 8, 32)]
    assert shifts[0] < shifts[1] < shifts[2]


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_near_zero(astronaut):
    rng = np.random.default_rng(0)
    crops = [astronaut[y : y + 200, x : x + 200] for y, x in rng.integers(0, 300, (24, 2))]
    images = to_tensor(np.stack(crops))
    fid = FID()
    fid.update(images, real=True)
    fid.update(images, real=False)
    same = fid.compute()
    other = FID()
    other.net = fid.net
    other.update(images, real=True)
    other.update(_noisy(images, 0.3), real=False)
    different = other.compute()
    assert abs(same) < 0.01 * different and different > 10


def test_csim_same_face_and_other_people(carphone, astronaut):
    csim = CSIM()
    with VideoReader(carphone) as reader:
        frames = [rgb for n, _, rgb in reader if n in (10, 100)]
    assert csim(frames[0], frames[0]) == pytest.approx(1.0, abs=1e-6)
    same = csim(frames[0], frames[1])
    other = csim(frames[0], astronaut)
    # dlib's embeddings put everyone at high cosine similarity (measured: 0.99 for his two frames,
    # 0.82 for him and the astronaut), unlike the paper's ArcFace-based CSIM.
    assert same > 0.95 and other < 0.9
    assert np.isnan(csim(frames[0], np.full((64, 64, 3), 128, np.uint8)))  # no face: NaN


def test_landmark_error_grows_with_displacement():
    image = load_image(media("takeo.ppm"))
    truth = read_pts(media("takeo.pts"))
    errors = [landmark_nme(image[None], (truth + shift)[None])[0] for shift in (0.0, 5.0, 15.0)]
    assert errors[0] < 0.08 and errors[0] < errors[1] < errors[2]
    assert np.isnan(landmark_nme(np.full((1, 64, 64, 3), 90, np.uint8), truth[None])[0])
    # Small frames (a 64 px model's output) are enlarged before detection.
    small = to_uint8(torch.nn.functional.interpolate(to_tensor(image)[None], size=(75, 50), mode="area"))[0]
    assert landmark_nme(small[None], (truth / 3)[None])[0] < 0.2


def test_a_face_the_hog_detector_misses_is_still_found_and_blank_frames_are_not():
    """Blurred, the face defeats the HOG detector (the tracker alone finds nothing); dlib's CNN
    detector, the second opinion, finds it and the landmarks on its box are the annotated ones
    (measured 0.094). Blank, saturated and noise frames stay face-less."""
    import cv2

    from talkinghead.evaluation.metrics import _enlarged
    from talkinghead.face.landmarks import DlibLandmarker
    from talkinghead.face.tracking import FaceTracker

    image = cv2.GaussianBlur(load_image(media("takeo.ppm")), (0, 0), 6)
    truth = read_pts(media("takeo.pts"))
    tracker = FaceTracker(DlibLandmarker(), min_face=16)
    assert tracker(_enlarged(image)[0]) is None
    assert landmark_nme(image[None], truth[None])[0] < 0.15
    rng = np.random.default_rng(0)
    blanks = [np.full((64, 64, 3), 255, np.uint8), np.tile(np.array([230, 20, 20], np.uint8), (64, 64, 1))]
    blanks.append(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8))
    assert np.isnan(landmark_nme(np.stack(blanks), np.repeat(truth[None] / 3, 3, 0))).all()


def test_low_rank_frechet_distance_matches_the_matrix_square_root():
    from scipy import linalg

    from talkinghead.evaluation.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 64)), rng.normal(size=(25, 64)) + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = (
        ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.trace(linalg.sqrtm(sa @ sb).real)
    )
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
