"""`talkinghead evaluate`: the paper's few-shot self-reenactment evaluation (§4, Table 1).

For each clip of a held-out data set and each T: T frames from the first part of the clip are the
shots, a disjoint set of later frames the targets. Every method generates each target from its own
landmarks, and the result is compared with the real frame:

- `ff`, `ft`: the meta-learned model, feed-forward and fine-tuned on the shots (paper §3.3)
- `static`: the first shot, unchanged, for every target (no motion at all)
- `nearest`: the shot whose landmarks are closest to the target's
- `warp`: that shot warped by a thin-plate spline from its landmarks to the target's, with fixed
  points on the crop border (training-free; `warp_to`); the bar every learned model must clear
- `scratch`: the same generator trained only on the shots, from random weights (no meta-learning,
  the paper's Pix2pixHD comparison)
- `warp_bicubic` (asked for by name): `warp` sampled bicubically, as the renderer moves the shots'
  pixels at S; with `warp` (bilinear) it separates what the model adds from the sampling kernel

Per target: SSIM, PSNR, LPIPS, CSIM (identity, to the real target), landmark error (of the
generated frame against the target's landmarks) and `faces` (1 when dlib finds a face in the
generated frame, else 0: a blank, saturated or face-less frame scores 0); per method and T: FID
over all targets, and `faces_min`, the lowest per-clip face rate (did any avatar collapse).

Output folder: `clips/<n>.json` and `<n>.npz` per clip (a rerun skips finished clips),
`results.json`, `table.md`, `plots/<metric>.png` (each metric against T),
`comparisons/<n>.png` (shots | target | each method). Results are nested by method, then T (a
string in JSON): `results["methods"]["ft"]["8"]["lpips"]`; a clip's Inception features are npz
arrays named `<method>.<T>` (`real.<T>` for the real targets).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from talkinghead.errors import UsageError, check_input_file
from talkinghead.face.points import rescale_points, to_unit
from talkinghead.io import atomic_path, write_json

if TYPE_CHECKING:
    from talkinghead.inference.fitting import FitOptions

METHODS = ("ff", "ft", "static", "nearest", "warp", "scratch", "ff_upscaled", "warp_bicubic")
METRICS = ("ssim", "psnr", "lpips", "csim", "landmark_nme", "faces", "sharpness")
MOUTH_METRICS = (
    "mouth_lpips", "mouth_lpips_open", "mouth_lpips_closed", "mouth_opening_error", "teeth", "mouth_sharpness_open",
)  # fmt: skip


@dataclass(frozen=True)
class EvalOptions:
    shots: tuple[int, ...] = (1, 8, 32)
    cross: tuple[str, ...] = ()  # portraits for the cross-identity mode
    # All but ff_upscaled, which only means something with `size`, and warp_bicubic (docs/evaluation.md)
    methods: tuple[str, ...] = METHODS[:6]
    targets: int = 32
    steps: int = 100  # fine-tuning steps for `ft` and training steps for `scratch`
    epochs: float = 0  # when > 0, instead of `steps`: passes over the T shots (fitting.finetune_steps)
    max_clips: int = 0  # 0: all
    identities: tuple[str, ...] = ()
    seed: int = 0
    size: int = 0  # the frames' side that every method is scored at; 0: the model's resolution


def split_clip(num_frames: int, shots: int, targets: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Shot frames spread over the first part of a clip, target frames over the rest."""
    cut = max(shots, num_frames // 2)
    if cut >= num_frames:
        return None
    shot_index = np.linspace(0, cut - 1, shots).round().astype(int)
    target_index = np.unique(np.linspace(cut, num_frames - 1, min(targets, num_frames - cut)).round().astype(int))
    return shot_index, target_index


def load_split(data, clip: int, shots: int, targets: int, size: int):
    """(shot frames, their landmarks, target frames, their landmarks) of one clip at `size` px,
    as `split_clip` divides it; None when the clip is too short."""
    split = split_clip(data.num_frames(clip), shots, targets)
    if split is None:
        return None
    landmarks = rescale_points(data.landmarks(clip), data.meta(clip)["crop_size"], size)
    frames = [_resized(np.stack([data.frame(clip, int(i)) for i in index]), size) for index in split]
    return frames[0], landmarks[split[0]], frames[1], landmarks[split[1]]


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1] == size:
        return frames
    interpolation = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


def _nearest_shots(shot_landmarks: np.ndarray, target_landmarks: np.ndarray) -> np.ndarray:
    """Index of the shot whose (centred) landmarks are closest to each target's."""
    s = shot_landmarks - shot_landmarks.mean(1, keepdims=True)
    t = target_landmarks - target_landmarks.mean(1, keepdims=True)
    distance = np.linalg.norm(t[:, None] - s[None], axis=-1).mean(-1)  # [targets, shots]
    return distance.argmin(1)


def warp_to(frames: np.ndarray, points: np.ndarray, target_points: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """`[N, S, S, 3] uint8` frames with landmarks `[N, 68, 2]` warped so that their landmarks land
    on `target_points` `[N, 68, 2]` (thin-plate spline over the landmarks and border anchors),
    sampled by `mode` ("bilinear" or "bicubic")."""
    from talkinghead.media.images import to_tensor, to_uint8
    from talkinghead.models.flow import resize_grid, tps_grid, warp

    size = frames.shape[1]
    out = []
    for start in range(0, len(frames), 16):
        part = slice(start, start + 16)
        # The spline is smooth: solved on a half-size grid and interpolated (4x fewer kernel terms).
        grid = tps_grid(torch.from_numpy(points[part]), torch.from_numpy(target_points[part]), size, out_size=size // 2)
        out.append(to_uint8(warp(to_tensor(frames[part]), resize_grid(grid, size), mode)))
    return np.concatenate(out)


class Evaluator:
    def __init__(self, model: str | Path, options: EvalOptions, progress: bool = False):
        from talkinghead.checkpoint import load_model
        from talkinghead.evaluation.metrics import CSIM, FID, LPIPS

        self.model_path, self.options, self.progress = Path(model), options, progress
        self.model = load_model(self.model_path)
        self.resolution = self.model.resolution  # R: what the networks see
        self.size = options.size or self.resolution  # what every method is scored at
        self.lpips, self.csim, self.fid = LPIPS(), CSIM(), FID()

    def _scratch_model(self, seed: int):
        from talkinghead.model import build_model

        torch.manual_seed(seed)
        return build_model(self.model.config, num_videos=1)

    def fit_options(self, method: str) -> "FitOptions":
        """Fine-tuning (`ft`) or training (`scratch`) settings; feed-forward for the others."""
        from talkinghead.inference.fitting import FitOptions

        o = self.options
        if method not in ("ft", "scratch"):  # ff, ff_upscaled
            return FitOptions(seed=o.seed)
        return FitOptions(steps=0 if o.epochs else o.steps, epochs=o.epochs, seed=o.seed)

    def steps(self, method: str, shots: int) -> int:
        """Fine-tuning (`ft`) or training (`scratch`) steps at T = `shots`."""
        return self.fit_options(method).total_steps(shots)

    def generate(
        self, method: str, shots: np.ndarray, shot_lm: np.ndarray, target_lm: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        """`[targets, S, S, 3] uint8` frames made by one method at the scoring size S (shots and
        landmarks given at S), and the fitting's notes (what the divergence guard did). The model
        sees its shots at its resolution R; at S > R it moves the shots' pixels at S (render.py),
        and `ff_upscaled` is its frame at R enlarged."""
        from talkinghead.inference.fitting import fit_shots
        from talkinghead.inference.render import upscale
        from talkinghead.media.images import to_tensor, to_uint8

        if method == "static":
            return np.repeat(shots[:1], len(target_lm), axis=0), []
        if method == "nearest":
            return shots[_nearest_shots(shot_lm, target_lm)], []
        if method in ("warp", "warp_bicubic"):
            nearest, mode = _nearest_shots(shot_lm, target_lm), "bicubic" if method == "warp_bicubic" else "bilinear"
            points = shot_lm[nearest].astype(np.float32), target_lm.astype(np.float32)
            return warp_to(shots[nearest], *points, mode=mode), []
        model = self._scratch_model(self.options.seed) if method == "scratch" else self.model
        R, S = self.resolution, self.size
        small, small_lm = _resized(shots, R), rescale_points(shot_lm, S, R).astype(np.float32)
        detail = shots if S > R and method != "ff_upscaled" else None
        avatar = fit_shots(model, small, small_lm, self.fit_options(method), detail=detail, progress=self.progress)
        driving = rescale_points(target_lm, S, R).astype(np.float32)
        if method == "ff_upscaled":
            frames = np.stack(list(avatar.generate(driving)))
            return to_uint8(upscale(to_tensor(frames), S)) if S != R else frames, avatar.notes
        return np.stack(list(avatar.generate(driving))), avatar.notes

    def clip(self, data, clip: int) -> tuple[dict, dict[str, dict[str, np.ndarray]], np.ndarray | None]:
        """Mean metrics `[method][T]`; Inception features `[method or "real"][T]`; the comparison image."""
        from talkinghead.media.images import to_tensor

        meta = data.meta(clip)
        result: dict = {"clip": clip, "identity": meta["identity"], "source": meta["source"], "methods": {}}
        features: dict[str, dict[str, np.ndarray]] = {}
        rows = []
        for T in self.options.shots:
            split = load_split(data, clip, T, self.options.targets, self.size)
            if split is None:
                continue
            shots, shot_lm, targets, target_lm = split
            real = to_tensor(targets)
            features.setdefault("real", {})[str(T)] = self.fid.inception_features(real)
            identities = [self.csim.embed(t) for t in _csim_size(targets)]  # the real targets', once for all methods
            row = [shots[: min(T, 4)].transpose(1, 0, 2, 3).reshape(self.size, -1, 3), targets[0]]
            for method in self.options.methods:
                fake_frames, notes = self.generate(method, shots, shot_lm, target_lm)
                values = self.frame_metrics(fake_frames, target_lm, identities, real=real, real_frames=targets)
                result["methods"].setdefault(method, {})[str(T)] = {k: _mean(v) for k, v in values.items()} | {
                    "targets": len(targets),
                    "teeth_targets": int(np.isfinite(values["teeth"]).sum()),  # real mouth showing teeth
                    "steps": self.steps(method, T),
                    "notes": notes,
                }
                features.setdefault(method, {})[str(T)] = self.fid.inception_features(to_tensor(fake_frames))
                row.append(fake_frames[0])
            rows.append(np.concatenate(row, axis=1))
        width = max((r.shape[1] for r in rows), default=0)
        image = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]) if rows else None
        return result, features, image

    def frame_metrics(
        self,
        frames: np.ndarray,
        landmarks: np.ndarray,
        identities: list,
        *,
        real: torch.Tensor | None = None,
        real_frames: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Per generated frame (`[N, S, S, 3] uint8`): CSIM to `identities` (N embeddings of 128 px
        faces, `_csim_size`; None where no face), the landmark error against `landmarks`
        `[N, 68, 2]` (crop pixels), `faces` (1 where dlib finds one, else 0) and, given the real
        frames (`real` `[N, 3, S, S]` in [-1, 1], `real_frames` the same as uint8), SSIM, PSNR,
        LPIPS and `sharpness`: the variance of the Laplacian inside the face box (of `landmarks`)
        over the real frame's. One face detection per frame serves CSIM and the landmark error."""
        from talkinghead.evaluation.metrics import cosine, face_points, landmark_nme, psnr, ssim
        from talkinghead.media.images import to_tensor

        found = [face_points(f, self.csim.tracker) for f in frames]
        scale = 128 / frames.shape[2]
        values = {}
        if real is not None:
            fake = to_tensor(frames)
            values.update(
                ssim=ssim(real, fake).numpy(), psnr=psnr(real, fake).numpy(), lpips=self.lpips(real, fake).numpy()
            )
        values["csim"] = np.array(
            [
                cosine(e, self.csim.embed_face(f, None if p is None else p * scale))
                for e, f, p in zip(identities, _csim_size(frames), found)
            ]
        )
        values["landmark_nme"] = landmark_nme(frames, landmarks, found=found)
        values["faces"] = np.isfinite(values["landmark_nme"]).astype(np.float64)  # NaN: no face found
        if real_frames is not None:
            from talkinghead.evaluation.mouth import mouth_metrics

            values["sharpness"] = np.array(
                [face_detail(f, p) / max(face_detail(r, p), 1e-6) for f, r, p in zip(frames, real_frames, landmarks)]
            )
            values.update(mouth_metrics(frames, real_frames, landmarks, found, self.lpips))
        return values


def face_detail(rgb: np.ndarray, points: np.ndarray) -> float:
    """`box_detail` inside the box of a frame's `[68, 2]` landmarks: how much fine detail the face
    holds (more when sharper)."""
    from talkinghead.evaluation.metrics import box_detail

    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int), np.ceil(points.max(0)).astype(int)
    return box_detail(rgb, (x0, y0, x1, y1))


def _csim_size(frames: np.ndarray) -> np.ndarray:
    """Frames at the 128 px CSIM is measured at, whatever the model's size (bicubic)."""
    if frames.shape[1] == 128:
        return frames
    return np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_CUBIC) for f in frames])


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def evaluate(
    model: str | Path,
    data_dir: str | Path,
    out: str | Path,
    options: EvalOptions = EvalOptions(),
    *,
    progress: bool = True,
) -> dict:
    """Run (or resume) an evaluation; returns the summary written to `results.json`."""
    from PIL import Image
    from tqdm import tqdm

    from talkinghead.data import FaceDataset

    out = Path(out)
    data = FaceDataset(data_dir)
    clips = [c for c in range(len(data)) if not options.identities or data.meta(c)["identity"] in options.identities]
    if options.max_clips:
        clips = clips[: options.max_clips]
    _check_options(data, clips, options, data_dir)
    config = {"model": str(model), "data": str(data_dir), "results_format": RESULTS_FORMAT, **asdict(options)}
    _check_resume(out, config)
    evaluator = Evaluator(model, options, progress)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "comparisons").mkdir(exist_ok=True)
    write_json(out / "config.json", config)
    for clip in tqdm(clips, unit="clip", desc="evaluating", disable=not progress):
        record = out / "clips" / f"{clip:05d}.json"
        if record.exists():  # resumable: finished clips are kept
            continue
        result, features, image = evaluator.clip(data, clip)
        with atomic_path(out / "clips" / f"{clip:05d}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **{f"{name}.{T}": v for name, per_T in features.items() for T, v in per_T.items()})
        if image is not None:
            Image.fromarray(image).save(out / "comparisons" / f"{clip:05d}.png")
        write_json(record, result)  # last: the clip counts as done only when everything is written
    summary = _summarise(out, clips, options, evaluator.size)
    if options.cross:
        summary["cross"] = cross_identity(evaluator, data, clips, options, out, progress)
    write_json(out / "results.json", summary)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table(summary, options))
    plot(summary, options, out / "plots")
    return summary


def _check_options(data, clips: list[int], options: EvalOptions, data_dir) -> None:
    """Refuse, before any work, what would fail later or give an empty table."""
    unknown = sorted(set(options.identities) - {data.meta(c)["identity"] for c in range(len(data))})
    if unknown:
        raise UsageError(f"--identities: not in {data_dir}: {', '.join(unknown)}")
    if not clips:
        raise UsageError(f"{data_dir}: no clips to evaluate")
    smallest = min(data.meta(c)["crop_size"] for c in clips)
    if options.size > smallest:
        raise UsageError(
            f"--size {options.size}: {data_dir} holds {smallest} px crops; score at their size or less "
            f"(prepare the data set at --size {options.size} or more)"
        )
    longest = max(data.num_frames(c) for c in clips)
    too_many = [T for T in options.shots if split_clip(longest, T, options.targets) is None]
    if too_many:
        raise UsageError(
            f"--shots {too_many[0]}: the clips are too short (the longest has {longest} frames; "
            f"shots and targets must fit in it, so T < {longest})"
        )
    if options.cross:
        from talkinghead.inference.cropper import FaceCropper

        if not {"ff", "ft", "warp"} & set(options.methods):
            raise UsageError("--cross: needs a method that drives the portraits (ff, ft or warp in --methods)")
        for portrait in options.cross:
            check_input_file(portrait, "portrait", option="--cross")
            FaceCropper(64)([portrait], shots=1)  # a FitError naming the file when it has no usable face


# Settings that change a clip's numbers (or how they are stored): a rerun into the same folder
# must keep them.
PROTOCOL = ("model", "data", "shots", "methods", "targets", "steps", "epochs", "seed", "size", "results_format")
RESULTS_FORMAT = 5  # 2: nested [method][T]; 3: the face rate; 4: sharpness, at a size; 5: the mouth


def _check_resume(out: Path, config: dict) -> None:
    """Refuse to resume into a folder whose finished clips were made with another protocol."""
    path = out / "config.json"
    if not path.exists() or not any((out / "clips").glob("*.json")):
        return
    old = asdict(EvalOptions()) | json.loads(path.read_text())  # settings added later: their defaults
    changed = [k for k in PROTOCOL if json.dumps(old.get(k)) != json.dumps(config[k])]
    if changed:
        settings = ", ".join(f"{k} {old.get(k)} -> {config[k]}" for k in changed)
        raise UsageError(f"{out}: its finished clips were made with other settings ({settings}); use a new --out")


def plot(summary: dict, options: EvalOptions, folder: Path) -> None:
    """One PNG per metric: its value against T (log scale), a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for metric in ("fid", *METRICS):
        figure, axes = plt.subplots(figsize=(4.5, 3.2), dpi=100)
        for method in options.methods:
            points = [(T, _entry(summary, method, T).get(metric)) for T in options.shots]
            points = [(T, v) for T, v in points if v is not None]
            if points:
                axes.plot(*zip(*points), marker="o", label=method)
        axes.set_xscale("log")
        axes.minorticks_off()
        axes.set_xticks(list(options.shots), [str(T) for T in options.shots])
        axes.set_xlabel("shots T")
        axes.set_title(metric)
        if axes.lines:
            axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / f"{metric}.png")
        plt.close(figure)


def cross_identity(
    evaluator: Evaluator, data, clips: list[int], options: EvalOptions, out: Path, progress: bool
) -> dict:
    """Portraits driven by the clips' landmarks (relative retargeting, as `animate` does for
    another person): FID against the clips' real frames, CSIM to the portrait, and the landmark
    error of the generated frames against the retargeted landmarks (does the face, and the mouth,
    move as asked). `ff`, `ft` and the `warp` baseline (the portrait warped to those landmarks), at
    the model's resolution."""
    from tqdm import tqdm

    from talkinghead.evaluation.metrics import frechet_distance

    real = np.concatenate([_load_features(out, c)["real"][str(options.shots[0])] for c in clips])
    results: dict = {}
    for mode in [m for m in ("ff", "ft", "warp") if m in options.methods]:
        runs = {
            str(portrait): _drive_portrait(evaluator, mode, portrait, data, clips, options, progress)  # as given
            for portrait in tqdm(options.cross, unit="portrait", desc=f"cross-identity {mode}", disable=not progress)
        }
        faces = {name: float(run["faces"].mean()) for name, run in runs.items()}
        results[mode] = {
            "fid": frechet_distance(real, np.concatenate([run["features"] for run in runs.values()])),
            "csim_to_source": _mean(np.concatenate([run["csim"] for run in runs.values()])),
            "landmark_nme": _mean(np.concatenate([run["landmark_nme"] for run in runs.values()])),
            "faces": float(np.mean(list(faces.values()))),
            "faces_min": min(faces.values()),  # the portrait whose frames had a face least often
            "faces_per_portrait": faces,
            "portraits": len(options.cross),
        }
    return results


def _drive_portrait(
    evaluator: Evaluator, mode: str, portrait: str, data, clips: list[int], options: EvalOptions, progress: bool
) -> dict[str, np.ndarray]:
    """One portrait driven by every clip with `mode`: the frame metrics (`Evaluator.frame_metrics`
    against the portrait's identity and the retargeted landmarks) and Inception features."""
    from talkinghead.inference.cropper import FaceCropper
    from talkinghead.inference.fitting import fit_avatar
    from talkinghead.inference.motion import Motion
    from talkinghead.media.images import to_tensor

    if mode == "warp":  # the portrait's crop and landmarks are all it needs
        found, avatar = FaceCropper(evaluator.resolution)([portrait], shots=1), None
        shot, points = found.crops[0], found.landmarks[0]
    else:
        options_ = evaluator.fit_options(mode)
        avatar = fit_avatar([portrait], model=evaluator.model, options=options_, progress=progress)
        shot, points = avatar.shots[0], avatar.shot_landmarks[0]
    identity = evaluator.csim.embed(_csim_size(shot[None])[0])
    runs = []
    for clip in clips:
        every = max(1, data.num_frames(clip) // options.targets)
        landmarks = data.landmarks(clip)[::every][: options.targets]
        motion = Motion(to_unit(landmarks, data.meta(clip)["crop_size"]), 25.0, np.ones(len(landmarks), bool))
        driving = motion.retarget(points, evaluator.resolution, mode="relative")
        if avatar is None:
            count = len(driving)
            frames = warp_to(np.repeat(shot[None], count, 0), np.repeat(points[None], count, 0), driving)
        else:
            frames = np.stack(list(avatar.generate(driving)))
        values = evaluator.frame_metrics(frames, driving, [identity] * len(frames))
        values["features"] = evaluator.fid.inception_features(to_tensor(frames))
        runs.append(values)
    return {key: np.concatenate([run[key] for run in runs]) for key in runs[0]}


def _entry(summary: dict, method: str, T: int) -> dict:
    """A method's summary at T, or {} when it did not run."""
    return summary["methods"].get(method, {}).get(str(T), {})


def _load_features(out: Path, clip: int) -> dict[str, dict[str, np.ndarray]]:
    """A clip's Inception features, `[method or "real"][T]` (the npz is closed on return)."""
    features: dict[str, dict[str, np.ndarray]] = {}
    with np.load(out / "clips" / f"{clip:05d}.npz") as f:
        for key in f.files:
            name, _, T = key.rpartition(".")
            features.setdefault(name, {})[T] = f[key]
    return features


def _summarise(out: Path, clips: list[int], options: EvalOptions, size: int) -> dict:
    """Means per method and T over clips, and FID over all their targets."""
    from talkinghead.evaluation.metrics import frechet_distance

    per_clip = [json.loads((out / "clips" / f"{c:05d}.json").read_text()) for c in clips]
    features: dict[str, dict[str, list[np.ndarray]]] = {}
    for c in clips:  # each clip's feature file read once
        for name, per_T in _load_features(out, c).items():
            for T, values in per_T.items():
                features.setdefault(name, {}).setdefault(T, []).append(values)
    summary: dict = {"clips": len(clips), "size": size, "methods": {}}
    for method in options.methods:
        for T in map(str, options.shots):
            rows = [r["methods"][method][T] for r in per_clip if T in r["methods"].get(method, {})]
            if not rows:
                continue
            entry = {m: _mean([r[m] for r in rows if r.get(m) is not None]) for m in (*METRICS, *MOUTH_METRICS)}
            # Teeth: over all targets whose real mouth shows them, not a mean of clips' shares.
            entry["teeth_targets"] = sum(r.get("teeth_targets", 0) for r in rows)
            shown = sum(r["teeth"] * r["teeth_targets"] for r in rows if r.get("teeth") is not None)
            entry["teeth"] = shown / entry["teeth_targets"] if entry["teeth_targets"] else None
            entry["faces_min"] = min(r["faces"] for r in rows)
            real, fake = features.get("real", {}).get(T, []), features.get(method, {}).get(T, [])
            enough = real and fake and len(np.concatenate(real)) > 1
            entry["fid"] = frechet_distance(np.concatenate(real), np.concatenate(fake)) if enough else None
            entry["clips"], entry["steps"] = len(rows), rows[0].get("steps")
            entry["guarded"] = sum(bool(r.get("notes")) for r in rows)  # clips where fitting's guard stepped in
            summary["methods"].setdefault(method, {})[T] = entry
    summary["per_clip"] = per_clip
    return summary


def table(summary: dict, options: EvalOptions) -> str:
    """A markdown table laid out like the paper's Table 1: method x T rows, metric columns."""

    def cell(value, form="{:.3f}") -> str:
        return "—" if value is None else form.format(value)

    names = {
        "ff": "meta-learned, feed-forward",
        "ft": "meta-learned, fine-tuned",
        "static": "static source",
        "nearest": "nearest shot",
        "warp": "nearest shot warped to the target's landmarks",
        "scratch": "from scratch (no meta-learning)",
        "ff_upscaled": "meta-learned, feed-forward, at the model's size and upscaled",
        "warp_bicubic": "nearest shot warped, sampled bicubically as the renderer does",
    }
    lines = [
        "| method | T | FID ↓ | SSIM ↑ | CSIM ↑ | LPIPS ↓ | landmark error ↓ | sharpness ↑ | face found (worst clip) ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in options.methods:
        for T in options.shots:
            e = _entry(summary, method, T) or None
            if e is None:
                continue
            lines.append(
                f"| {names[method]} | {T} | {cell(e['fid'], '{:.1f}')} | {cell(e['ssim'])} | {cell(e['csim'])} | {cell(e['lpips'])} | {cell(e['landmark_nme'])} | {cell(e.get('sharpness'), '{:.2f}')} | {_faces(e)} |"
            )
    mouth = [
        "| method | T | mouth LPIPS ↓ | open mouths ↓ | closed mouths ↓ | mouth opening error ↓ | teeth shown ↑ "
        "| open mouths' sharpness ↑ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in options.methods:
        for T in options.shots:
            if (e := _entry(summary, method, T)) and e.get("mouth_lpips") is not None:
                teeth = "—" if e.get("teeth") is None else f"{e['teeth']:.0%} of {e['teeth_targets']}"
                mouth.append(
                    f"| {names[method]} | {T} | {cell(e['mouth_lpips'])} | {cell(e['mouth_lpips_open'])} | "
                    f"{cell(e['mouth_lpips_closed'])} | {cell(e['mouth_opening_error'])} | {teeth} | "
                    f"{cell(e.get('mouth_sharpness_open'), '{:.2f}')} |"
                )
    guarded = [
        f"{names[method]}, T = {T}: {e['guarded']}"
        for method in options.methods
        for T in options.shots
        if (e := _entry(summary, method, T)) and e.get("guarded")
    ]
    text = (
        "\n".join(lines)
        + f"\n\n{summary['clips']} clips at {summary.get('size', '?')} px; landmark error = mean landmark distance / "
        "outer-eye-corner distance; sharpness = the variance of the Laplacian in the face box over the real frame's.\n"
    )
    text += (
        "\nThe mouth (box of landmarks 48-67 padded 30 %, at 64 px; open: inner-lip gap over mouth width "
        "above 0.1; teeth shown: of the targets whose real mouth shows teeth; open mouths' sharpness: the variance "
        "of the Laplacian in the mouth box over the real frame's, docs/evaluation.md):\n\n" + "\n".join(mouth) + "\n"
    )
    if guarded:
        text += (
            "\nClips where fine-tuning's guard went back to an earlier state (their notes in clips/*.json): "
            + "; ".join(guarded)
            + ".\n"
        )
    if summary.get("cross"):
        text += "\nCross-identity (portraits driven by the clips, relative retargeting):\n\n"
        text += (
            "| method | FID ↓ | CSIM to source ↑ | landmark error to the retargeted landmarks ↓ "
            "| face found (worst portrait) ↑ |\n|---|---|---|---|---|\n"
        )
        for mode, e in summary["cross"].items():
            csim = "—" if e["csim_to_source"] is None else f"{e['csim_to_source']:.3f}"
            error = "—" if e.get("landmark_nme") is None else f"{e['landmark_nme']:.3f}"
            text += f"| {names[mode]} | {e['fid']:.1f} | {csim} | {error} | {_faces(e)} |\n"
    return text


def _faces(entry: dict) -> str:
    """The face rate over all generated frames and, in brackets, the lowest one of a clip or portrait."""
    if entry.get("faces") is None:
        return "—"
    return f"{entry['faces']:.1%} ({entry['faces_min']:.0%})"
