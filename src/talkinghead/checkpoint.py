"""Training checkpoints: plain data (tensors, numbers, strings) loadable with `weights_only=True`.

A checkpoint holds every network's and optimizer's state, the step, the RNG state, the resolved
config and the format version. It is written to a temporary file and renamed, so a run killed
while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch

from talkinghead import __version__
from talkinghead.errors import ModelFileError, UsageError
from talkinghead.io import atomic_path

FORMAT_VERSION = 1
_NAME = re.compile(r"step-(\d+)\.pt$")


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, "talkinghead_version": __version__, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load without executing code (`weights_only=True`); `ModelFileError` for anything that is not
    a whole talkinghead checkpoint (random bytes, a truncated file, a pickle with code)."""
    import pickle
    import warnings
    import zipfile

    from safetensors import SafetensorError

    path = Path(path)
    if is_safetensors(path):
        raise ModelFileError(f"{path}: a model file, not a training checkpoint (step-*.pt)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error) or "Unsupported global" in str(error):
            # torch's own message advises weights_only=False, which would run the file's code: never.
            raise ModelFileError(f"{path}: refused: it holds code or objects, not plain tensors (never run)") from None
        raise ModelFileError(f"{path}: not a talkinghead checkpoint (unreadable or truncated)") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, SafetensorError):
        # SafetensorError: PyTorch >= 2.13 hands a `.safetensors` path to safetensors, which
        # raises its own error on a file that is not one.
        raise ModelFileError(f"{path}: not a talkinghead checkpoint (unreadable or truncated)") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise ModelFileError(f"{path}: not a talkinghead checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise ModelFileError(f"{path}: checkpoint format {state['format_version']} is not supported")
    return state


def is_safetensors(path: Path) -> bool:
    """By content: an 8-byte little-endian header length, then a JSON object that fits the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in a folder, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: Path, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


# -- model files: what fit and animate need, without optimizer state or the per-clip W table ---


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A training checkpoint's E and G weights for use: their moving average when it was kept."""
    return state.get("embedder_generator_ema") or state["embedder_generator"]


# A model file's mouths (issue 32), each under its own prefix and metadata key: `mouth`, and
# `closed_mouth`, which `fit` uses instead when every shot's mouth is closed (a painting's).
MOUTHS = ("mouth", "closed_mouth")


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    *,
    half: bool = True,
    mouth: str | Path | None = None,
    closed_mouth: str | Path | None = None,
) -> Path:
    """Write a training checkpoint's E, G and D (less its per-training-clip table W) as a model
    file. `checkpoint` may also be a model file (to add or replace a mouth; the others it has stay);
    `mouth`, `closed_mouth`: `train-mouth` checkpoints whose networks go in beside the face's."""
    path = Path(checkpoint)
    given = {"mouth": mouth, "closed_mouth": closed_mouth}
    if is_safetensors(path) and mouth is None and closed_mouth is None:
        raise ModelFileError(
            f"{path}: a model file, not a training checkpoint (with --mouth or --closed-mouth, one to add a mouth to)"
        )
    mouths: dict[str, dict] = {}
    if is_safetensors(path):
        metadata, tensors = read_safetensors(path, "talkinghead-model", "a talkinghead model file")
        for name in MOUTHS:
            if given[name] is not None:  # replaced
                tensors = {k: v for k, v in tensors.items() if not k.startswith(f"{name}.")}
            elif name in metadata:  # kept
                mouths[name] = json.loads(metadata[name])
        config, step = config_from(path, lambda: json.loads(metadata["config"])).to_dict(), int(metadata.get("step", 0))
    else:
        state = load_checkpoint(path)
        tensors = {f"eg.{k}": v for k, v in inference_weights(state).items()}
        tensors.update({f"d.{k}": v for k, v in state["discriminator"].items()})
        config, step = state["config"], state["step"]
    for name, source in given.items():
        if source is not None:
            mouths[name], mouth_state = _mouth_checkpoint(Path(source), name)
            tensors.update(mouth_state)
    return _write_model(out, tensors, config, step, half, mouths=mouths)


def save_model(out: str | Path, model, *, step: int = 0, half: bool = True) -> Path:
    """Write a `Model` (as `build_model` or `load_model` make one) as a model file."""
    tensors = {f"eg.embedder.{k}": v for k, v in model.embedder.state_dict().items()}
    tensors.update({f"eg.generator.{k}": v for k, v in model.generator.state_dict().items()})
    tensors.update({f"d.{k}": v for k, v in model.discriminator.state_dict().items()})
    mouths = {}
    for name in MOUTHS:
        part = getattr(model, name)
        if part is not None:
            mouths[name] = dataclasses.asdict(part.settings)
            tensors.update(_mouth_tensors(part.networks.state_dict(), part.discriminator.state_dict(), name))
    return _write_model(out, tensors, model.config.to_dict(), step, half, mouths=mouths)


def _mouth_checkpoint(path: Path, name: str = "mouth") -> tuple[dict, dict[str, torch.Tensor]]:
    """A `train-mouth` checkpoint's settings and its networks as model-file tensors (`NAME.*`)."""
    from talkinghead.models.mouth import MouthSettings

    state = load_checkpoint(path)
    try:
        settings = dataclasses.asdict(MouthSettings.of(state["config"]))  # runs before `blend`: "learned"
        tensors = _mouth_tensors(state["networks"], state["discriminator"], name)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ModelFileError(f"{path}: not a train-mouth checkpoint (its mouth networks are missing)") from None
    return settings, tensors


def _mouth_tensors(networks: dict, discriminator: dict, name: str = "mouth") -> dict[str, torch.Tensor]:
    """A mouth's E and G (`NAME.eg.*`) and D (`NAME.d.*`) state dicts as model-file tensors."""
    return {
        **{f"{name}.eg.{k}": v for k, v in networks.items()},
        **{f"{name}.d.{k}": v for k, v in discriminator.items()},
    }


def _write_model(out, tensors: dict, config: dict, step: int, half: bool, *, mouths: dict[str, dict]) -> Path:
    """One safetensors file; float16 when `half` (the bundled model must stay under 50 MB)."""
    from safetensors.torch import save_file

    tables = ("d.W.", *(f"{name}.d.W." for name in MOUTHS))  # per-training-clip vectors: not kept
    tensors = {k: v for k, v in tensors.items() if not k.startswith(tables)}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {
        "format": "talkinghead-model",
        "format_version": str(FORMAT_VERSION),
        "talkinghead_version": __version__,
        "config": json.dumps(config),
        "step": str(step),
    }
    metadata.update({name: json.dumps(settings) for name, settings in mouths.items()})
    with atomic_path(Path(out)) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(out)


def load_model(path: str | Path | None = None):
    """A `Model` (config, embedder, generator, discriminator, and the mouths' networks when the
    file has them) from a model file or a training checkpoint.

    The discriminators come with a one-row W (fine-tuning gives it the new person's vector).
    Networks are float32 and in eval mode. `ModelFileError` when the file is not one.
    """
    from talkinghead.model import Model, build_model

    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    mouths = {}
    if path.suffix == ".safetensors" or is_safetensors(path):
        metadata, tensors = read_safetensors(path, "talkinghead-model", "a talkinghead model file")
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        config = config_from(path, lambda: json.loads(metadata["config"]))
        eg_state = {k[3:]: v for k, v in tensors.items() if k.startswith("eg.")}
        d_state = {k[2:]: v for k, v in tensors.items() if k.startswith("d.")}
        mouths = {n: _load_mouth(path, metadata[n], _part(tensors, f"{n}.")) for n in MOUTHS if n in metadata}
    else:
        state = load_checkpoint(path)
        config = config_from(path, lambda: state["config"])
        try:
            eg_state = inference_weights(state)
            d_state = {k: v for k, v in state["discriminator"].items() if not k.startswith("W.")}
        except (KeyError, AttributeError):
            raise ModelFileError(f"{path}: not a talkinghead checkpoint (networks missing)") from None
    model = build_model(config, num_videos=1)
    d_state["W.weight"] = model.discriminator.W.weight.detach().clone()
    try:
        model.embedder.load_state_dict(_part(eg_state, "embedder."))
        model.generator.load_state_dict(_part(eg_state, "generator."))
        model.discriminator.load_state_dict(d_state)
    except RuntimeError:
        raise ModelFileError(f"{path}: its networks do not match the config it carries (damaged file)") from None
    return Model(config, *(network.eval() for network in model.networks()), **mouths)


def _load_mouth(path: Path, settings: str, tensors: dict[str, torch.Tensor]):
    """The `Mouth` of a model file: its settings (JSON) and `eg.*`, `d.*` tensors."""
    from talkinghead.model import Mouth
    from talkinghead.models.mouth import MouthNetworks, MouthSettings, mouth_discriminator

    try:
        shape = MouthSettings.of(json.loads(settings))
        networks, discriminator = MouthNetworks(shape), mouth_discriminator(shape, 1)
        d_state = _part(tensors, "d.")
        d_state["W.weight"] = discriminator.W.weight.detach().clone()
        networks.load_state_dict(_part(tensors, "eg."))
        discriminator.load_state_dict(d_state)
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise ModelFileError(f"{path}: its mouth networks do not match their settings (damaged file)") from None
    return Mouth(shape, networks.eval(), discriminator.eval())


def read_safetensors(path: Path, format_name: str, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file whose metadata says `format: format_name`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != format_name:
                raise ModelFileError(f"{path}: not {what}")
            return metadata, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, RuntimeError) as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(f"{path}: not {what} (unreadable or truncated)") from None


def config_from(path: Path, read):
    from talkinghead.config import Config

    try:
        return Config.from_dict(read())
    except (KeyError, TypeError, ValueError) as error:
        reason = f": {error}" if isinstance(error, UsageError) else ""
        raise ModelFileError(f"{path}: its config cannot be read{reason}") from None


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def default_model_path() -> Path:
    """The model bundled with the package (trained on the shared talking-head videos)."""
    return Path(__file__).resolve().parent / "assets" / "default.safetensors"
