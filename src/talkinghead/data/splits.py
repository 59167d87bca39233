"""The validation split of the shared talking-head videos (`../shared/data/videos`).

These identities are never trained on: the default model is evaluated on them (issue 5). Chosen
to vary the source (GRID, HDTF, MEAD at 1080p, LivePortrait and StyleTalk drivers, stock and news
footage), sex and age; every one has at least 3 s of frontal talking.
"""

from __future__ import annotations

from pathlib import Path

from talkinghead.errors import UsageError

SHARED_VALIDATION = (
    "dpe_s",
    "grid_f2",
    "grid_m3",
    "hdtf_rd2",
    "katie_hill",
    "lp_d20",
    "markey",
    "mead_W015",
    "menendez",
    "st_vscode",
    "vr4",
)


def shared_split(videos: str | Path) -> tuple[list[Path], list[Path]]:
    """Identity folders of the shared videos: (training, validation)."""
    folders = sorted(p for p in Path(videos).iterdir() if p.is_dir())
    missing = set(SHARED_VALIDATION) - {p.name for p in folders}
    if missing:
        raise UsageError(f"{videos}: validation identities missing: {sorted(missing)}")
    train = [p for p in folders if p.name not in SHARED_VALIDATION]
    validation = [p for p in folders if p.name in SHARED_VALIDATION]
    return train, validation
