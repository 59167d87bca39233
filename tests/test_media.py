"""Reading real images and videos with their quirks: orientation, bit depth, colour models, VFR."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import set_mp4_rotation, write_video
from PIL import Image

from talkinghead.media.video import MediaError, VideoReader, load_image


def _close(a: np.ndarray, b: np.ndarray, tolerance: float = 3.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(np.float32) - b).mean()) < tolerance


def test_exif_orientation_is_applied(tmp_path, astronaut):
    upright = astronaut[:384]  # not square, so a missed rotation changes the shape
    # EXIF orientation 6: the stored pixels must be rotated 90 degrees clockwise for display.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=98)
    assert _close(load_image(tmp_path / "phone.jpg"), upright)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_image_modes_become_rgb(tmp_path, astronaut, mode):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    if mode == "I;16":
        image, expected = Image.fromarray(gray.astype(np.uint16) * 257), np.repeat(gray[..., None], 3, 2)
        path = tmp_path / "deep.png"
    elif mode == "RGBA":
        rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
        rgba[:64, :64, 3] = 0  # a transparent corner shows white
        image, expected = Image.fromarray(rgba), astronaut.copy()
        expected[:64, :64] = 255
        path = tmp_path / "alpha.png"
    elif mode == "CMYK":
        image, expected = Image.fromarray(astronaut).convert("CMYK"), astronaut
        path = tmp_path / "print.tif"
    else:
        image = Image.fromarray(astronaut).convert(mode)
        expected = np.asarray(image.convert("RGB"))
        path = tmp_path / f"{mode}.png"
    image.save(path)
    loaded = load_image(path)
    assert loaded.dtype == np.uint8 and loaded.shape == astronaut.shape
    assert _close(loaded, expected, tolerance=4.0)


def test_bad_images_raise_one_line_reasons(tmp_path, astronaut):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(astronaut).save(tmp_path / "whole.jpg")
    truncated.write_bytes((tmp_path / "whole.jpg").read_bytes()[:5000])
    for path, words in [
        (empty, "empty"),
        (text, "not an image"),
        (truncated, "unreadable"),
        (tmp_path / "nope.png", "not found"),
    ]:
        with pytest.raises(MediaError) as error:
            load_image(path)
        assert words in str(error.value) and "\n" not in str(error.value)


def test_video_rotation_metadata_is_applied(tmp_path, astronaut):
    upright = astronaut[:384]
    path = write_video(tmp_path / "portrait.mp4", [np.ascontiguousarray(np.rot90(upright, 1))] * 3)
    set_mp4_rotation(path, 90)  # checked against ffmpeg's own autorotate when written
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height) == (512, 384)
        frames = [rgb for _, _, rgb in reader]
    assert len(frames) == 3 and _close(frames[0], upright, tolerance=6.0)


def test_variable_frame_rate_keeps_real_times(tmp_path, astronaut):
    times = [0.0, 0.04, 0.08, 0.3, 0.34, 1.0]
    path = write_video(tmp_path / "vfr.mp4", [astronaut] * len(times), times=times)
    with VideoReader(path) as reader:
        got = [t for _, t, _ in reader]
    assert np.allclose(got, times, atol=0.002)


def test_truncated_video_keeps_decodable_frames(tmp_path, carphone):
    # Index at the front (as streaming encoders write it): a cut file still decodes up to the cut.
    with VideoReader(carphone) as reader:
        frames = [rgb for _, _, rgb in reader]
    whole = write_video(tmp_path / "whole.mp4", frames, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with VideoReader(whole) as reader:
        assert sum(1 for _ in reader) == len(frames) and not reader.truncated
    with VideoReader(cut) as reader:
        decoded = sum(1 for _ in reader)
        assert reader.truncated  # what prepare reports as a note
    assert 0 < decoded < len(frames)


def test_video_cut_before_its_index_is_reported(tmp_path, carphone):
    # carphone.mp4 keeps its index (moov) at the end: half the file has no usable index.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(carphone.read_bytes()[: carphone.stat().st_size // 2])
    with pytest.raises(MediaError, match="unreadable or truncated video"):
        VideoReader(cut)


def test_non_video_raises(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x01 definitely not a video" * 100)
    with pytest.raises(MediaError, match="unreadable or truncated video"):
        VideoReader(fake)
    other = tmp_path / "fake.dat"
    other.write_bytes(fake.read_bytes())
    with pytest.raises(MediaError, match="not a video or image"):
        VideoReader(other)


def test_the_writer_keeps_fine_texture_below_a_megapixel(tmp_path, astronaut):
    """A textured picture (hair, helmet, suit) panned by sub-pixel steps, written as the writer
    chooses (x264's "grain" tuning below a megapixel) and without a tuning: the chosen reproduces
    the fine detail more faithfully (the error of the Laplacian, decoded against written) and the
    picture as a whole (mean error)."""
    import cv2

    from talkinghead.media.video import VideoWriter

    texture = astronaut[:256, 128:384].astype(np.float32)
    frames = [
        cv2.warpAffine(
            texture, np.float32([[1, 0, 0.3 * i], [0, 1, 0.2 * i]]), (256, 256), borderMode=cv2.BORDER_REFLECT
        )
        .round()
        .astype(np.uint8)
        for i in range(12)
    ]

    def laplacian(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F)

    detail_error, error = {}, {}
    for name, tune in (("chosen", None), ("untuned", "")):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, 25, 256, 256, tune=tune) as writer:
            for frame in frames:
                writer.write(frame)
        with VideoReader(path) as reader:
            made = [rgb for _, _, rgb in reader]
        detail_error[name] = np.mean([np.abs(laplacian(m) - laplacian(f)).mean() for m, f in zip(made, frames)])
        error[name] = np.mean([np.abs(m.astype(np.float32) - f).mean() for m, f in zip(made, frames)])
    assert detail_error["chosen"] < 0.97 * detail_error["untuned"], detail_error
    assert error["chosen"] < error["untuned"], error
