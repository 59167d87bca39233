"""Change settings stored in a model file's config, leaving its weights as they are.

python scripts/set_model_config.py MODEL --set train.finetune_lr_scale=4 [--out COPY]

Only settings that do not change the weights' shapes: `train.*` and `loss.*` (they act in the
few-shot stage: `finetune_lr_scale`, the loss weights) and the warp generator's fusion and blend
(`INFERENCE_SETTINGS`); the rest of `model.*` describes the weights and is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from talkinghead.config import Config
from talkinghead.io import atomic_path

INFERENCE_SETTINGS = tuple(
    f"model.{k}"
    for k in (
        "fuse_shots", "fusion_temperature", "fusion_prior", "fusion_sigma", "fusion_agreement", "prior_downsample",
        "prior_regularization", "eye_regularization", "blend_bias", "mouth_prior",
    )
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", required=True, metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, help="write a changed copy here (default: change MODEL in place)")
    args = parser.parse_args()
    shaped = [
        a for a in args.set if not a.startswith(("train.", "loss.")) and a.split("=")[0] not in INFERENCE_SETTINGS
    ]
    if shaped:
        parser.error(
            f"{', '.join(shaped)}: only train.*, loss.* and {', '.join(INFERENCE_SETTINGS)} can change after training"
        )
    with safe_open(str(args.model), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = Config.from_dict(json.loads(metadata["config"])).override(args.set)
    metadata["config"] = json.dumps(config.to_dict())
    out = args.out or args.model
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    print(f"{out}: {', '.join(args.set)}")


if __name__ == "__main__":
    main()
