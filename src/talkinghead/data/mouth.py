"""Mouth episodes: K shots and a target of one clip, each cut as a mouth-aligned crop (face/mouth.py:
rotation and scale normalised, the corners on a fixed line), for a generator of the mouth alone.

Where pixels must be invented is a mouth opened wider than every shot's, so episodes are drawn to
hold many such pairs: with probability `open_targets` the target is one of the clip's open
mouths (lip gap over mouth width above `OPEN`), and then, with probability `closed_shots`, the
shots are its most closed frames. Each item also carries what the renderer gives today for the
target: the shot whose lips are nearest the target's, warped by a thin-plate spline from its
lip landmarks to the target's (plus fixed points on the crop border), the input the mouth
generator corrects. Randomness is a pure function of (seed, epoch, clip), as in episodes.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from talkinghead.data.augment import Augment
from talkinghead.data.dataset import FaceDataset
from talkinghead.face.mouth import DILATE, OPEN, align_mouth, draw_lips, hidden_share, lip_gap, region_and_hidden
from talkinghead.face.parting import part_lips
from talkinghead.media.images import to_tensor, to_uint8
from talkinghead.models.flow import resize_grid, tps_grid, warp

LIPS = list(range(48, 68))


def warp_mouth(crop: np.ndarray, points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """`[S, S, 3] uint8`: a mouth crop warped so that its lip landmarks (`[68, 2]` crop pixels)
    land on the target's, by a thin-plate spline over the 20 lip points and the crop border."""
    size = crop.shape[0]
    source, goal = (torch.from_numpy(np.asarray(p[LIPS], np.float32))[None] for p in (points, target_points))
    grid = tps_grid(source, goal, size, out_size=size // 2)  # smooth: solved at half size
    moved = warp(to_tensor(crop[None]), resize_grid(grid, size))
    return ((moved[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).numpy()


def part_mouth(crop: np.ndarray, points: np.ndarray, target_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`[S, S, 3] uint8`, `[S, S]` float32 in [0, 1]): a mouth crop warped to the target's lips
    as the renderer does with `MouthSettings.parting`: `warp_mouth`, then the lips parted by
    face/parting.py `part_lips` from the crop itself; and the unseen part."""
    frames = to_tensor(warp_mouth(crop, points, target_points)[None])
    frames, unseen = part_lips(frames, target_points[None], to_tensor(crop[None]), points[None])
    return to_uint8(frames)[0], unseen[0, 0].numpy()


def mouth_input(
    crop: np.ndarray, points: np.ndarray, target_points: np.ndarray, hidden: np.ndarray, parting: bool
) -> tuple[np.ndarray, np.ndarray]:
    """What the renderer gives the mouth generator for a target, from one shot's `[S, S, 3] uint8`
    mouth crop: (the crop moved to the target's lips, `[S, S, 3] uint8`; what of it the generator
    must not see, `[1, S, S]` float32). With `parting`, the lips parted (`part_mouth`) and hidden only
    where no part of the shot shows; without, one spline (`warp_mouth`) and `hidden`, the target's
    region mask `[1, S, S]`, as far as its lips open wider than the shot's (face/mouth.py `hidden_share`)."""
    if parting:
        warped, unseen = part_mouth(crop, points, target_points)
        return warped, unseen[None]
    share = np.float32(hidden_share(lip_gap(target_points), lip_gap(points)))
    return warp_mouth(crop, points, target_points), (hidden * share).astype(np.float32)


class MouthEpisodes(Dataset):
    """Items are keyed `(epoch, clip)` and hold, at `side` px, in [-1, 1] unless said:

    - `shots` `[K, 3, s, s]`: the shots' mouth crops; `shot_lips` `[K, 3, s, s]`: their lips drawn
    - `target` `[3, s, s]`, `target_lips` `[3, s, s]`; `target_points` `[20, 2]` float32: its lip
      landmarks in crop pixels; `target_region` `[1, s, s]` in [0, 1]: its inner mouth, grown and
      feathered as the renderer pastes it (face/mouth.py `inner_mouth_mask`)
    - `warped` `[3, s, s]`: the nearest shot warped to the target's lips (what the renderer gives)
    - `opening` (float): the target's lip gap over mouth width; `video_index` (int): the clip
    - `target_hidden` `[1, s, s]` in [0, 1]: what of `warped` the generator must not see: the region
      (or the inner lips grown by `hidden_dilate`, when given) times face/mouth.py `hidden_share` of
      the target's and the warped shot's lip gaps
    """

    def __init__(
        self,
        data: FaceDataset,
        *,
        shots: int = 4,
        side: int = 64,
        seed: int = 0,
        open_targets: float = 0.5,
        closed_shots: float = 0.5,
        augment: Augment | None = None,
        dilate: float = DILATE,
        hidden_dilate: float | None = None,
        parting: bool = False,
    ):
        self.data, self.shots, self.side, self.seed, self.parting = data, shots, side, seed, parting
        self.dilate, self.hidden_dilate = dilate, hidden_dilate
        self.open_targets, self.closed_shots = open_targets, closed_shots
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.data)

    def _pick(self, clip: int, rng: np.random.Generator) -> np.ndarray:
        """`[K + 1]` frame numbers: the shots, then the target."""
        gaps = lip_gap(self.data.landmarks(clip))
        count = len(gaps)
        opened = np.flatnonzero(gaps > OPEN)
        if len(opened) and rng.random() < self.open_targets:
            target = int(rng.choice(opened))
            if rng.random() < self.closed_shots:  # the most closed frames: the mouth must be invented
                closed = np.argsort(gaps)[: max(self.shots, count // 4)]
                closed = closed[closed != target]
                if len(closed):
                    shots = rng.choice(closed, size=self.shots, replace=len(closed) < self.shots)
                    return np.append(shots, target)
        else:
            target = int(rng.integers(count))
        others = np.delete(np.arange(count), target) if count > 1 else np.arange(count)
        shots = rng.choice(others, size=self.shots, replace=len(others) < self.shots)
        return np.append(shots, target)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, clip = key
        rng = np.random.default_rng((self.seed, epoch, clip))
        picks = self._pick(clip, rng)
        landmarks = self.data.landmarks(clip)[picks].astype(np.float64)
        aligned = [align_mouth(self.data.frame(clip, int(i)), p, self.side) for i, p in zip(picks, landmarks)]
        crops = np.stack([c for c, _, _ in aligned])
        points = np.stack([p for _, p, _ in aligned]).astype(np.float64)
        if self.augment is not None:  # on the crops: mirror, colour, zoom (16x fewer pixels than the frames)
            crops, points = self.augment(crops, points, rng)
        target_points = points[-1]
        # The nearest shot by its (centred) lips: the one the renderer's fusion favours.
        centred = points[:-1, LIPS] - points[:-1, LIPS].mean(1, keepdims=True)
        goal = target_points[LIPS] - target_points[LIPS].mean(0)
        nearest = int(np.linalg.norm(centred - goal, axis=-1).mean(-1).argmin())
        lips = np.stack([draw_lips(p, self.side) for p in points])
        region, hidden = region_and_hidden(target_points[None], self.side, self.dilate, self.hidden_dilate)
        warped, hidden = mouth_input(crops[nearest], points[nearest], target_points, hidden, self.parting)
        return {
            "shots": to_tensor(crops[:-1]),
            "shot_lips": to_tensor(lips[:-1]),
            "target": to_tensor(crops[-1]),
            "target_lips": to_tensor(lips[-1]),
            "target_points": torch.from_numpy(target_points[LIPS].astype(np.float32)),
            "target_region": torch.from_numpy(region),
            "target_hidden": torch.from_numpy(hidden),
            "warped": to_tensor(warped),
            "opening": torch.tensor(float(lip_gap(points[-1]))),
            "video_index": torch.tensor(clip),
        }


class MouthCrops(Dataset):
    """Items keyed `(epoch, clip)`: one frame of the clip, drawn at random, as a mouth-aligned crop
    `crop` `[3, s, s]` in [-1, 1] and its lip landmarks `points` `[20, 2]` float32 in crop pixels,
    augmented (mirror, colour, zoom): what the lip locator (models/mouth.py `LipLocator`) learns from.
    Half the frames are drawn from the clip's open mouths (lip gap above `OPEN`) when it has any,
    since it must read open mouths the generator makes from closed shots."""

    def __init__(self, data: FaceDataset, *, side: int = 64, seed: int = 0, augment: Augment | None = None):
        self.data, self.side, self.seed = data, side, seed
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, clip = key
        rng = np.random.default_rng((self.seed, epoch, clip, 1))
        landmarks = self.data.landmarks(clip)
        opened = np.flatnonzero(lip_gap(landmarks) > OPEN)
        frame = int(rng.choice(opened)) if len(opened) and rng.random() < 0.5 else int(rng.integers(len(landmarks)))
        crop, points, _ = align_mouth(self.data.frame(clip, frame), landmarks[frame].astype(np.float64), self.side)
        crops, points = crop[None], points[None].astype(np.float64)
        if self.augment is not None:
            crops, points = self.augment(crops, points, rng)
        return {"crop": to_tensor(crops)[0], "points": torch.from_numpy(points[0, LIPS].astype(np.float32))}
