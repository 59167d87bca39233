"""Is this the same person? FaceNet embeddings of two face crops, compared by cosine similarity."""

from __future__ import annotations

import numpy as np
import torch

# FaceNet (CASIA-WebFace) cosine similarity: frames of one person scored 0.71-0.77 and different
# people at most 0.49 on the PyPI test faces and shared clips (docs/animation.md).
SAME_PERSON = 0.6


@torch.inference_mode()
def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the faces in two `[S, S, 3] uint8` crops made like `prepare`'s."""
    from talkinghead.features import load_facenet
    from talkinghead.features.facenet import face_input
    from talkinghead.media.images import to_tensor

    net = load_facenet()
    embeddings = net(face_input(to_tensor(np.stack([a, b]))))
    return float(embeddings[0] @ embeddings[1])


def same_person(a: np.ndarray, b: np.ndarray) -> bool:
    return similarity(a, b) >= SAME_PERSON
