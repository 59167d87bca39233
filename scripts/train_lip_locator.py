"""Train the lip locator (models/mouth.py `LipLocator`, training/lips.py) whose reading of generated
mouths is the mouth trainer's lip loss: `talkinghead train-mouth --lip-locator RUN/lip-locator.pt`.
Resumes a killed run from its last checkpoint; prints the held-out error as JSON at the end.

    python scripts/train_lip_locator.py --data data/shared256/train --validation data/shared256/validation \
        --out runs/lips [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from talkinghead.data import FaceDataset
    from talkinghead.training.lips import held_out_error, load_lip_locator, train_lip_locator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared training data set")
    parser.add_argument("--validation", type=Path, help="prepared data set of other people, for the error")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    path = train_lip_locator(args.data, args.out, validation=args.validation, steps=args.steps,
                             batch_size=args.batch_size)  # fmt: skip
    if path.name == "lip-locator.pt" and args.validation:
        error = held_out_error(load_lip_locator(path), FaceDataset(args.validation), batches=16)
        print(json.dumps({"locator": str(path), **{k: round(v, 4) for k, v in error.items()}}))


if __name__ == "__main__":
    main()
