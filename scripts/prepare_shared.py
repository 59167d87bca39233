"""Prepare the shared videos as two data sets: training identities and the validation split.

    python scripts/prepare_shared.py [--videos ../shared/data/videos] [--out data/shared] [--size 256]

Writes OUT/train and OUT/validation (see talkinghead.data.splits for who is held out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from talkinghead.data.prepare import PrepareOptions, format_summary, prepare
from talkinghead.data.splits import shared_split


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=root.parent / "shared" / "data" / "videos", type=Path)
    parser.add_argument("--out", default=root / "data" / "shared", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    train, validation = shared_split(args.videos)
    for name, folders in (("train", train), ("validation", validation)):
        start = time.perf_counter()
        summary = prepare(folders, args.out / name, PrepareOptions(crop_size=args.size), workers=args.workers)
        print(f"{name}: " + format_summary(summary, time.perf_counter() - start))


if __name__ == "__main__":
    main()
