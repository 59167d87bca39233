"""The `prepare` stage: videos, frame folders and photos -> face crops + 68 landmarks -> shards.

Plan. Inputs are expanded into sources (one clip each), sorted by path, and cut into groups of
`clips_per_shard`; group g becomes `shards/{g:05d}.thshard`. A job `--shard k/n` does the groups
with g % n == k, so n machines sharing a folder build exactly the data set one machine would.

Resume. Each source is prepared by a worker process into its own small work file (a one-clip
shard, or a `.skip.json` with the reason), written atomically. When every source of a group has
a work file, the group's shard is assembled from them in source order and the work files are
deleted. A killed run therefore loses at most the sources in flight, and running the same
command again produces byte for byte the data set an uninterrupted run produces.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from talkinghead.data.shards import SUFFIX, Clip, Shard, ShardWriter, encode_jpeg, write_shard
from talkinghead.errors import TalkingheadError, UsageError
from talkinghead.face.crop import CropConfig, clip_boxes, crop_image, to_crop
from talkinghead.io import remove_stale_temporaries, write_json
from talkinghead.media.video import MediaError, VideoReader, is_image_path, is_video_path, load_image

# Bump when a change to the code changes what `prepare` writes for the same input.
PIPELINE_VERSION = 3  # 3: crop landmarks with the half-pixel term (points.py)


@dataclass(frozen=True)
class Source:
    """One input clip: a video file, a folder of frames, or a single image."""

    path: str
    kind: str  # "video" | "frames" | "image" | "file" (unknown type: sniffed when read)
    identity: str


@dataclass(frozen=True)
class PrepareOptions:
    crop_size: int = 256
    crop_scale: float = 1.8
    stride: int = 1  # keep every n-th decoded frame
    max_frames: int = 0  # at most this many frames per clip, spread over it (0: no limit)
    min_frames: int = 1  # clips with fewer frames with a face are skipped
    min_face: int = 48  # faces smaller than this (landmark extent, source pixels) are ignored
    jpeg_quality: int = 95
    clips_per_shard: int = 256
    landmarker: str = "dlib"

    def crop(self) -> CropConfig:
        return CropConfig(size=self.crop_size, scale=self.crop_scale)


@dataclass
class Summary:
    clips: int = 0
    frames: int = 0
    source_frames: int = 0
    identities: set[str] = field(default_factory=set)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)

    def add_shard(self, shard: Shard) -> None:
        for clip in shard.clips:
            self.clips += 1
            self.frames += clip["num_frames"]
            self.source_frames += clip.get("source_frames", 0)
            self.identities.add(clip["identity"])
            self.notes.extend({"source": clip["source"], "note": note} for note in clip.get("notes", []))
        self.skipped.extend(shard.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "clips_prepared": self.clips,
            "clips_skipped": len(self.skipped),
            "frames": self.frames,
            "identities": len(self.identities),
            "skipped": self.skipped,
            "notes": self.notes,
        }


# -- discovering inputs ----------------------------------------------------------------------

_VOXCELEB_ID = re.compile(r"^id\d+$")
_NUMBERED = re.compile(r"\d+$")


def _identity(path: Path, root: Path, kind: str) -> str:
    """Who is in a clip, from its path.

    VoxCeleb2's `id/video/clip` gives the id. Otherwise a clip's parent folder names it, also
    when that folder is the input itself (`prepare videos/obama`): a folder of clips is one
    person's. Images directly in an input folder keep their own names, since a folder of portraits
    is usually many people; so does a file given by itself.
    """
    if len(path.parts) >= 3 and _VOXCELEB_ID.match(path.parent.parent.name):
        return path.parent.parent.name
    if path == root:
        return path.stem if path.is_file() else path.name
    if path.parent == root and kind == "image":
        return path.stem
    return path.parent.name


def _is_frame_folder(images: list[Path]) -> bool:
    """A folder is one clip's frames when it has 2+ images, all named with a trailing number."""
    return len(images) >= 2 and all(_NUMBERED.search(p.stem) for p in images)


def discover(inputs: list[str | Path]) -> tuple[list[Source], list[dict[str, str]]]:
    """Expand command-line inputs into sorted, de-duplicated sources.

    Returns the sources and the inputs that could not be used (missing paths, empty folders).
    """
    sources: dict[str, Source] = {}
    problems: list[dict[str, str]] = []

    def add(path: Path, kind: str, root: Path) -> None:
        key = str(path)
        sources.setdefault(key, Source(key, kind, _identity(path, root, kind)))

    for raw in inputs:
        root = Path(raw).expanduser().absolute()
        if root.is_file():
            kind = "video" if is_video_path(root) else "image" if is_image_path(root) else "file"
            add(root, kind, root)
        elif root.is_dir():
            found = False
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                folder = Path(folder)
                paths = [folder / f for f in sorted(files) if not f.startswith(".")]
                images = [p for p in paths if is_image_path(p)]
                for p in paths:
                    if is_video_path(p):
                        add(p, "video", root)
                        found = True
                if _is_frame_folder(images):
                    add(folder, "frames", root)
                    found = True
                else:
                    for p in images:
                        add(p, "image", root)
                        found = True
            if not found:
                problems.append({"source": str(root), "reason": "folder has no videos or images"})
        else:
            problems.append({"source": str(root), "reason": "file not found"})
    return [sources[k] for k in sorted(sources)], problems


# -- one source -> one clip --------------------------------------------------------------------


def _frames(source: Source, threads: int) -> Iterator[tuple[int, float, np.ndarray, dict]]:
    """Yield (frame number, seconds, rgb, info) for a source; `info` is filled as reading goes."""
    info: dict[str, Any] = {"fps": 0.0, "truncated": False}
    path = Path(source.path)
    if source.kind == "frames":
        images = sorted((p for p in path.iterdir() if is_image_path(p)), key=lambda p: (len(p.stem), p.stem))
        info["fps"] = 25.0  # frame folders carry no rate; 25 fps is VoxCeleb's
        info["expected_frames"] = len(images)
        for number, image_path in enumerate(images):
            yield number, number / 25.0, load_image(image_path), info
        return
    if source.kind == "image" or (source.kind == "file" and _sniff_image(path)):
        yield 0, 0.0, load_image(path), info
        return
    with VideoReader(path, threads=threads) as reader:
        info["fps"] = reader.info.fps
        info["expected_frames"] = reader.info.frame_count
        for number, seconds, rgb in reader:
            yield number, seconds, rgb, info
        info["truncated"] = reader.truncated


def _sniff_image(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not an image"; the video reader decides next
        return False


def _kept_stride(options: PrepareOptions, expected_frames: int) -> int:
    stride = max(1, options.stride)
    if options.max_frames and expected_frames > options.max_frames * stride:
        stride = -(-expected_frames // options.max_frames)  # spread max_frames over the clip
    return stride


class _Worker:
    """Per-process state: the landmark model and tracker, built once per process and settings."""

    tracker = None
    settings: tuple | None = None
    threads = 0

    @classmethod
    def get(cls, options: PrepareOptions, threads: int):
        settings = (options.landmarker, options.min_face, threads)
        if cls.tracker is None or cls.settings != settings:
            import cv2

            from talkinghead.face.landmarks import make_landmarker
            from talkinghead.face.tracking import FaceTracker

            cv2.setNumThreads(1 if threads == 1 else 0)
            cls.tracker = FaceTracker(make_landmarker(options.landmarker), min_face=options.min_face)
            cls.settings, cls.threads = settings, threads
        return cls.tracker


def prepare_source(source: Source, options: PrepareOptions, threads: int = 0) -> tuple[Clip | None, str]:
    """Prepare one source for a shard (JPEG frames). Returns (clip, "") or (None, reason it was skipped)."""
    return extract_faces(source, options, threads=threads, encode=lambda crop: encode_jpeg(crop, options.jpeg_quality))


def extract_faces(
    source: Source, options: PrepareOptions, *, threads: int = 0, encode=None, tracker=None
) -> tuple[Clip | None, str]:
    """Track the main face of a source and cut its crops.

    Returns (clip, "") or (None, reason). The clip's `frames` are `[S, S, 3] uint8` crops, or
    whatever `encode` makes of each (JPEG bytes for shards). `tracker`: a `FaceTracker` of the
    caller's (the face cropper's); by default this process's worker one.
    """
    tracker = tracker if tracker is not None else _Worker.get(options, threads)
    track = _track(source, options, tracker, threads)  # pass 1: landmarks (tracking needs every frame)
    stats = tracker.stats
    if not track.numbers:
        if stats.small_faces:
            return None, (f"face too small (largest {stats.largest_small_face:.0f} px, minimum {options.min_face} px)")
        return None, "no face found" + (" (video truncated)" if track.info.get("truncated") else "")
    if len(track.numbers) < options.min_frames:
        return None, f"only {len(track.numbers)} frames with a face (minimum {options.min_frames})"
    crop = options.crop()
    landmarks, times = np.stack(track.landmarks), np.array(track.times, np.float32)
    boxes, fixed = clip_boxes(landmarks, times, crop)
    # Pass 2: decode again and cut the crops, now that the (smoothed) boxes are known.
    crops = _cut(source, track.numbers, boxes, crop.size, encode, threads)
    keep = [i for i, c in enumerate(crops) if c is not None]  # a second decode is never shorter, but be safe
    clip = Clip(
        meta={**_clip_meta(source, options, track, stats), "fixed_crop": fixed},
        frames=[crops[i] for i in keep],
        landmarks=to_crop(landmarks[keep], boxes[keep], crop.size),
        boxes=boxes[keep],
        frame_numbers=np.array(track.numbers, np.int32)[keep],
        times=times[keep],
    )
    return clip, ""


@dataclass
class _Track:
    """Pass 1 of `extract_faces`: the kept frames' numbers, times and landmarks (source pixels)."""

    numbers: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # `_frames`' info: fps, truncated
    decoded: int = 0
    stride: int = 1
    height: int = 0
    width: int = 0


def _track(source: Source, options: PrepareOptions, tracker, threads: int) -> _Track:
    tracker.reset()
    track, stride = _Track(), None
    for number, seconds, rgb, track.info in _frames(source, threads):
        if stride is None:
            stride = track.stride = _kept_stride(options, track.info.get("expected_frames", 0))
            track.height, track.width = rgb.shape[:2]
        track.decoded += 1
        points = tracker(rgb)
        if points is not None and number % stride == 0:
            track.numbers.append(number)
            track.times.append(seconds)
            track.landmarks.append(points)
        if options.max_frames and len(track.numbers) >= options.max_frames:
            break
    return track


def _cut(source: Source, numbers: list[int], boxes: np.ndarray, size: int, encode, threads: int) -> list:
    """The crops of frames `numbers` at `boxes` (encoded by `encode` when given); None where a
    frame did not decode the second time."""
    wanted = {n: i for i, n in enumerate(numbers)}
    crops: list = [None] * len(numbers)
    for number, _, rgb, _ in _frames(source, threads):
        i = wanted.get(number)
        if i is not None:
            crop_rgb = crop_image(rgb, boxes[i], size)
            crops[i] = encode(crop_rgb) if encode is not None else crop_rgb
        if number >= numbers[-1]:
            break
    return crops


def _clip_meta(source: Source, options: PrepareOptions, track: _Track, stats) -> dict[str, Any]:
    notes = []
    if stats.max_faces > 1:
        notes.append(f"{stats.max_faces} faces in view; kept the largest, most central one")
    if track.info.get("truncated"):
        notes.append(f"truncated: {track.decoded} frames decoded")
    without_face = track.decoded - stats.tracked
    if without_face and source.kind != "image":
        notes.append(f"no face in {without_face} of {track.decoded} frames (dropped)")
    return {
        "identity": source.identity,
        "source": source.path,
        "kind": source.kind,
        "fps": round(float(track.info.get("fps", 0.0)), 4),
        "width": track.width,
        "height": track.height,
        "source_frames": track.decoded,
        "stride": track.stride,
        "crop_size": options.crop_size,
        "landmarker": options.landmarker,
        "notes": notes,
    }


def _run_one(task: tuple[int, Source, PrepareOptions, str, int]) -> tuple[int, int, str]:
    """Worker entry point: prepare a source and write its work file. Returns (index, frames, reason)."""
    index, source, options, work, threads = task
    work_dir = Path(work)
    try:
        clip, reason = prepare_source(source, options, threads)
    except MediaError as error:
        clip, reason = None, str(error)
    except MemoryError:
        clip, reason = None, "out of memory while reading"
    if clip is None:
        write_json(work_dir / f"{index:08d}.skip.json", {"source": source.path, "reason": reason})
        return index, 0, reason
    write_shard(work_dir / f"{index:08d}{SUFFIX}", [clip])
    return index, len(clip), ""


# -- the job -------------------------------------------------------------------------------------


def parse_job(text: str) -> tuple[int, int]:
    """'k/n' -> (k, n) with 0 <= k < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise UsageError(f"--shard must be k/n with 0 <= k < n, got {text!r}")
    return int(match[1]), int(match[2])


class PrepareError(TalkingheadError):
    """A problem with the whole job (not one input): reported as one line, exit code 2."""

    exit_code = 2


def _plan_file(options: PrepareOptions, sources: list[Source]) -> dict[str, Any]:
    listing = "\n".join(f"{s.kind}\t{s.identity}\t{s.path}" for s in sources).encode()
    return {
        "format": "talkinghead-dataset",
        "pipeline_version": PIPELINE_VERSION,
        "options": asdict(options),
        "num_sources": len(sources),
        "sources_sha256": hashlib.sha256(listing).hexdigest(),
    }


def prepare(
    inputs: list[str | Path],
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    *,
    workers: int = 0,
    job: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Summary:
    """Prepare a data set in `out` (see module docstring). Returns this job's summary."""

    from tqdm import tqdm

    out = Path(out)
    sources, problems = discover(inputs)
    if not sources and problems:
        raise PrepareError(f"{problems[0]['source']}: {problems[0]['reason']}")
    _write_plan(out, _plan_file(options, sources))
    k, n = job
    per_shard = max(1, options.clips_per_shard)
    groups = [g for g in range(-(-len(sources) // per_shard)) if g % n == k]
    shard_dir, work_root = out / "shards", out / "work"
    shard_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(shard_dir)
    summary = Summary(skipped=list(problems) if k == 0 else [])
    workers = workers or os.cpu_count() or 1
    todo, pending = _todo(
        groups, sources, options, per_shard, shard_dir, work_root, summary, threads=1 if workers > 1 else 0
    )
    total = sum(min((g + 1) * per_shard, len(sources)) - g * per_shard for g in groups)
    bar = tqdm(total=total, initial=total - len(todo), unit="clip", disable=not progress, dynamic_ncols=True)
    frames = 0
    start = time.perf_counter()

    def finish_ready_groups() -> None:
        for g in [g for g, left in pending.items() if not left]:
            _assemble(g, sources, per_shard, work_root, shard_dir)
            summary.add_shard(Shard(shard_dir / f"{g:05d}{SUFFIX}"))
            del pending[g]

    try:
        finish_ready_groups()  # groups whose work files all exist already (killed while assembling)
        for index, count, _reason in _map(todo, options, workers):
            pending[index // per_shard].discard(index)
            frames += count
            bar.update(1)
            bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.0f} frames/s", refresh=False)
            finish_ready_groups()
    finally:
        bar.close()
    if work_root.exists() and not any(work_root.iterdir()):
        work_root.rmdir()
    return summary


def _write_plan(out: Path, plan: dict[str, Any]) -> None:
    """Record what the data set is prepared from; refuse a folder prepared from something else."""
    plan_path = out / "prepare.json"
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous != plan:
            changed = [k for k in plan if previous.get(k) != plan[k]]
            raise PrepareError(
                f"{out}: already holds a data set prepared from other inputs or options "
                f"({', '.join(changed)} differ); use another --out or delete it"
            )
    write_json(plan_path, plan)


def _todo(
    groups, sources, options, per_shard: int, shard_dir: Path, work_root: Path, summary: Summary, *, threads: int
):
    """The sources still to prepare, as worker tasks, and the sources each unfinished shard waits
    for; shards already assembled go into `summary`."""
    todo: list[tuple[int, Source, PrepareOptions, str, int]] = []
    pending: dict[int, set[int]] = {}
    for g in groups:
        if (shard_dir / f"{g:05d}{SUFFIX}").exists():
            summary.add_shard(Shard(shard_dir / f"{g:05d}{SUFFIX}"))
            continue
        work = work_root / f"{g:05d}"
        work.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(work)
        pending[g] = set()
        for i in range(g * per_shard, min((g + 1) * per_shard, len(sources))):
            if not (work / f"{i:08d}{SUFFIX}").exists() and not (work / f"{i:08d}.skip.json").exists():
                todo.append((i, sources[i], options, str(work), threads))
                pending[g].add(i)
    return todo, pending


def _map(todo: list, options: PrepareOptions, workers: int) -> Iterator[tuple[int, int, str]]:
    if workers <= 1 or len(todo) <= 1:
        for task in todo:
            yield _run_one(task)
        return
    # spawn: workers start clean (no inherited locks or model state) on every platform.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(todo))) as pool:
        try:
            yield from pool.imap(_run_one, todo, chunksize=1)
        except BaseException:
            pool.terminate()
            raise


def _assemble(group: int, sources: list[Source], per_shard: int, work_root: Path, shard_dir: Path) -> None:
    """Join a group's work files, in source order, into its shard; then drop the work files."""
    work = work_root / f"{group:05d}"
    writer = ShardWriter(shard_dir / f"{group:05d}{SUFFIX}")
    for i in range(group * per_shard, min((group + 1) * per_shard, len(sources))):
        clip_path = work / f"{i:08d}{SUFFIX}"
        if clip_path.exists():
            writer.add_from(Shard(clip_path), 0)
        else:
            writer.skipped.append(json.loads((work / f"{i:08d}.skip.json").read_text()))
    writer.close()
    shutil.rmtree(work)


def format_summary(summary: Summary, elapsed: float) -> str:
    lines = [
        f"prepared {summary.clips} clips ({summary.frames} frames, {len(summary.identities)} identities); "
        f"skipped {len(summary.skipped)}; {elapsed:.1f} s"
    ]
    if len(summary.skipped) <= 20:
        lines += [f"  skipped {item['source']}: {item['reason']}" for item in summary.skipped]
    else:  # the report lists every one; here, how many for each reason
        reasons = Counter(item["reason"] for item in summary.skipped)
        lines += [f"  skipped {count} x {reason}" for reason, count in reasons.most_common()]
    for item in summary.notes[:20]:
        lines.append(f"  note {item['source']}: {item['note']}")
    if len(summary.notes) > 20:
        lines.append(f"  ... and {len(summary.notes) - 20} more notes (see the report)")
    return "\n".join(lines)
