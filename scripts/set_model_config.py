"""Change settings stored in a model file's config, leaving its weights as they are.

python scripts/set_model_config.py MODEL --set train.finetune_lr_scale=4

Only settings that act after training make sense here (the few-shot stage's `finetune_lr_scale`);
the networks' shapes must match the weights, which `load_model` checks on the next load.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from talkinghead.checkpoint import load_model
from talkinghead.config import Config
from talkinghead.io import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", required=True, metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    with safe_open(str(args.model), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = Config.from_dict(json.loads(metadata["config"])).override(args.set)
    metadata["config"] = json.dumps(config.to_dict())
    with atomic_path(args.model) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    load_model(args.model)  # the file still loads
    print(f"{args.model}: {', '.join(args.set)}")


if __name__ == "__main__":
    main()
