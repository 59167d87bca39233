"""A prepared data set: every shard under a folder, seen as one list of clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from talkinghead.data.shards import SUFFIX, Shard, ShardError


def shard_paths(root: str | Path) -> list[Path]:
    """Shard files of a data set folder (its `shards/` subfolder, or the folder itself)."""
    root = Path(root)
    if root.is_file() and root.suffix == SUFFIX:
        return [root]
    folder = root / "shards" if (root / "shards").is_dir() else root
    return sorted(folder.glob(f"*{SUFFIX}"))


class FaceDataset:
    """Random access to the clips of a prepared data set.

    Clips are numbered 0..len-1 in shard order; `video_index` of a clip is that number, the index
    of its column W_i in the discriminator. Identities are numbered in sorted name order.
    Instances pickle cheaply (shards are re-opened in the receiving process), so they can be
    handed to DataLoader workers.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        paths = shard_paths(self.root)
        if not paths:
            raise ShardError(f"{self.root}: no *{SUFFIX} shards found (run `talkinghead prepare` first)")
        self._paths = paths
        self._open()
        if not len(self):
            raise ShardError(f"{self.root}: an empty data set (prepare found no usable clip; see its reports/)")

    def _open(self) -> None:
        self.shards = [Shard(p) for p in self._paths]
        self.index = np.array(
            [(s, c) for s, shard in enumerate(self.shards) for c in range(len(shard))], dtype=np.int64
        ).reshape(-1, 2)
        self.identities = sorted({clip["identity"] for shard in self.shards for clip in shard.clips})
        identity_ids = {name: i for i, name in enumerate(self.identities)}
        self.clip_identity = np.array([identity_ids[self.meta(i)["identity"]] for i in range(len(self))], np.int64)

    def __getstate__(self) -> dict:
        return {"root": self.root, "_paths": self._paths}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self.index)

    def _locate(self, clip: int) -> tuple[Shard, int]:
        shard, index = self.index[clip]
        return self.shards[shard], int(index)

    def meta(self, clip: int) -> dict[str, Any]:
        shard, index = self._locate(clip)
        return shard.clips[index]

    def num_frames(self, clip: int) -> int:
        return self.meta(clip)["num_frames"]

    def frame(self, clip: int, frame: int) -> np.ndarray:
        """`[S, S, 3] uint8 RGB` crop."""
        shard, index = self._locate(clip)
        return shard.frame(index, frame)

    def landmarks(self, clip: int) -> np.ndarray:
        """`[F, 68, 2] float32` landmarks of all the clip's frames, in crop pixels."""
        shard, index = self._locate(clip)
        return shard.clip_landmarks(index)

    @property
    def num_frames_total(self) -> int:
        return sum(shard.header["num_frames"] for shard in self.shards)

    def skipped(self) -> list[dict[str, Any]]:
        return [item for shard in self.shards for item in shard.skipped]
