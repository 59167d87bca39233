"""Data set format (shards) and readers."""

from talkinghead.data.dataset import FaceDataset
from talkinghead.data.shards import Clip, Shard, ShardError, ShardWriter

__all__ = ["Clip", "FaceDataset", "Shard", "ShardError", "ShardWriter"]
