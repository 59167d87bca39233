"""Meta-learning episodes: K shots and one target frame of the same clip, with landmark images.

Randomness is a pure function of (seed, epoch, clip): the same step always sees the same
episodes whatever the number of DataLoader workers, which is what makes `--resume` exact.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from talkinghead.data.augment import Augment
from talkinghead.data.dataset import FaceDataset
from talkinghead.errors import UsageError
from talkinghead.face.drawing import draw_batch
from talkinghead.face.points import rescale_points
from talkinghead.media.images import to_tensor


class EpisodeDataset(Dataset):
    """Items are keyed `(epoch, clip)` and hold:

    - `source_frames`, `source_landmark_images`: `[K, 3, R, R]` in [-1, 1] (frames; drawn landmarks)
    - `source_points`: `[K, 68, 2]` float32, the shots' landmarks in pixels of R (points.py)
    - `target_frame`, `target_landmark_images`: `[3, R, R]` in [-1, 1]; `target_points`: `[68, 2]`
    - `video_index`: the clip's row in the discriminator's W; `identity`: the person's number;
      `frame_indices`: `[K + 1]` the frames' numbers in the clip (shots, then the target)

    Frames are resized to `resolution` R when the data set's crops differ; landmarks are drawn at R
    from the stored coordinates, after `augment` (if given) has moved frames and landmarks alike.
    A clip with fewer than K + 1 frames repeats frames.
    """

    def __init__(
        self,
        data: FaceDataset,
        *,
        shots: int,
        resolution: int,
        thickness: int = 0,
        seed: int = 0,
        augment: Augment | None = None,
    ):
        self.data, self.shots, self.resolution = data, shots, resolution
        self.thickness, self.seed = thickness or None, seed
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, clip = key
        rng = np.random.default_rng((self.seed, epoch, clip))
        count = self.data.num_frames(clip)
        picks = rng.choice(count, size=self.shots + 1, replace=count < self.shots + 1)
        meta = self.data.meta(clip)
        all_landmarks = self.data.landmarks(clip)
        size = self.resolution
        frames = np.stack([self._frame(clip, int(i)) for i in picks])
        landmarks = rescale_points(all_landmarks[picks].astype(np.float64), meta["crop_size"], size)
        if self.augment is not None:
            frames, landmarks = self.augment(frames, landmarks, rng)
        drawn = draw_batch(landmarks, size, thickness=self.thickness)
        frames_t, drawn_t = to_tensor(frames), to_tensor(drawn)
        points = torch.from_numpy(landmarks.astype(np.float32))
        return {
            "source_frames": frames_t[:-1],
            "source_landmark_images": drawn_t[:-1],
            "source_points": points[:-1],
            "target_frame": frames_t[-1],
            "target_landmark_images": drawn_t[-1],
            "target_points": points[-1],
            "video_index": torch.tensor(clip),
            "identity": torch.tensor(int(self.data.clip_identity[clip])),
            "frame_indices": torch.from_numpy(picks.astype(np.int64)),
        }

    def _frame(self, clip: int, index: int) -> np.ndarray:
        frame = self.data.frame(clip, index)
        if frame.shape[0] != self.resolution:
            interpolation = cv2.INTER_AREA if frame.shape[0] > self.resolution else cv2.INTER_CUBIC
            frame = cv2.resize(frame, (self.resolution, self.resolution), interpolation=interpolation)
        return frame


class EpisodeSampler(Sampler):
    """Endless `(epoch, clip)` keys: each epoch a seeded permutation of the clips, split over ranks.

    `start_step` skips the batches already trained on, so a resumed run continues mid-epoch.
    Each rank gets `steps_per_epoch * batch_size` clips per epoch (the remainder is dropped so all
    ranks take the same number of steps).
    """

    def __init__(
        self, num_clips: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ):
        self.num_clips, self.batch_size, self.seed = num_clips, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.steps_per_epoch = num_clips // (world_size * batch_size)
        if self.steps_per_epoch == 0:
            raise UsageError(f"{num_clips} clips are too few for batch size {batch_size} on {world_size} process(es)")

    def __iter__(self):
        epoch, step = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.num_clips)
            mine = order[self.rank :: self.world_size][: self.steps_per_epoch * self.batch_size]
            for clip in mine[step * self.batch_size :]:
                yield epoch, int(clip)
            epoch, step = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs this for its own bookkeeping
        return 2**62


def episode_batches(
    items: Dataset,
    num_clips: int,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
):
    """Endless batches of `items[(epoch, clip)]` in `EpisodeSampler`'s order, this process's share,
    starting after `start_step`; `workers` loader processes (spawned: safe beside torch threads)."""
    sampler = EpisodeSampler(
        num_clips, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, start_step=start_step
    )
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers > 0 else None,
    )
    return iter(loader)
