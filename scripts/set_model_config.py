"""Change settings stored in a model file's config, leaving its weights as they are.

python scripts/set_model_config.py MODEL --set train.finetune_lr_scale=4

Only `train.*` and `loss.*` settings, which act in the few-shot stage (`finetune_lr_scale`, the
loss weights); `model.*` describes the weights' shapes and is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from talkinghead.config import Config
from talkinghead.io import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", required=True, metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    shaped = [a for a in args.set if not a.startswith(("train.", "loss."))]
    if shaped:
        parser.error(f"{', '.join(shaped)}: only train.* and loss.* settings can change after training")
    with safe_open(str(args.model), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = Config.from_dict(json.loads(metadata["config"])).override(args.set)
    metadata["config"] = json.dumps(config.to_dict())
    with atomic_path(args.model) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    print(f"{args.model}: {', '.join(args.set)}")


if __name__ == "__main__":
    main()
