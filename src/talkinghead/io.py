"""Atomic file writes: a file either appears whole at its final path or not at all.

A write goes to `.NAME.HOST-PID.XXXX.tmp` beside the final path and is renamed over it when
complete. A process killed with SIGKILL cannot clean up, so every write first removes the
temporaries of the same file left by dead processes of this machine (a live writer's, or
another machine's on a shared folder, are left alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
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
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"
_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def remove_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Delete the `atomic_path` temporaries in `folder` (of the file `name`, or of any file) that
    were left by dead processes of this machine (SIGKILL skips `atomic_path`'s cleanup), and
    those in the old format without an owner. Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".{glob_escape(name)}.*.tmp" if name else ".*.tmp"):
        owner = _OWNER.search(tmp.name)
        if owner and (owner["host"] != _HOST or _alive(int(owner["pid"]))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
