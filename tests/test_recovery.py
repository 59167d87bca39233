"""Killed and interrupted runs: no partial output, no stale temporaries, resume from what is good.

Real processes (`python -m talkinghead`) killed with real signals while they write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import media
from PIL import Image

from talkinghead.checkpoint import list_checkpoints
from talkinghead.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def long_job(tmp_path_factory, tiny_model, astronaut) -> tuple[Path, Path]:
    """A fitted tiny avatar and a 40 s motion template (the bundled one, repeated): animating it
    takes long enough to be interrupted while the video is being written."""
    from talkinghead.inference.animate import default_motion_path
    from talkinghead.inference.fitting import fit_avatar
    from talkinghead.inference.motion import Motion

    root = tmp_path_factory.mktemp("long-job")
    Image.fromarray(astronaut).save(root / "face.png")
    avatar = fit_avatar([root / "face.png"], model=tiny_model).save(root / "face.avatar")
    motion = Motion.load(default_motion_path())
    reps = int(np.ceil(40 * motion.fps / len(motion)))
    Motion(np.tile(motion.landmarks, (reps, 1, 1)), motion.fps, np.tile(motion.tracked, reps)).save(root / "long.npz")
    return avatar, root / "long.npz"


def _start_animate(avatar: Path, driving: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "talkinghead", "animate", "--avatar", str(avatar), "--driving", str(driving)]
    # The child starts with the default Ctrl-C disposition whatever this test process holds: an
    # ignored SIGINT is inherited and Python then installs no handler. A guard, not a found cause:
    # the full suite twice saw this child exit 0 after a Ctrl-C, never when this file ran alone.
    return subprocess.Popen(
        [*command, "--out", str(out), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def _written(folder: Path) -> bool:
    """Whether a temporary in `folder` holds bytes (one may vanish while we look)."""
    for path in _temporaries(folder):
        try:
            if path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
    return False


def _wait_for_temporary(process: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    """Until the output is being written (its temporary holds bytes), so the signal lands mid-write.
    Not a fixed delay after the file appears: on a loaded machine the encoder had written nothing
    0.3 s later (the suite failed on an empty temporary)."""
    deadline = time.monotonic() + timeout
    while not _written(folder):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "animate never started writing"
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_animate_leaves_no_output_and_the_next_run_cleans_up(long_job, tmp_path):
    avatar, driving = long_job
    out = tmp_path / "talk.mp4"
    process = _start_animate(avatar, driving, out)
    _wait_for_temporary(process, tmp_path)
    process.kill()  # SIGKILL: no cleanup code runs
    process.wait(timeout=30)
    assert not out.exists()
    stale = _temporaries(tmp_path)
    assert len(stale) == 1 and stale[0].stat().st_size > 0  # killed mid-write
    short = tmp_path / "short.npz"
    code = main(["motion", str(media("carphone.mp4")), "--out", str(short), "--quiet", "--duration", "0.5"])
    assert code == 0
    assert main(["animate", "--avatar", str(avatar), "--driving", str(short), "--out", str(out), "--quiet"]) == 0
    assert out.is_file() and _temporaries(tmp_path) == []  # the dead run's temporary is gone


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_no_output(long_job, tmp_path):
    avatar, driving = long_job
    out = tmp_path / "talk.mp4"
    process = _start_animate(avatar, driving, out)
    _wait_for_temporary(process, tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (process.returncode, stderr, signal.getsignal(signal.SIGINT))
    assert stderr.strip().splitlines() == ["talkinghead animate: interrupted"]
    assert not out.exists() and _temporaries(tmp_path) == []


def test_resume_skips_a_corrupt_newest_checkpoint_and_logs_each_step_once(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", str(tiny_data), "--out", str(run), "--quiet"]  # resuming: the run's own config
    settings = ["--set", "train.steps=6", "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=5"]
    assert main([*base, "--config", "tiny", *settings, "--max-steps", "4"]) == 0
    newest = list_checkpoints(run / "checkpoints")[-1]
    assert newest.name == "step-000000004.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 3])  # a copy cut short, a full disk
    stale = run / "checkpoints" / ".step-000000006.pt.vm-999999.k3j2.tmp"  # a dead process's save
    stale.write_bytes(b"")
    capsys.readouterr()
    assert main([*base, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {newest}: not a talkinghead checkpoint (unreadable or truncated)" in err
    assert "Traceback" not in err
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "step-000000002.pt",
        "step-000000004.pt",
        "step-000000006.pt",
    ]
    assert not stale.exists()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 3-4 ran twice, logged once
    # Resuming a finished run, or with nothing to resume from:
    assert main([*base, "--resume"]) == 2
    assert "nothing to do" in capsys.readouterr().err
    fresh = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "fresh"), "--quiet", "--resume"]
    assert main([*fresh, "--config", "tiny", "--set", "train.steps=2"]) == 0
    assert "no checkpoint to resume from; starting a new run" in capsys.readouterr().err
