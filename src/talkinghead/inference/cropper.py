"""The face cropper: images or frames of videos -> square face crops at a model's resolution,
with each crop's box in its original image (the crop-to-frame transform, for pasting back).

It owns its landmark model and tracker; `prepare` keeps its own per-worker ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from talkinghead.errors import TalkingheadError
from talkinghead.face.crop import CropConfig, clip_boxes, crop_image, to_crop
from talkinghead.media.video import MediaError, is_video_path, load_image


class FitError(TalkingheadError):
    """Inputs that give no usable face; one line."""


@dataclass
class Shots:
    """Face crops of one person and where the first came from.

    - `crops`: `[T, S, S, 3] uint8`; `landmarks`: `[T, 68, 2]` float32 crop pixels (points.py)
    - `portrait`: the first input's full image `[H, W, 3] uint8`; `box`: the first crop's box
      (x0, y0, side) in it (crop.py gives the transform)
    - `detail`: the same crops at the output size D >= S, `[T, D, D, 3] uint8` (None when not asked)
    """

    crops: np.ndarray
    landmarks: np.ndarray
    portrait: np.ndarray
    box: np.ndarray
    notes: list[str] = field(default_factory=list)
    detail: np.ndarray | None = None


class FaceCropper:
    """`cropper(inputs, shots)`: the main face of each image, or `shots` frames spread over videos.

    `size`: the crops' side (the model's resolution). `detail`: also cut each crop at this output
    size, or at the size the inputs hold (the crop box's side) if that is less, never below
    `size`: the renderer moves these pixels (render.py)."""

    def __init__(self, size: int, *, detail: int | None = None, landmarker: str = "dlib"):
        from talkinghead.face.landmarks import make_landmarker
        from talkinghead.face.tracking import FaceTracker

        self.size, self.detail, self.landmarker = size, detail, landmarker
        self.tracker = FaceTracker(make_landmarker(landmarker))

    def __call__(self, inputs: Sequence[str | Path | np.ndarray], shots: int = 8) -> Shots:
        if not inputs:
            raise FitError("no input images")
        crops, landmarks, notes = [], [], []
        origins = []  # (image or video path, frame number, box) of each crop, for its detail
        portrait, box = None, None
        videos = [p for p in inputs if not isinstance(p, np.ndarray) and is_video_path(Path(p))]
        per_video = max(1, -(-shots // max(len(videos), 1)))
        for item in inputs:
            if not isinstance(item, np.ndarray) and is_video_path(Path(item)):
                clip = self._video(item, per_video)
                crops.extend(clip.frames)
                landmarks.extend(clip.landmarks)
                origins.extend((item, int(n), b) for n, b in zip(clip.frame_numbers, clip.boxes))
                notes.extend(f"{item}: {n}" for n in clip.meta["notes"])
                if portrait is None:
                    portrait, box = _video_frame(item, int(clip.frame_numbers[0])), clip.boxes[0]
                continue
            image, name = self._image(item)
            crop, points, item_box, note = self.crop_image(image, name)
            crops.append(crop)
            landmarks.append(points)
            origins.append((image, 0, item_box))
            notes.extend([note] if note else [])
            if portrait is None:
                portrait, box = image, item_box
        keep = max(shots, len(inputs))
        detail = self._detail(origins[:keep]) if self.detail else None
        return Shots(np.stack(crops[:keep]), np.stack(landmarks[:keep]), portrait, box, notes, detail)

    def _detail(self, origins: list) -> np.ndarray:
        """`[T, D, D, 3]`: each crop cut again at D, the detail size (mirrored where its box leaves
        the frame: the renderer shows these pixels)."""
        # At the box's own side when it is no larger than asked: the crop is then a copy of the
        # portrait's pixels, and so is the paste back (every resampling halves fine detail).
        side = min(int(box[2]) for _, _, box in origins)
        size = max(self.size, min(self.detail, side))
        cut = [None] * len(origins)
        for i, (source, _, box) in enumerate(origins):
            if isinstance(source, np.ndarray):
                cut[i] = crop_image(source, box, size, border="reflect")
        for path in {str(s) for s, _, _ in origins if not isinstance(s, np.ndarray)}:
            wanted = {n: i for i, (s, n, _) in enumerate(origins) if str(s) == path and not isinstance(s, np.ndarray)}
            for number, rgb in _video_frames(path, set(wanted)):
                cut[wanted[number]] = crop_image(rgb, origins[wanted[number]][2], size, border="reflect")
        return np.stack(cut)

    def crop_image(self, image: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(crop `[S, S, 3]`, landmarks `[68, 2]` in crop pixels, box, note) of an image's main face."""
        tracker = self.tracker
        tracker.reset()
        points = tracker(image)
        if points is None:
            small = tracker.stats.largest_small_face
            raise FitError(f"{name}: " + (f"face too small ({small:.0f} px)" if small else "no face found"))
        note = ""
        if tracker.stats.max_faces > 1:
            note = f"{name}: {tracker.stats.max_faces} faces; used the largest, most central one"
        boxes, _ = clip_boxes(points[None], np.zeros(1, np.float32), CropConfig(size=self.size))
        return crop_image(image, boxes[0], self.size), to_crop(points, boxes[0], self.size), boxes[0], note

    @staticmethod
    def _image(item) -> tuple[np.ndarray, str]:
        if isinstance(item, np.ndarray):
            return item, "image"
        try:
            return load_image(item), str(item)
        except MediaError as error:
            raise FitError(f"{item}: {error}") from None

    def _video(self, path, frames: int):
        from talkinghead.data.prepare import PrepareOptions, Source, extract_faces

        options = PrepareOptions(crop_size=self.size, max_frames=frames, landmarker=self.landmarker)
        try:
            clip, reason = extract_faces(Source(str(path), "video", ""), options, tracker=self.tracker)
        except MediaError as error:
            raise FitError(f"{path}: {error}") from None
        if clip is None:
            raise FitError(f"{path}: {reason}")
        return clip


def _video_frames(path, numbers: set[int]):
    """(number, `[H, W, 3]` frame) for the frames `numbers` of a video, in order."""
    from talkinghead.media.video import VideoReader

    with VideoReader(path) as reader:
        for n, _, rgb in reader:
            if n in numbers:
                yield n, rgb
            if n >= max(numbers):
                return


def _video_frame(path, number: int) -> np.ndarray:
    for _, rgb in _video_frames(path, {number}):
        return rgb
    raise FitError(f"{path}: frame {number} not found")
