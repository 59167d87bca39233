"""The data set format: a few large shard files, each self-describing, read by random access.

A shard (`*.thshard`) holds the prepared clips of one group of inputs:

    b"THSHARD1"                                   magic
    frame bytes                                   JPEG files, back to back
    arrays                                        raw little-endian arrays, 64-byte aligned
    header (UTF-8 JSON)                           format version, clips, array table
    u64 header offset, u64 header length, b"THSHARD1"

The header sits at the end so a shard can be written in one streaming pass without holding its
frames in memory. Arrays, indexed by frame (N = all frames of the shard):

    frame_offsets  int64   [N + 1]     byte range of frame i: offsets[i] .. offsets[i + 1]
    landmarks      float32 [N, 68, 2]  in crop pixels (x, y; pixel centres at integers)
    boxes          float32 [N, 3]      crop box in the source frame: x0, y0, side (see crop.py)
    frame_numbers  int32   [N]         frame number in the source video
    times          float32 [N]         seconds from the clip's first decoded frame

Each clip in the header has `first_frame` and `num_frames` into those arrays plus its metadata
(identity, source path, fps, size of the source, crop size, notes). The header also lists the
inputs of the group that were skipped, with the reason. Reading memory-maps the file: opening a
shard reads only its header, and any frame of any clip is one slice plus one JPEG decode.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import cv2
import numpy as np

from talkinghead.errors import TalkingheadError
from talkinghead.io import atomic_path

MAGIC = b"THSHARD1"
FORMAT_VERSION = 1
SUFFIX = ".thshard"
_TRAILER = struct.Struct("<QQ8s")
_ALIGN = 64

ARRAYS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    # name: (dtype, shape of one frame's entry)
    "landmarks": (np.dtype("<f4"), (68, 2)),
    "boxes": (np.dtype("<f4"), (3,)),
    "frame_numbers": (np.dtype("<i4"), ()),
    "times": (np.dtype("<f4"), ()),
}


class ShardError(TalkingheadError):
    """A data set folder or shard file that is not a valid one (exit code 2, like a bad --data)."""

    exit_code = 2


@dataclass
class Clip:
    """One prepared clip, as written to and read from a shard.

    `frames` holds JPEG bytes (one per frame); the arrays are described in the module docstring.
    """

    meta: dict[str, Any]
    frames: list[bytes]
    landmarks: np.ndarray
    boxes: np.ndarray
    frame_numbers: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAYS}


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    """JPEG bytes -> `[H, W, 3] uint8 RGB`."""
    buffer = np.frombuffer(data, np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ShardError("corrupt frame (JPEG does not decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class _Part:
    """A run of frame bytes to copy into a shard: from memory or from a byte range of a file."""

    data: bytes | None = None
    path: Path | None = None
    start: int = 0
    length: int = 0


@dataclass
class ShardWriter:
    """Collect clips (in memory or as references into other shards) and write one shard file.

    The file appears atomically at `path` on `close()`; an interrupted write leaves nothing.
    """

    path: Path
    skipped: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._clips: list[dict[str, Any]] = []
        self._parts: list[_Part] = []
        self._lengths: list[np.ndarray] = []
        self._arrays: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
        self._num_frames = 0

    def add(self, clip: Clip) -> None:
        lengths = np.array([len(f) for f in clip.frames], np.int64)
        self._add(clip.meta, clip.arrays(), lengths, [_Part(data=b"".join(clip.frames))])

    def add_from(self, shard: "Shard", index: int) -> None:
        """Copy clip `index` of another shard without decoding its frames."""
        meta = shard.clips[index]
        first, count = meta["first_frame"], meta["num_frames"]
        offsets = shard.frame_offsets[first : first + count + 1]
        arrays = {name: np.asarray(getattr(shard, name)[first : first + count]) for name in ARRAYS}
        part = _Part(path=shard.path, start=shard.data_start + int(offsets[0]), length=int(offsets[-1] - offsets[0]))
        self._add(meta, arrays, np.diff(offsets), [part])

    def _add(self, meta: dict, arrays: dict[str, np.ndarray], lengths: np.ndarray, parts: list[_Part]) -> None:
        count = len(lengths)
        for name, (dtype, shape) in ARRAYS.items():
            array = np.asarray(arrays[name], dtype=dtype)
            if array.shape != (count, *shape):
                raise ValueError(f"clip array {name} has shape {array.shape}, expected {(count, *shape)}")
            self._arrays[name].append(array)
        meta = {k: v for k, v in meta.items() if k not in ("first_frame", "num_frames")}
        self._clips.append({**meta, "first_frame": self._num_frames, "num_frames": count})
        self._lengths.append(lengths)
        self._parts.extend(parts)
        self._num_frames += count

    def close(self) -> Path:
        with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
            out.write(MAGIC)
            for part in self._parts:
                _copy_part(part, out)
            lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
            table: dict[str, Any] = {}
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("<i8")
            for name, array in [("frame_offsets", offsets)] + [
                (name, _concat(self._arrays[name], *ARRAYS[name])) for name in ARRAYS
            ]:
                out.write(b"\0" * (-out.tell() % _ALIGN))
                table[name] = {"offset": out.tell(), "dtype": array.dtype.str, "shape": list(array.shape)}
                out.write(np.ascontiguousarray(array).tobytes())
            header = {
                "format": "talkinghead-shard",
                "version": FORMAT_VERSION,
                "num_frames": self._num_frames,
                "clips": self._clips,
                "skipped": self.skipped,
                "arrays": table,
                **self.extra,
            }
            blob = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
            start = out.tell()
            out.write(blob)
            out.write(_TRAILER.pack(start, len(blob), MAGIC))
            out.flush()
            os.fsync(out.fileno())
        return self.path


def _concat(arrays: list[np.ndarray], dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros((0, *shape), dtype)


def _copy_part(part: _Part, out: BinaryIO) -> None:
    if part.data is not None:
        out.write(part.data)
        return
    with open(part.path, "rb") as src:
        src.seek(part.start)
        remaining = part.length
        while remaining:
            chunk = src.read(min(remaining, 1 << 22))
            if not chunk:
                raise ShardError(f"{part.path}: shorter than its header says")
            out.write(chunk)
            remaining -= len(chunk)


class Shard:
    """A shard opened for random access (memory-mapped; safe to use from DataLoader workers)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as error:
            raise ShardError(f"{self.path}: cannot open ({error})") from None
        size = len(self._map)
        if size < len(MAGIC) + _TRAILER.size or bytes(self._map[: len(MAGIC)]) != MAGIC:
            raise ShardError(f"{self.path}: not a talkinghead shard")
        start, length, magic = _TRAILER.unpack(bytes(self._map[size - _TRAILER.size :]))
        if magic != MAGIC or start + length > size - _TRAILER.size:
            raise ShardError(f"{self.path}: truncated shard")
        self.header: dict[str, Any] = json.loads(bytes(self._map[start : start + length]))
        if self.header.get("version") != FORMAT_VERSION:
            raise ShardError(f"{self.path}: shard format version {self.header.get('version')} is not supported")
        self.clips: list[dict[str, Any]] = self.header["clips"]
        self.skipped: list[dict[str, Any]] = self.header.get("skipped", [])
        self.data_start = len(MAGIC)
        for name, spec in self.header["arrays"].items():
            count = int(np.prod(spec["shape"]))
            dtype = np.dtype(spec["dtype"])
            array = np.frombuffer(self._map, dtype=dtype, count=count, offset=spec["offset"])
            setattr(self, name, array.reshape(spec["shape"]))

    # Arrays set from the header (declared for readers and type checkers).
    frame_offsets: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    frame_numbers: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.clips)

    def frame_bytes(self, clip: int, frame: int) -> memoryview:
        index = self._frame_index(clip, frame)
        start = self.data_start + int(self.frame_offsets[index])
        end = self.data_start + int(self.frame_offsets[index + 1])
        return memoryview(self._map[start:end])

    def frame(self, clip: int, frame: int) -> np.ndarray:
        """Frame `frame` of clip `clip` as `[S, S, 3] uint8 RGB`."""
        return decode_jpeg(self.frame_bytes(clip, frame))

    def clip_landmarks(self, clip: int) -> np.ndarray:
        """`[F, 68, 2] float32` landmarks in crop pixels for every frame of the clip."""
        meta = self.clips[clip]
        return np.asarray(self.landmarks[meta["first_frame"] : meta["first_frame"] + meta["num_frames"]])

    def clip_array(self, clip: int, name: str) -> np.ndarray:
        meta = self.clips[clip]
        return np.asarray(getattr(self, name)[meta["first_frame"] : meta["first_frame"] + meta["num_frames"]])

    def read_clip(self, clip: int) -> Clip:
        meta = self.clips[clip]
        frames = [bytes(self.frame_bytes(clip, i)) for i in range(meta["num_frames"])]
        return Clip(meta=dict(meta), frames=frames, **{name: self.clip_array(clip, name) for name in ARRAYS})

    def _frame_index(self, clip: int, frame: int) -> int:
        meta = self.clips[clip]
        if not 0 <= frame < meta["num_frames"]:
            raise IndexError(f"clip {clip} has {meta['num_frames']} frames, asked for frame {frame}")
        return meta["first_frame"] + frame


def write_shard(path: Path, clips: Iterable[Clip], skipped: list[dict] | None = None) -> Path:
    writer = ShardWriter(path, skipped=list(skipped or []))
    for clip in clips:
        writer.add(clip)
    return writer.close()
