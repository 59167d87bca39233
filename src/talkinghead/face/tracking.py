"""Following one face through a video: detect when needed, landmarks on every frame.

The face detector is the slow part (tens of milliseconds a frame) and the shape predictor the
fast one (under a millisecond), so the tracker runs the detector only to start a track, to
re-find a lost one, and every `verify_every` frames in a small window around the track to check
that a face is still there and to re-anchor the box. In between, the box for frame t comes from
the landmarks of frame t-1.

The main face is the largest, most central and most confidently detected one; once tracked,
other faces are never looked at until the track is lost, so a false positive elsewhere in the
frame cannot steal it. A lost track is re-found near where it was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from talkinghead.face.landmarks import Detection, Landmarker

_PATCH = 24  # side of the patch compared between frames


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """`[68, 2]` landmarks -> `[4]` extent box x0, y0, x1, y1."""
    return np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)]).astype(np.float32)


def landmark_size(landmarks: np.ndarray) -> float:
    """Side of the landmarks' extent: the larger of its width and height, in pixels."""
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    return float(extent.max())


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@dataclass
class TrackStats:
    """What the tracker saw, for the per-clip report."""

    frames: int = 0
    tracked: int = 0
    detector_runs: int = 0
    max_faces: int = 0  # most faces seen at once: the chosen one + other confident detections
    small_faces: int = 0  # frames whose only faces were below min_face
    largest_small_face: float = 0.0
    lost: int = 0  # times an established track was lost


@dataclass
class FaceTracker:
    """Stateful per-clip tracker; call `reset()` between clips.

    Args:
        landmarker: the detector + landmark model.
        min_face: faces whose landmark extent is smaller than this many pixels are ignored.
        verify_every: frames between detector checks of an established track.
        max_misses: consecutive failed checks after which the track is dropped.
        detect_side: frames are shrunk to this longer side (pixels) for full-frame detection.
        lost_detect_every: while no face is tracked, run the detector on every n-th frame only.
    """

    landmarker: Landmarker
    min_face: float = 48.0
    verify_every: int = 10
    max_misses: int = 2
    detect_side: int = 640
    lost_detect_every: int = 3
    # Normalised correlation with the face at the last detector check below which a frame is
    # checked at once (a cut, an occlusion, a blank frame).
    min_similarity: float = 0.5
    # Detections below this confidence do not count as "another face" in the report.
    confident_score: float = 0.5
    stats: TrackStats = field(default_factory=TrackStats)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stats = TrackStats()
        self._landmarks: np.ndarray | None = None
        self._reference: np.ndarray | None = None  # face patch at the last detection
        self._last_seen: np.ndarray | None = None  # centre of the last track, for re-finding it
        self._since_check = 0
        self._misses = 0
        self._since_lost = 0
        # Detector box relative to the landmark extent: (dx, dy) of centres / size, size ratio.
        self._relation = np.array([0.0, 0.0, 1.0], np.float32)

    # -- public -----------------------------------------------------------------------------

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks `[68, 2] float32` (frame pixels) of the main face in `[H, W, 3]` RGB, or None."""
        self.stats.frames += 1
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        if self._landmarks is None:
            landmarks = self._acquire(gray)
        else:
            landmarks = self._follow(gray)
        if landmarks is not None:
            self.stats.tracked += 1
        return landmarks

    # -- states -----------------------------------------------------------------------------

    def _acquire(self, gray: np.ndarray) -> np.ndarray | None:
        self._since_lost += 1
        if self.stats.frames > 1 and (self._since_lost - 1) % self.lost_detect_every:
            return None
        detection = self._choose(self._detect_full(gray), gray.shape)
        if detection is None:
            return None
        return self._start(gray, detection)

    def _follow(self, gray: np.ndarray) -> np.ndarray | None:
        previous = self._landmarks
        landmarks = self.landmarker.landmarks(gray, self._predicted_box(previous))
        # The shape predictor always returns a face shape, even on a wall: a face whose
        # landmarks jump, or whose pixels no longer look like the last confirmed face, is checked
        # with the detector at once instead of at the next periodic check.
        suspicious = not self._plausible(previous, landmarks, gray.shape) or (
            self._similarity(gray, landmarks) < self.min_similarity
        )
        self._since_check += 1
        if not suspicious and self._since_check < self.verify_every:
            self._landmarks = landmarks
            return landmarks
        self._since_check = 0
        detection = self._detect_near(gray, self._predicted_box(previous))
        if detection is not None:
            self._misses = 0
            return self._start(gray, detection)
        self._misses += 1
        # A periodic check may miss a face that is turned away (HOG is frontal-only), so it takes
        # `max_misses` of them to drop a track that still looks right.
        if suspicious or self._misses >= self.max_misses:
            self._drop()
            return None
        self._landmarks = landmarks
        return landmarks

    def _start(self, gray: np.ndarray, detection: Detection) -> np.ndarray | None:
        landmarks = self.landmarker.landmarks(gray, detection.box)
        size = landmark_size(landmarks)
        if size < self.min_face:
            self.stats.small_faces += 1
            self.stats.largest_small_face = max(self.stats.largest_small_face, size)
            self._drop()
            return None
        centre = (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2
        self._relation = np.array([*((detection.center - centre) / size), detection.size / size], np.float32)
        self._landmarks = landmarks
        self._last_seen = centre
        self._reference = self._patch(gray, landmarks)
        self._since_check = 0
        self._since_lost = 0
        return landmarks

    def _drop(self) -> None:
        if self._landmarks is not None:
            self.stats.lost += 1
            self._last_seen = (self._landmarks.min(axis=0) + self._landmarks.max(axis=0)) / 2
        self._landmarks = None
        self._misses = 0
        self._since_lost = 0

    # -- helpers ----------------------------------------------------------------------------

    def _predicted_box(self, landmarks: np.ndarray) -> np.ndarray:
        """The detector-style box for the face whose previous landmarks are given."""
        size = landmark_size(landmarks)
        centre = (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2
        centre = centre + self._relation[:2] * size
        half = self._relation[2] * size / 2
        return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], np.float32)

    def _patch(self, gray: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """The face's pixels as a small zero-mean, unit-norm patch; None if flat (no face)."""
        x0, y0, x1, y1 = landmark_box(landmarks)
        height, width = gray.shape[:2]
        x0, y0 = int(max(0, x0)), int(max(0, y0))
        x1, y1 = int(min(width, x1 + 1)), int(min(height, y1 + 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        patch = cv2.resize(gray[y0:y1, x0:x1], (_PATCH, _PATCH), interpolation=cv2.INTER_AREA)
        patch = patch.astype(np.float32) - patch.mean()
        norm = float(np.linalg.norm(patch))
        if norm < 2.0 * _PATCH:  # std below ~2 grey levels: a flat area
            return None
        return patch / norm

    def _similarity(self, gray: np.ndarray, landmarks: np.ndarray) -> float:
        patch = self._patch(gray, landmarks)
        if patch is None or self._reference is None:
            return -1.0
        return float((patch * self._reference).sum())

    def _plausible(self, previous: np.ndarray, landmarks: np.ndarray, shape) -> bool:
        size0, size1 = landmark_size(previous), landmark_size(landmarks)
        if not 0.7 < size1 / max(size0, 1e-6) < 1.4 or size1 < self.min_face * 0.8:
            return False
        centre0 = (previous.min(axis=0) + previous.max(axis=0)) / 2
        centre1 = (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2
        if np.linalg.norm(centre1 - centre0) > 0.5 * size0:
            return False
        height, width = shape[:2]
        # A face more than half outside the frame is no longer usable.
        inside = (
            (landmarks[:, 0] >= 0) & (landmarks[:, 0] < width) & (landmarks[:, 1] >= 0) & (landmarks[:, 1] < height)
        )
        return bool(inside.mean() > 0.5)

    def _run_detector(self, gray: np.ndarray, scale: float, upsample: int) -> list[Detection]:
        self.stats.detector_runs += 1
        if scale != 1.0:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return [Detection(d.box / scale, d.score) for d in self.landmarker.detect(gray, upsample)]

    def _detect_full(self, gray: np.ndarray) -> list[Detection]:
        """Faces in the whole frame, merged over a few scales.

        The HOG detector's recall depends on scale (a tilted face found at one size is missed at
        the next), so the first search of a clip uses a small pyramid: the frame shrunk to
        `detect_side` with and without upsampling, plus twice that size (at most the full
        resolution). Later searches (a lost track) use the cheap shrunken passes only.
        """
        side = max(gray.shape[:2])
        scale = min(1.0, self.detect_side / side)
        passes = [(scale, 0)]
        if self.min_face * scale < self.landmarker.min_detectable_face:
            passes.append((scale, 1))  # faces smaller than the detector window
        if self.stats.detector_runs == 0 and scale < 1.0:
            larger = min(1.0, 2 * self.detect_side / side)
            passes.append((larger, 0))
            if larger == 1.0:
                passes.append((1.0, 1))
        detections: list[Detection] = []
        for pass_scale, upsample in passes:
            detections = _merge(detections, self._run_detector(gray, pass_scale, upsample))
        return detections

    def _detect_near(self, gray: np.ndarray, box: np.ndarray) -> Detection | None:
        """Detector run on a window of 3x the box around it, shrunk so the face is ~100 px."""
        side = float(box[2] - box[0])
        height, width = gray.shape[:2]
        x0, y0 = int(max(0, box[0] - side)), int(max(0, box[1] - side))
        x1, y1 = int(min(width, box[2] + side)), int(min(height, box[3] + side))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = min(1.0, 100.0 / max(side, 1.0))
        upsample = 1 if side * scale < self.landmarker.min_detectable_face else 0
        window = np.ascontiguousarray(gray[y0:y1, x0:x1])
        offset = np.array([x0, y0, x0, y0], np.float32)
        best, best_iou = None, 0.3
        for detection in self._run_detector(window, scale, upsample):
            detection = Detection(detection.box + offset, detection.score)
            iou = box_iou(detection.box, box)
            if iou > best_iou:
                best, best_iou = detection, iou
        return best

    def _choose(self, detections: list[Detection], shape) -> Detection | None:
        """The main face: large and central (or near where the track was lost).

        Detector confidence only tips the balance: dlib's HOG scores do not separate real
        faces from false positives well (a tilted real face can score 0.1, a fabric pattern 0.1,
        a small face in the background 1.0), while size and position do.
        """
        if not detections:
            return None
        height, width = shape[:2]
        anchor = self._last_seen if self._last_seen is not None else np.array([width / 2, height / 2])
        diagonal = float(np.hypot(width, height))

        def score(d: Detection) -> float:
            distance = float(np.linalg.norm(d.center - anchor)) / diagonal  # 0 .. ~1
            confidence = float(np.clip(0.75 + 0.25 * d.score, 0.5, 1.25))
            return d.size * confidence * (1.0 - distance)

        best = max(detections, key=score)
        others = [d for d in detections if d is not best and d.score >= self.confident_score]
        self.stats.max_faces = max(self.stats.max_faces, 1 + len(others))
        return best


def _merge(kept: list[Detection], new: list[Detection], iou: float = 0.3) -> list[Detection]:
    """Union of two detection lists; overlapping boxes keep the higher score."""
    out = list(kept)
    for detection in new:
        overlapping = [i for i, k in enumerate(out) if box_iou(k.box, detection.box) > iou]
        if not overlapping:
            out.append(detection)
        elif all(detection.score > out[i].score for i in overlapping):
            out = [k for i, k in enumerate(out) if i not in overlapping] + [detection]
    return out
