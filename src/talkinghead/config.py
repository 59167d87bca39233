"""Model and training configuration: named presets, files, and `key=value` overrides.

A config is plain data (dataclasses of numbers and strings). It is written as JSON into every run
folder and every checkpoint, so a checkpoint always says how to rebuild its networks.

Defaults are the paper's (Zakharov et al. 2019, §3.2-3.4 and the supplementary material) where it
gives a value; the source of each is noted beside it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from talkinghead.errors import UsageError
from talkinghead.models import GENERATORS, generator_entry


@dataclass
class ModelConfig:
    """The settings every network of a model shares, and the generator's own section.

    `generator` names a registered generator (models/registry.py): "adain" is the paper's, which
    makes every pixel from the landmark image and psi = P e-hat; "warp" moves the shots' own
    pixels along a landmark-driven flow and synthesises the rest through AdaIN (models/warp.py).
    `settings` is that generator's settings dataclass, declared beside its class; in JSON it is
    the section named after the generator (`{"generator": "warp", ..., "warp": {...}}`).
    """

    generator: str = "adain"
    resolution: int = 256  # paper: 256x256 crops
    base_channels: int = 64  # paper: widths 64 -> 512
    max_channels: int = 512
    embedding_dim: int = 512  # paper: e-hat is 512-d
    attention_resolutions: tuple[int, ...] = (32, 64)  # paper: self-attention at 32 and 64 px
    landmark_thickness: int = 0  # line width of landmark images; 0 = 1 px per 128 px
    settings: Any = None  # the generator's section; None: its defaults

    def __post_init__(self) -> None:
        self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        entry = _generator(self.generator)
        if self.settings is None:
            self.settings = entry.settings()
        if not isinstance(self.settings, entry.settings):
            raise UsageError(f"model.{self.generator}: expected {entry.settings.__name__}, got {self.settings!r}")
        size = self.resolution
        if size & (size - 1) or not 16 <= size <= 2048:
            raise UsageError(f"model.resolution: must be a power of two in 16..2048, got {size}")
        validate = getattr(self.settings, "validate", None)
        if validate is not None:
            try:
                validate(size)
            except ValueError as error:
                raise UsageError(f"model.{self.generator}.{error}") from None

    def to_dict(self) -> dict[str, Any]:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        return {**shared, "attention_resolutions": list(self.attention_resolutions),
                self.generator: dataclasses.asdict(self.settings)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """From JSON: the generator's section nested under its name, or (files written before the
        sections existed) its settings flat beside the shared ones, where other generators'
        settings are ignored."""
        if not isinstance(values, dict):
            raise UsageError(f"config section 'model': must be a JSON object of settings, got {values!r}")
        values = dict(values)
        name = _checked("model.generator", str, values.get("generator", "adain"))
        entry = _generator(name)
        section = values.pop(name, {})
        if not isinstance(section, dict):
            raise UsageError(f"config section 'model.{name}': must be a JSON object of settings, got {section!r}")
        shared = {f.name for f in dataclasses.fields(cls)} - {"settings"}
        own = {f.name for f in dataclasses.fields(entry.settings)}
        known_elsewhere = set(GENERATORS).union(
            *({f.name for f in dataclasses.fields(e.settings)} for e in GENERATORS.values())
        )
        flat = {k: values.pop(k) for k in list(values) if k not in shared and k in own}
        for key in [k for k in values if k not in shared and k in known_elsewhere]:
            del values[key]  # another generator's setting or section
        settings = _build(entry.settings, {**flat, **section}, f"model.{name}")
        return _build(cls, values, "model", settings=settings)


def _generator(name: str):
    try:
        return generator_entry(name)
    except KeyError as error:
        raise UsageError(f"model.generator: {name!r} is {error.args[0]}") from None


@dataclass
class LossConfig:
    # Paper §3.2 / supplementary: content loss = 1e-2 * VGG19 + 2e-3 * VGGFace, feature matching 10,
    # embedding match 80, adversarial 1. VGG16 (ImageNet) and FaceNet stand in for VGG19 and
    # VGGFace, whose weights cannot be had here (docs/training.md).
    vgg: float = 1e-2
    face: float = 2e-3
    adversarial: float = 1.0
    feature_matching: float = 10.0
    embedding_match: float = 80.0
    l1: float = 0.0  # plain pixel L1, not in the paper; useful for quick CPU runs
    # Meta-learning with the warp generator only: pixel L1 between its synthesised frame (before
    # the blend with the warped shots) and the target. The blend passes the frame's loss to the
    # synthesis only where the mask lets it through (2 % at blend bias 4), so without this term it
    # never learns enough to be let through (docs/training-log.md, 2026-12-02 fourth entry).
    synthesis: float = 0.0
    # Pixel L1 inside a region the batch marks (StepInputs.region, [B, 1, H, W] in [0, 1]), over
    # the region's area: the mouth trainer's inner mouth, a few percent of its crop, where the
    # crop-wide L1 barely moved the generator (docs/training.md, the mouth's first run).
    region: float = 0.0
    # The mouth trainer's lip loss: L1 between where a frozen lip locator (models/mouth.py
    # `LipLocator`) reads the generated mouth's inner lips (60-67) and the target's, in [-1, 1]
    # crop units: the lips' edges where the drawing puts them (docs/training.md, the lip locator).
    lips: float = 0.0
    # LPIPS (VGG16 and its learned heads, features/lpips.py): the distance `evaluate` scores the
    # mouth box with, as a loss on the mouth crops (docs/training.md, "LPIPS as the loss").
    lpips: float = 0.0


@dataclass
class TrainConfig:
    shots: int = 8  # K frames per episode (paper: K = 8 for meta-learning)
    batch_size: int = 2  # episodes per step per process (paper: 48 over 8 GPUs; memory-bound here)
    lr_generator: float = 5e-5  # paper: 5e-5 for E and G (two time-scale update rule)
    lr_discriminator: float = 2e-4  # paper: 2e-4 for D
    betas: tuple[float, float] = (0.0, 0.999)  # BigGAN/SAGAN's Adam betas; the paper does not say
    discriminator_steps: int = 1  # D updates per generator update
    # Augmentation (data/augment.py; not in the paper, which had 145k videos): mirror probability,
    # colour change, zoom-in fraction. All 0 turns it off.
    flip: float = 0.5
    color_jitter: float = 0.1
    scale_jitter: float = 0.1
    # Start each video's row of W at the embedder's vector for it, so the embedding match pulls
    # e-hat toward its own scale rather than toward a near-zero random row (which killed the
    # embedder's final ReLU in the first model; docs/training-log.md).
    init_video_vectors: bool = True
    # Exponential moving average of E and G's weights (0 = none): model files and evaluation use
    # the average, which is smoother than the last step's weights of a GAN.
    ema: float = 0.999
    # The few-shot stage (fine-tuning, inference/fitting.py) runs at the learning rates above times this. The
    # paper gives no separate rates for it; the bundled CPU model fits its shots better at 4x
    # (at T = 1 from 40 steps, at T = 8 from about 150; docs/training-log.md).
    finetune_lr_scale: float = 1.0
    # Let both fine-tuning rates fall linearly to 0 over the fine-tuning steps, so that the avatar
    # is not the last iterate of a GAN still taking full-size steps (docs/training-log.md).
    finetune_lr_decay: bool = False
    # What fine-tuning moves on the generator side: False, as the paper, G's weights and psi'; True,
    # psi' alone (G's weights stay the meta-learned ones; D and w' are fine-tuned either way). On 8
    # shots the warp generator's blend and synthesis learn those frames and make new poses worse;
    # with psi' alone it cannot overfit them (docs/training-log.md, 2026-12-02).
    finetune_psi_only: bool = False
    # Parameter-name prefixes of E and G that meta-learning moves (empty: all of them), so that a
    # stage can train one part on top of a trained model and keep the rest as loaded: e.g.
    # ["generator.motion"] for a dense-motion network added to the bundled file with `--init`.
    # D always trains.
    trainable: tuple[str, ...] = ()
    steps: int = 100_000
    seed: int = 0
    workers: int = 2  # DataLoader worker processes per training process
    amp: bool = True  # bf16 autocast on GPUs and on CPUs with native bf16 (gan.autocast; elsewhere off)
    channels_last: bool = True  # on GPU
    compile: bool = False  # torch.compile the networks (GPU)
    log_every: int = 50  # TensorBoard scalars
    sample_every: int = 500  # sample grids (landmarks | real | generated)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "loss": dataclasses.asdict(self.loss),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = set(data) - {"model", "loss", "train"}
        if unknown:
            raise UsageError(f"unknown config sections: {sorted(unknown)}")
        return cls(
            model=ModelConfig.from_dict(data.get("model", {})),
            loss=_build(LossConfig, data.get("loss", {}), "loss"),
            train=_build(TrainConfig, data.get("train", {}), "train"),
        )

    def override(self, assignments: list[str]) -> "Config":
        """Apply `section.key=value` strings (value parsed as JSON when it parses, else a string)."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            target = _setting_slot(data, key.strip()) if sep else None
            if target is None:
                raise UsageError(
                    f"--set {assignment!r}: expected section.key=value with a known key, e.g. train.steps=1000"
                )
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            target[0][target[1]] = value
            if key.strip() == "model.generator" and isinstance(value, str) and value in GENERATORS:
                data = _switched_generator(data)
        return Config.from_dict(data)


def _switched_generator(data: dict[str, Any]) -> dict[str, Any]:
    """After `--set model.generator=NAME`: the new generator's section, with the settings that the
    old section has by the same name (e.g. `bottleneck_blocks`) carried over."""
    model = data["model"]
    new = model["generator"]
    defaults = dataclasses.asdict(GENERATORS[new].settings())
    carried = {k: v for part in model.values() if isinstance(part, dict) for k, v in part.items() if k in defaults}
    shared = {k: v for k, v in model.items() if not isinstance(v, dict)}
    return {**data, "model": {**shared, new: {**defaults, **carried, **model.get(new, {})}}}


def _setting_slot(data: dict[str, Any], key: str) -> tuple[dict, str] | None:
    """Where `--set key=...` writes in a config's dict: `section.name`, `model.<generator>.name`,
    or `model.name` for a setting of the model's generator (as before the sections existed)."""
    *path, name = key.split(".")
    if not path:
        return None
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and name in node and not isinstance(node[name], dict):
        return node, name
    if path == ["model"] and name in data["model"].get(data["model"]["generator"], {}):
        return data["model"][data["model"]["generator"]], name
    return None


def _build(kind, values: dict[str, Any], section: str, **given):
    """A settings dataclass from JSON values, each checked against its type and range."""
    if not isinstance(values, dict):
        raise UsageError(f"config section {section!r}: must be a JSON object of settings, got {values!r}")
    types = {k: v for k, v in get_type_hints(kind).items() if k not in given}
    unknown = set(values) - set(types)
    if unknown:
        raise UsageError(f"unknown {section} settings: {sorted(unknown)}")
    ranges = {f.name: f.metadata["range"] for f in dataclasses.fields(kind) if "range" in f.metadata}
    fixed = {k: _checked(f"{section}.{k}", types[k], v, ranges.get(k)) for k, v in values.items()}
    try:
        return kind(**fixed, **given)
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"{section}.{error}") from None


# Allowed values of numeric settings (inclusive; None = unbounded). Not listed: any finite number.
# A generator's settings declare their ranges beside them (`field(metadata={"range": ...})`).
_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{f"model.{k}": (1, 4096) for k in ("base_channels", "max_channels", "embedding_dim")},
    "model.attention_resolutions": (1, 2048),
    "model.landmark_thickness": (0, 64),
    **{f"loss.{k}": (0, None) for k in ("vgg", "face", "adversarial", "feature_matching", "embedding_match", "l1")},
    "train.shots": (1, 1000),
    "train.batch_size": (1, 4096),
    "train.lr_generator": (1e-12, 1.0),
    "train.lr_discriminator": (1e-12, 1.0),
    "train.betas": (0, 0.9999),
    "train.discriminator_steps": (1, 100),
    "train.flip": (0, 1),
    "train.color_jitter": (0, 1),
    "train.scale_jitter": (0, 0.5),
    "train.ema": (0, 0.99999),
    "train.finetune_lr_scale": (1e-6, 1000),
    "train.steps": (1, 10**9),
    "train.seed": (0, 2**63 - 1),
    "train.workers": (0, 256),
    **{f"train.{k}": (1, 10**9) for k in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints")},
}


def _checked(key: str, kind, value, bounds: tuple | None = None):
    """`value` as the setting's type (JSON lists become tuples), or a UsageError naming the setting."""
    import math
    import typing

    def fail(expected: str):
        raise UsageError(f"{key}: must be {expected}, got {json.dumps(value)}")

    def number(v, integer: bool):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            fail("an integer" if integer else "a number")
        if not math.isfinite(v):
            fail("a finite number")
        low, high = bounds or _RANGES.get(key, (None, None))
        if (low is not None and v < low) or (high is not None and v > high):
            bound = f"in {low}..{high}" if low is not None and high is not None else f">= {low}"
            fail(bound)
        return v if integer else float(v)

    if kind is bool:
        return value if isinstance(value, bool) else fail("true or false")
    if kind is str:
        return value if isinstance(value, str) else fail("a string")
    if kind in (int, float):
        return number(value, kind is int)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            fail("a list")
        if args[-1] is not Ellipsis and len(value) != len(args):
            fail(f"a list of {len(args)} numbers")
        if args[0] is str:
            return tuple(v if isinstance(v, str) else fail("a list of strings") for v in value)
        return tuple(number(v, args[0] is int) for v in value)
    return value


PRESETS: dict[str, dict[str, Any]] = {
    # For tests: seconds per step on a CPU.
    "tiny": {
        "model": {
            "resolution": 32,
            "base_channels": 8,
            "max_channels": 32,
            "embedding_dim": 32,
            "attention_resolutions": [16],
            "adain": {"bottleneck_resolution": 8, "bottleneck_blocks": 1},
        },
        "train": {"shots": 2, "batch_size": 2, "workers": 0, "log_every": 1, "sample_every": 2, "checkpoint_every": 2},
    },
    # What a 2-core CPU can train in hours, and animate from at >= 15 frames/s: at 128 px a
    # 16-channel base runs the generator ~3x faster than 32 (bench/bench_animate.py).
    "cpu": {
        "model": {
            "resolution": 128,
            "base_channels": 16,
            "max_channels": 256,
            "embedding_dim": 256,
            "attention_resolutions": [32],
            "adain": {"bottleneck_resolution": 16, "bottleneck_blocks": 3},
        },
        "train": {"shots": 4, "batch_size": 2},
    },
    # The paper's networks at 256 px.
    "paper": {},
    # The warp-guided generator (models/warp.py) with the cpu preset's embedder and discriminator:
    # 128 px, trains on two CPU cores.
    "cpu-warp": {
        "model": {
            "generator": "warp",
            "resolution": 128,
            "base_channels": 16,
            "max_channels": 256,
            "embedding_dim": 256,
            "attention_resolutions": [32],
            "warp": {
                "bottleneck_blocks": 2,
                "motion_channels": 32,
                # The training-free parts as measured best (docs/training-log.md, 2026-12-01 third
                # entry): the spline on the R/2 grid, a sharp per-pixel fusion of the 3 closest
                # shots, and a blend that starts at 98% warped pixels.
                "prior_downsample": 2,
                "fusion_prior": "local",
                "fusion_sigma": 0.2,
                "fusion_temperature": 0.01,
                "blend_bias": 4.0,
            },
        },
        # What the bundled cpu model was shown to learn with in a few thousand CPU steps
        # (docs/training-log.md): higher rates and content weights than the paper's, plus pixel L1.
        "loss": {"vgg": 0.1, "face": 0.02, "l1": 1.0},
        "train": {
            "shots": 4,
            "batch_size": 2,
            "lr_generator": 1e-4,
            "lr_discriminator": 4e-4,
            "workers": 1,
            "log_every": 25,
            "sample_every": 250,
            "checkpoint_every": 250,
        },
    },
    # The warp-guided generator at the paper's 256 px and widths (GPU).
    "paper-warp": {"model": {"generator": "warp", "warp": {"bottleneck_blocks": 3, "motion_channels": 64}}},
}
# The bundled model's: cpu-warp without the dense-motion network (docs/training-log.md, 2026-12-01
# third entry: its refinements earned nothing yet and it is 45% of the generator's work), with
# the fusion gated by agreement with the nearest shot and fine-tuning of psi' alone (2026-12-02),
# and a smoother prior spline (2026-12-02, third entry).
PRESETS["cpu-warp-lean"] = {
    **PRESETS["cpu-warp"],
    "model": {
        **PRESETS["cpu-warp"]["model"],
        "warp": {
            **PRESETS["cpu-warp"]["model"]["warp"],
            "dense_motion": False,
            "fusion_agreement": 0.01,
            "prior_regularization": 0.01,
        },
    },
    "train": {**PRESETS["cpu-warp"]["train"], "finetune_psi_only": True},
}


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """A preset name (`PRESETS`) or a JSON file, then `section.key=value` overrides."""
    if name_or_path in PRESETS:
        config = Config.from_dict(PRESETS[name_or_path])
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"--config {name_or_path}: not a preset ({', '.join(PRESETS)}) nor a file")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            reason = f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "not text"
            raise UsageError(f"{path}: not a JSON config ({reason})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: not a JSON config (expected an object with model, loss, train)")
        try:
            config = Config.from_dict(data)
        except UsageError as error:
            raise UsageError(f"{path}: {error}") from None
    return config.override(overrides or [])
