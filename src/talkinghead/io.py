"""Atomic file writes: a file either appears whole at its final path or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path`.

    The temporary file lives in the same folder (so the rename is atomic on POSIX) and is removed
    if the block raises or the process is interrupted by an exception.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp (and writers that replace it) make 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def remove_stale_temporaries(folder: Path) -> None:
    """Delete `.*.tmp` files left by a killed process (SIGKILL skips `atomic_path`'s cleanup)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
