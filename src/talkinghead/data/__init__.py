"""Data set format (shards) and readers."""

from .dataset import FaceDataset
from .shards import Clip, Shard, ShardError, ShardWriter

__all__ = ["Clip", "FaceDataset", "Shard", "ShardError", "ShardWriter"]
