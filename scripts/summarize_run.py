"""Summarise a run's metrics.jsonl as a markdown table of window means.

python scripts/summarize_run.py RUN [--windows 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = (
    "loss/vgg",
    "loss/face",
    "loss/adversarial",
    "loss/feature_matching",
    "loss/embedding_match",
    "loss/discriminator",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--windows", type=int, default=8)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    present = [c for c in COLUMNS if c in rows[0]]
    print("| steps | " + " | ".join(c.split("/")[1] for c in present) + " |")
    print("|---" * (len(present) + 1) + "|")
    for chunk in np.array_split(np.arange(len(rows)), args.windows):
        window = [rows[i] for i in chunk]
        means = [np.mean([r[c] for r in window]) for c in present]
        print(f"| {window[0]['step']}-{window[-1]['step']} | " + " | ".join(f"{m:.4f}" for m in means) + " |")


if __name__ == "__main__":
    main()
