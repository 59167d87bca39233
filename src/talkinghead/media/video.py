"""Reading images and videos into RGB uint8 arrays, with the quirks of real files handled.

Every failure is a `MediaError` whose message is one line that says why, so that callers can
report it next to the file name without a traceback.

Array contract: images are `[H, W, 3] uint8 RGB`, upright (EXIF orientation and video rotation
metadata applied).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from talkinghead.errors import TalkingheadError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp"}

# Beyond this many pixels an image is refused rather than decoded (PIL's own bomb limit is 179 MP).
MAX_IMAGE_PIXELS = 150_000_000


class MediaError(TalkingheadError):
    """A file that cannot be used, with a one-line human reason."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError("file not found")
    if not path.is_file():
        raise MediaError("not a regular file")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float image data of any bit depth to uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit PNG/TIFF: keep the top byte. Some 16-bit files only use 12 bits, but scaling by
        # the observed maximum would change the exposure from file to file.
        bits = 16 if array.dtype.itemsize >= 2 else 8
        return (array.astype(np.uint32) >> (bits - 8)).clip(0, 255).astype(np.uint8)
    # float images are taken as [0, 1]
    return (np.nan_to_num(array.astype(np.float32)).clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as `[H, W, 3] uint8 RGB`, upright.

    Handles EXIF orientation, grayscale, palette, alpha (composited over white), 16-bit and
    CMYK files. Raises `MediaError` for anything that is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with a clear message
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise MediaError(
                        f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP, "
                        f"limit {MAX_IMAGE_PIXELS / 1e6:.0f} MP)"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return _pil_to_rgb(image)
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise MediaError(f"unreadable image ({_first_line(error)})") from None


def _pil_to_rgb(image) -> np.ndarray:
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        # Cut-out portraits are usually meant to be seen on white.
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        return (rgb * 255.0 + 0.5).astype(np.uint8)
    if mode in ("RGB", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    # 16/32-bit integer or float modes ("I;16", "I;16B", "I", "F"): convert ourselves, since
    # PIL's own conversion to RGB clips instead of scaling.
    array = _to_uint8(np.asarray(image))
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def _first_line(error: BaseException) -> str:
    # FFmpeg errors repeat the file name, which the caller already prints.
    text = (getattr(error, "strerror", None) or str(error)).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(frozen=True)
class VideoInfo:
    width: int  # after rotation
    height: int
    fps: float  # average frame rate (frames / duration for variable frame rate files)
    frame_count: int  # from the container; 0 when unknown
    duration: float  # seconds; 0.0 when unknown
    rotation: int  # degrees counter-clockwise applied to decoded frames
    has_audio: bool


class VideoReader:
    """Decode a video file frame by frame as upright `[H, W, 3] uint8 RGB`.

    Iterating yields `(frame_number, time_seconds, rgb)`. Time comes from each frame's
    presentation timestamp (relative to the first frame), so variable frame rate files keep their
    real timing. A file that is truncated or corrupt part-way stops yielding at the first
    undecodable packet, or ends before the frames its index lists, and sets `truncated`; a file without a single decodable frame raises
    `MediaError` when opened.
    """

    def __init__(self, path: str | Path, *, threads: int = 0):
        import av

        self.path = Path(path)
        _check_file(self.path)
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as error:
            what = "unreadable or truncated video" if is_video_path(self.path) else "not a video or image"
            raise MediaError(f"{what} ({_first_line(error)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise MediaError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        self.truncated = False
        self._frames = self._decode()
        # The rotation (display matrix) and so the upright size are only known from a decoded
        # frame, so the first one is decoded here and handed out first by __iter__.
        self._first = self._next_frame()
        if self._first is None:
            self._container.close()
            raise MediaError("no decodable video frame")
        self.info = self._probe(self._first)

    def _decode(self) -> Iterator:
        """Decoded frames, packet by packet: a corrupt packet is skipped (and noted) rather than
        ending the stream, and a demuxing error (a cut file) still flushes the frames the decoder
        holds back for B-frame reordering."""
        import av

        errors = (av.error.FFmpegError, UnicodeDecodeError, ValueError)
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return  # the demuxer's last (empty) packet has flushed the decoder
            except errors:
                self.truncated = True
                break
            try:
                yield from packet.decode()
            except errors:
                self.truncated = True
        try:
            yield from self._stream.codec_context.decode(None)
        except errors:
            pass

    def _next_frame(self):
        return next(self._frames, None)

    def _probe(self, first) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1_000_000
        fps = float(rate) if rate else 0.0
        frame_count = int(stream.frames or 0)
        if frame_count == 0 and fps > 0 and duration > 0:
            frame_count = int(round(fps * duration))
        rotation = int(round(first.rotation / 90.0)) % 4 * 90
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        return VideoInfo(
            width=width,
            height=height,
            fps=fps if fps > 0 else 25.0,
            frame_count=frame_count,
            duration=duration,
            rotation=rotation,
            has_audio=bool(self._container.streams.audio),
        )

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        frame, number, time0 = self._first, 0, None
        k = self.info.rotation // 90
        while frame is not None:
            time = frame.time if frame.time is not None else number / self.info.fps
            time0 = time if time0 is None else time0
            rgb = frame.to_ndarray(format="rgb24")
            if k:
                # The display matrix angle is counter-clockwise, as is np.rot90.
                rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
            yield number, time - time0, rgb
            number += 1
            frame = self._next_frame()
        # A file cut short after its index (an mp4 written with the index first) demuxes to a
        # clean end: the index still lists the frames that are gone.
        if number < int(self._stream.frames or 0):
            self.truncated = True

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Write `[H, W, 3] uint8 RGB` frames as an H.264 mp4, optionally with another file's audio.

    The audio (re-encoded as AAC) is interleaved as frames are written and cut at the video's
    length. Odd frame sizes are padded by one pixel (H.264 in yuv420p needs even sides). Write
    to an `atomic_path`, so a failed run leaves no partial file. `preset` and `tune` are x264's;
    None chooses by frame size (below).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        *,
        audio_from: str | Path | None = None,
        crf: int = 18,
        preset: str | None = None,
        tune: str | None = None,
    ):
        from fractions import Fraction

        import av

        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
        self._rate = Fraction(fps).limit_denominator(1001)
        # x264's default preset (medium) spends 30-45 ms of CPU on a 1536 x 1536 frame, more than
        # the rest of a frame's work. From about a megapixel up: "veryfast" with a diamond motion
        # search, sub-pixel refinement 1 and one thread -- 13-14 ms of one core, 0.47-0.80 of the
        # CPU that veryfast alone took over its threads (which fought the renderer's for the two
        # cores), files 3-4 % larger at the same CRF, 0.1 dB from veryfast (bench/bench_writer.py).
        large = width * height >= 1_000_000
        options = {"crf": str(crf), "preset": preset or ("veryfast" if large else "medium")}
        if preset is None and large:
            options["x264-params"] = "threads=1:me=dia:subme=1"
        # Below a megapixel (a 1280 x 720 painting, a 512 px photo), x264's "grain" tuning keeps
        # fine texture -- a painting's cracks, skin, hair -- that its default psychovisual
        # settings smooth away at the same CRF: the Mona Lisa's face keeps 0.52 of its detail
        # instead of 0.45 (lossless 0.56), the astronaut's 0.71 instead of 0.64 (lossless 0.75;
        # both driven by a validation clip), for files about 20 % larger. From a megapixel up,
        # where the encoder's time counts (animate's 25 frames/s), it cost 5-8 % of the frame
        # rate, so none there unless asked (docs/benchmarks.md, "The writer keeps fine texture").
        tune = tune if tune is not None else (None if large or preset is not None else "grain")
        if tune:
            options["tune"] = tune
        self._video = self._container.add_stream("libx264", rate=self._rate, options=options)
        self._video.width, self._video.height = width + width % 2, height + height % 2
        self._video.pix_fmt = "yuv420p"
        self.frames = 0  # written (queued)
        self._encoded = 0
        self._thread, self._failure = None, None
        self.has_audio = False
        self._source = None
        if audio_from is not None:
            source = av.open(str(audio_from), metadata_errors="ignore")
            if source.streams.audio:
                codec = source.streams.audio[0].codec_context
                self._sample_rate = codec.sample_rate or 48000
                layout = codec.layout.name if codec.layout and codec.layout.nb_channels <= 2 else "stereo"
                self._audio = self._container.add_stream("aac", rate=self._sample_rate)
                self._audio.layout = layout
                self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=self._sample_rate)
                self._samples = self._decode_audio(source)
                self._written = 0
                self._source, self.has_audio = source, True
            else:
                source.close()

    def _decode_audio(self, source):
        import av

        try:
            for frame in source.decode(source.streams.audio[0]):
                frame.pts = None
                yield from self._resampler.resample(frame)
        except (av.error.FFmpegError, ValueError):
            return  # damaged audio: keep what decoded

    def _pump_audio(self, until_seconds: float) -> None:
        limit = int(until_seconds * self._sample_rate)
        while self._written < limit:
            chunk = next(self._samples, None)
            if chunk is None:
                return
            chunk.pts = self._written
            self._written += chunk.samples
            self._container.mux(self._audio.encode(chunk))

    def write(self, rgb: np.ndarray) -> None:
        """Queue a frame `[H, W, 3] uint8`; it is encoded on the writer's thread (x264 lets go of
        the GIL, so encoding overlaps the work that makes the next frame)."""
        if self._thread is None:
            import queue
            import threading

            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._encode_queued, name="video-writer", daemon=True)
            self._thread.start()
        self._raise_failure()
        self._queue.put(rgb)
        self.frames += 1

    def _encode_queued(self) -> None:
        try:
            while (rgb := self._queue.get()) is not None:
                self._encode(rgb)
        except BaseException as error:  # handed to the caller at the next write or at close
            self._failure = error
            while self._queue.get() is not None:  # unblock the producer until it stops
                pass

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _encode(self, rgb: np.ndarray) -> None:
        import av

        height, width = rgb.shape[:2]
        if height % 2 or width % 2:
            rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        # RGB to the stream's yuv420p by OpenCV (BT.601, limited range: the matrix swscale uses;
        # 0.9 ms at 1536 x 1536 where swscale, called by PyAV for an rgb24 frame, took 15 ms).
        yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self._encoded
        frame.time_base = 1 / self._rate
        self._container.mux(self._video.encode(frame))
        self._encoded += 1
        if self.has_audio:
            self._pump_audio(self._encoded / self._rate)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        try:
            self._raise_failure()
            self._container.mux(self._video.encode())
            if self.has_audio:
                self._container.mux(self._audio.encode(None))
        finally:
            if self._source is not None:
                self._source.close()
            self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
