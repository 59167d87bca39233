"""Training checkpoints: plain data (tensors, numbers, strings) loadable with `weights_only=True`.

A checkpoint holds every network's and optimizer's state, the step, the RNG state, the resolved
config and the format version. It is written to a temporary file and renamed, so a run killed
while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .io import atomic_path

FORMAT_VERSION = 1
_NAME = re.compile(r"step-(\d+)\.pt$")


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, "talkinghead_version": __version__, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load without executing code (`weights_only=True`)."""
    state = torch.load(Path(path), map_location=map_location, weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('format_version')} is not supported")
    return state


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in a folder, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: Path, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
