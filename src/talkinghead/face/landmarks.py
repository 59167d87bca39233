"""Face detection and 68-point landmarks behind a small interface.

The default `DlibLandmarker` uses dlib's HOG frontal-face detector and its 68-point shape
predictor (iBUG 300-W markup), both installable offline from PyPI (`dlib-bin`,
`face_recognition_models`). Another model (for example face-alignment's 2D-FAN, which the paper
used) plugs in by implementing `Landmarker` and registering it in `LANDMARKERS`.

Coordinates are image pixels, x right and y down, pixel centres at integer positions (the
convention of dlib and OpenCV).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # [4] float32: x0, y0, x1, y1 in image pixels
    score: float  # detector confidence; higher is surer, comparable only within one detector

    @property
    def size(self) -> float:
        return float(np.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1])))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32)


class Landmarker(Protocol):
    """What the tracker needs from a face model."""

    name: str
    # The smallest face side (pixels) that `detect` finds at upsample 0.
    min_detectable_face: int

    def detect(self, gray: np.ndarray, upsample: int = 0) -> list[Detection]:
        """Faces in a `[H, W] uint8` image."""

    def landmarks(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """`[68, 2] float32` landmarks of the face in `box` (x0, y0, x1, y1)."""

    # Optional: `detect_cnn(rgb) -> list[Detection]`, a slower second detector that the metrics
    # ask where `detect` finds nothing (DlibLandmarker has one; a landmarker without it gets none).


def face_models_dir() -> Path:
    """Folder of the dlib model files shipped by the `face_recognition_models` wheel.

    Located with `find_spec`, because importing that package needs `pkg_resources`, which recent
    setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError("the dlib face models are missing: pip install face_recognition_models")
    return Path(spec.origin).parent / "models"


_loaded = threading.local()


class DlibLandmarker:
    """dlib HOG face detector + 68-point shape predictor (Kazemi & Sullivan 2014)."""

    name = "dlib"
    # The HOG detector scans an 80x80 window; with one upsampling it finds ~40 px faces.
    min_detectable_face = 80

    def __init__(self) -> None:
        import dlib

        # Loading the two models takes about a second; they are kept per thread (dlib's detector
        # keeps scratch buffers, so threads do not share one).
        models = getattr(_loaded, "dlib", None)
        if models is None:
            predictor_path = os.fspath(face_models_dir() / "shape_predictor_68_face_landmarks.dat")
            models = _loaded.dlib = (dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path))
        self._detector, self._predictor = models
        self._rectangle = dlib.rectangle

    def detect(self, gray: np.ndarray, upsample: int = 0) -> list[Detection]:
        rects, scores, _ = self._detector.run(gray, upsample, 0.0)
        return [Detection(_box(r), float(s)) for r, s in zip(rects, scores)]

    def detect_cnn(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in a `[H, W, 3] uint8` image by dlib's CNN (MMOD) detector, from the same wheel:
        it finds turned, squinting and low-contrast faces the HOG detector misses, and nothing on
        blank, saturated or noise frames; about 0.35 s for a 256 px image on two cores, so it is
        a second opinion (evaluation/metrics.py), not the tracker's detector."""
        import dlib

        cnn = getattr(_loaded, "dlib_cnn", None)
        if cnn is None:
            path = os.fspath(face_models_dir() / "mmod_human_face_detector.dat")
            cnn = _loaded.dlib_cnn = dlib.cnn_face_detection_model_v1(path)
        return [Detection(_box(d.rect), float(d.confidence)) for d in cnn(np.ascontiguousarray(rgb), 0)]

    def landmarks(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        shape = self._predictor(gray, self._rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _box(rect) -> np.ndarray:
    """A dlib rectangle (inclusive corners) as `[4] float32` x0, y0, x1, y1 (exclusive)."""
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float32)


LANDMARKERS: dict[str, Callable[[], Landmarker]] = {"dlib": DlibLandmarker}


def make_landmarker(name: str = "dlib") -> Landmarker:
    try:
        factory = LANDMARKERS[name]
    except KeyError:
        raise ValueError(f"unknown landmark model {name!r}; choose from {sorted(LANDMARKERS)}") from None
    return factory()
