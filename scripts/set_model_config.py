"""Change settings stored in a model file's config, leaving its weights as they are.

python scripts/set_model_config.py MODEL --set train.finetune_lr_scale=4 [--out COPY]
python scripts/set_model_config.py MODEL --set mouth.parting=true --set closed_mouth.parting=true

Only settings that do not change the weights' shapes: `train.*` and `loss.*` (they act in the
few-shot stage: `finetune_lr_scale`, the loss weights), the warp generator's fusion and blend
(`INFERENCE_SETTINGS`) and whether the lips are parted before a mouth generator (`MOUTH_SETTINGS`,
models/mouth.py `MouthSettings.parting`); the rest of `model.*` describes the weights and is refused.
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


MOUTH_SETTINGS = ("mouth.parting", "closed_mouth.parting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", required=True, metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, help="write a changed copy here (default: change MODEL in place)")
    args = parser.parse_args()
    mouths = [a for a in args.set if a.split("=")[0] in MOUTH_SETTINGS]
    shaped = [
        a
        for a in args.set
        if not a.startswith(("train.", "loss.")) and a.split("=")[0] not in (*INFERENCE_SETTINGS, *MOUTH_SETTINGS)
    ]
    if shaped:
        allowed = ", ".join((*INFERENCE_SETTINGS, *MOUTH_SETTINGS))
        parser.error(f"{', '.join(shaped)}: only train.*, loss.* and {allowed} can change after training")
    with safe_open(str(args.model), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for assignment in mouths:
        key, value = assignment.split("=", 1)
        name, field = key.split(".")
        if name not in metadata:
            parser.error(f"{args.model}: no {name} in this model file")
        if value.lower() not in ("true", "false"):
            parser.error(f"{key}: true or false, not {value!r}")
        metadata[name] = json.dumps({**json.loads(metadata[name]), field: value.lower() == "true"})
    config = Config.from_dict(json.loads(metadata["config"])).override([a for a in args.set if a not in mouths])
    metadata["config"] = json.dumps(config.to_dict())
    out = args.out or args.model
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    print(f"{out}: {', '.join(args.set)}")


if __name__ == "__main__":
    main()
