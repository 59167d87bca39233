"""Known failures, the checks that find them before any work starts, and how the command line reports them.

Every failure a user can fix (a bad option value, a missing or unreadable file, an output path in
the way) is a `TalkingheadError` whose message starts with the file or option it is about:
`PATH: reason` or `--option: reason`. The command line (cli.py) prints it once as
`talkinghead CMD: PATH: reason` and exits with its `exit_code`; so do operating-system errors
(`OSError`: a full disk, a permission) and Ctrl-C (exit 130). Anything else is a bug and keeps its
traceback.

Output paths follow one rule for every subcommand: missing folders above an output are created
when the output is written (never before, so a failed run leaves nothing), and a path that cannot
become the output (an existing folder where a file is wanted, a file where a folder is wanted, a
place that cannot be written) is refused before any work.
"""

from __future__ import annotations

import os
from pathlib import Path


class TalkingheadError(Exception):
    """A failure the user can fix; printed as one line (`talkinghead CMD: message`)."""

    exit_code = 1


class UsageError(TalkingheadError, ValueError):
    """A bad option value, setting or combination of options (exit code 2, like argparse's)."""

    exit_code = 2


class ModelFileError(TalkingheadError, ValueError):
    """A model file, training checkpoint or avatar that cannot be used."""


# -- checks made before any work -----------------------------------------------------------------


def check_input_file(path: str | Path, what: str = "file", *, option: str | None = None) -> Path:
    """An existing, readable, non-empty regular file."""
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if not path.exists():
        raise UsageError(f"{label}: {what} not found")
    if path.is_dir():
        raise UsageError(f"{label}: is a folder, not a {what}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{label}: cannot read it (permission denied)")
    if path.stat().st_size == 0:
        raise UsageError(f"{label}: empty file, not a {what}")
    return path


def check_input_folder(path: str | Path, what: str = "folder", *, option: str | None = None) -> Path:
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if not path.exists():
        raise UsageError(f"{label}: {what} not found")
    if not path.is_dir():
        raise UsageError(f"{label}: is a file, not a {what}")
    return path


def check_output_file(path: str | Path, suffixes: tuple[str, ...], *, option: str = "--out") -> Path:
    """A path a file can be written to: ends in one of `suffixes`, is not a folder, and its nearest
    existing folder can be written (missing folders are created when the file is written)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name ending in {suffixes[0]}")
    _check_writable_parent(path, option)
    return path


def check_output_folder(path: str | Path, *, option: str = "--out") -> Path:
    """A path a folder can be made at (or is): not a file, and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: cannot write in this folder (permission denied)")
        return path
    _check_writable_parent(path, option)
    return path


def _check_writable_parent(path: Path, option: str) -> None:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or _is_pseudo_filesystem(parent):
        raise UsageError(f"{option} {path}: cannot write in {parent}")


def _is_pseudo_filesystem(folder: Path) -> bool:
    """/proc and /sys say they are writable to root but refuse new files."""
    parts = folder.resolve().parts
    return len(parts) > 1 and parts[1] in ("proc", "sys")


def describe_range(low=None, high=None) -> str:
    if low is not None and high is not None:
        return f"in {low}..{high}"
    return f">= {low}" if low is not None else f"<= {high}"


def describe_os_error(error: OSError) -> str:
    """`PATH: reason` from an operating-system error, in its own words, without Python's."""
    reason = error.strerror or str(error)
    if error.filename is not None:
        return f"{error.filename}: {reason[0].lower() + reason[1:] if reason else 'error'}"
    return reason
