"""Training the lip locator (models/mouth.py `LipLocator`): a small regressor from a mouth-aligned
crop to its 20 lip landmarks, learned from dlib's landmarks on real crops of a prepared data set.
Frozen, it reads where a generated mouth's lips are, and the mouth trainer's lip loss
(`LossConfig.lips`, `lip_points_loss`) pulls them to where the target's drawing puts them.

Run folder: checkpoints/step-*.pt (weights and optimizer; `resume` continues from the newest),
metrics.jsonl and TensorBoard (loss, and on held-out clips the error in pixels and the lip gap's correlation),
and `lip-locator.pt`, the trained network (`load_lip_locator`), written at the end.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from talkinghead.data import FaceDataset
from talkinghead.data.augment import Augment
from talkinghead.data.episodes import episode_batches
from talkinghead.data.mouth import MouthCrops
from talkinghead.errors import TalkingheadError
from talkinghead.face.mouth import lip_gap
from talkinghead.models.mouth import INNER_LIP_POINTS, LipLocator, crop_pixels, normalise_points
from talkinghead.training.gan import autocast
from talkinghead.training.train import Logger


def _lip_gaps(points: torch.Tensor) -> np.ndarray:
    """`[B]`: face/mouth.py `lip_gap` of `[B, 20, 2]` lip points (48-67), placed at their indices."""
    return lip_gap(np.pad(points.numpy().astype(np.float64), ((0, 0), (48, 0), (0, 0))))


def load_lip_locator(path: str | Path) -> LipLocator:
    """A trained lip locator, frozen and in eval mode."""
    try:
        state = load_checkpoint(path)
        locator = LipLocator(side=int(state["side"]), channels=int(state["channels"]))
        locator.load_state_dict(state["locator"])
    except (KeyError, RuntimeError, TypeError) as error:
        raise TalkingheadError(f"{path}: not a lip locator ({error.__class__.__name__})") from None
    return locator.eval().requires_grad_(False)


def _loader(data: FaceDataset, side: int, batch_size: int, seed: int, step: int, augment: Augment | None, workers: int):
    crops = MouthCrops(data, side=side, seed=seed, augment=augment)
    size = min(batch_size, len(data))
    return episode_batches(crops, len(data), batch_size=size, seed=seed, start_step=step, workers=workers)


@torch.no_grad()
def held_out_error(locator: LipLocator, data: FaceDataset, *, batches: int = 4, seed: int = 1) -> dict[str, float]:
    """On un-augmented crops of `data`: mean lip-point error in crop pixels (all and inner lips),
    and the Pearson correlation of the predicted and true lip gaps."""
    side, errors, inner, gaps = locator.side, [], [], []
    batch_iter = _loader(data, side, 64, seed, 0, None, 0)
    for _ in range(batches):
        batch = next(batch_iter)
        points = crop_pixels(locator(batch["crop"]), side)
        distance = (points - batch["points"]).norm(dim=-1)
        errors.append(distance.mean(1))
        inner.append(distance[:, INNER_LIP_POINTS].mean(1))
        gaps.append(np.stack([_lip_gaps(points), _lip_gaps(batch["points"])], 1))
    gaps = np.concatenate(gaps)
    return {
        "error_px": float(torch.cat(errors).mean()),
        "inner_error_px": float(torch.cat(inner).mean()),
        "gap_correlation": float(np.corrcoef(gaps[:, 0], gaps[:, 1])[0, 1]),
    }


def train_lip_locator(
    data: str | Path,
    run: str | Path,
    *,
    validation: str | Path | None = None,
    side: int = 64,
    channels: int = 16,
    steps: int = 4000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    workers: int = 1,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> Path:
    """Train a lip locator into the run folder, or continue the one there; returns the trained
    network's path (or, when stopped by a signal, the checkpoint it resumes from)."""
    from tqdm import tqdm

    data, run = FaceDataset(data), Path(run)
    held_out = FaceDataset(validation) if validation else None
    torch.manual_seed(seed)
    locator = LipLocator(side=side, channels=channels)
    optimizer = torch.optim.Adam(locator.parameters(), lr=lr)
    # The last fifth at a tenth of the rate (a regressor's error halves there).
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(0.8 * steps)], 0.1)
    step, found = 0, list_checkpoints(run / "checkpoints")
    if found:
        state = load_checkpoint(found[-1])
        locator.load_state_dict(state["locator"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = int(state["step"])
    run.mkdir(parents=True, exist_ok=True)
    batches = _loader(data, side, batch_size, seed, step, Augment(flip=0.5, color=0.2, scale=0.1), workers)
    stopped = {"signal": None}
    previous = {s: signal.signal(s, lambda n, f: stopped.update(signal=n)) for s in (signal.SIGINT, signal.SIGTERM)}
    logger = Logger(run, step)  # metrics.jsonl and TensorBoard, as the other trainers log
    bar = tqdm(total=steps, initial=step, unit="step", desc="lips", disable=not progress, dynamic_ncols=True)
    state = lambda: {"step": step, "side": side, "channels": channels, "locator": locator.state_dict()}  # noqa: E731
    try:
        while step < steps and stopped["signal"] is None:
            batch = next(batches)
            with autocast(torch.device("cpu"), True):
                predicted = locator(batch["crop"])
            loss = F.smooth_l1_loss(predicted.float(), normalise_points(batch["points"], side), beta=0.02)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step % checkpoint_every == 0 or step == steps or stopped["signal"] is not None:
                record = {"loss": float(loss.detach())}
                if held_out is not None:
                    record.update(held_out_error(locator, held_out))
                bar.set_postfix({k: round(v, 3) for k, v in record.items()})
                logger.scalars(step, record)
                extra = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
                save_checkpoint(checkpoint_path(run / "checkpoints", step), {**state(), **extra})
                prune_checkpoints(run / "checkpoints", 2)
    finally:
        bar.close()
        logger.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if step < steps:  # stopped: the newest checkpoint, which `resume` continues
        return list_checkpoints(run / "checkpoints")[-1]
    return save_checkpoint(run / "lip-locator.pt", state())
