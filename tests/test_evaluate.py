"""A tiny end-to-end evaluation: protocol split, every method, outputs, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from talkinghead.evaluation.evaluate import EvalOptions, _nearest_shots, evaluate, split_clip


def test_split_is_disjoint_and_later():
    shots, targets = split_clip(100, 8, 32)
    assert len(shots) == 8 and len(targets) == 32 and shots.max() < targets.min()
    shots, targets = split_clip(12, 8, 32)
    assert len(shots) == 8 and shots.max() < targets.min() and len(targets) == 4
    assert split_clip(8, 8, 32) is None  # no frame left for a target


def test_nearest_shot_picks_the_matching_pose():
    rng = np.random.default_rng(0)
    shots = rng.normal(size=(3, 68, 2)) * 10
    targets = shots[[2, 0]] + rng.normal(size=(2, 68, 2)) * 0.1 + 5.0  # shifted copies
    assert list(_nearest_shots(shots, targets)) == [2, 0]


@pytest.mark.slow
def test_tiny_evaluation_end_to_end_and_resume(tiny_model, tiny_data, tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    options = EvalOptions(
        shots=(1, 2),
        targets=3,
        steps=1,
        max_clips=1,
        methods=("ff", "ft", "static", "nearest", "warp", "scratch"),
        cross=(str(tmp_path / "astronaut.png"),),
    )
    summary = evaluate(tiny_model, tiny_data, tmp_path / "eval", options, progress=False)
    assert summary["clips"] == 1
    methods = summary["methods"]
    assert {(m, t) for m, per_T in methods.items() for t in per_T} == {(m, t) for m in options.methods for t in "12"}
    for per_T in methods.values():
        for entry in per_T.values():
            assert 0 <= entry["lpips"] and -1 <= entry["ssim"] <= 1 and entry["fid"] is not None
    # The static baseline copies a real frame: closer to the real targets than an untrained model.
    assert methods["static"]["1"]["lpips"] < methods["ff"]["1"]["lpips"]
    # A clip's Inception features: one array per method (and the real targets) and T.
    with np.load(tmp_path / "eval" / "clips" / "00000.npz") as f:
        assert set(f.files) == {f"{m}.{t}" for m in ("real", *options.methods) for t in "12"}
    table = (tmp_path / "eval" / "table.md").read_text()
    # 12 rows; the mouth table: header + 12 rows; cross: header + 3 rows
    assert table.count("\n| ") == 12 + 13 + 4 and "landmark error" in table and "mouth LPIPS" in table
    entry = summary["methods"]["warp"]["2"]
    assert entry["mouth_lpips"] > 0 and entry["teeth_targets"] >= 0 and "mouth_opening_error" in entry
    assert "Cross-identity" in table and set(summary["cross"]) == {"ff", "ft", "warp"}
    assert all("landmark_nme" in e for e in summary["cross"].values())
    # The face rate tells real frames from a collapsed generator: the baselines show real frames
    # (dlib finds the face in every one), the model trained for two steps makes no face at all.
    assert methods["static"]["2"]["faces"] == methods["nearest"]["2"]["faces"] == 1.0
    assert methods["ff"]["2"]["faces"] == methods["ft"]["2"]["faces"] == 0.0
    for entry in [e for per_T in methods.values() for e in per_T.values()] + list(summary["cross"].values()):
        assert 0.0 <= entry["faces_min"] <= entry["faces"] <= 1.0
    assert all(e["faces_per_portrait"] == {options.cross[0]: e["faces_min"]} for e in summary["cross"].values())
    assert "face found" in table
    # The warp baseline moves a real frame: closer to the real targets than the still nearest shot.
    assert methods["warp"]["2"]["lpips"] <= methods["nearest"]["2"]["lpips"] + 0.02
    assert all(e["fid"] >= 0 for e in summary["cross"].values())
    assert list((tmp_path / "eval" / "comparisons").glob("*.png"))
    assert {p.name for p in (tmp_path / "eval" / "plots").glob("*.png")} == {
        "fid.png",
        "ssim.png",
        "psnr.png",
        "lpips.png",
        "csim.png",
        "landmark_nme.png",
        "faces.png",
        "sharpness.png",
    }
    record = tmp_path / "eval" / "clips" / "00000.json"
    stamp = record.stat().st_mtime_ns
    again = evaluate(tiny_model, tiny_data, tmp_path / "eval", options, progress=False)
    assert record.stat().st_mtime_ns == stamp  # resumed: the finished clip was not redone
    assert json.dumps(again["methods"], sort_keys=True) == json.dumps(summary["methods"], sort_keys=True)
    # Resuming with another protocol would mix numbers made two ways in one table: refused.
    with pytest.raises(ValueError, match=r"other settings \(steps 1 -> 2\)"):
        evaluate(tiny_model, tiny_data, tmp_path / "eval", replace(options, steps=2), progress=False)


def test_fine_tuning_by_epochs_gives_every_t_the_same_passes(tiny_model, tiny_data, tmp_path, capsys):
    options = EvalOptions(shots=(1, 4), targets=2, epochs=3, max_clips=1, methods=("ft", "static"))
    summary = evaluate(tiny_model, tiny_data, tmp_path / "eval", options, progress=True)
    # A clip can take many minutes: its fine-tuning runs show their own bars under the clips' bar.
    bars = capsys.readouterr().err
    assert "evaluating" in bars and "fine-tuning" in bars
    # Batch 2: one shot per step at T = 1, two at T = 4, so 3 passes take 3 and 6 steps.
    steps = {(m, t): e["steps"] for m, per_T in summary["methods"].items() for t, e in per_T.items()}
    assert steps == {("ft", "1"): 3, ("ft", "4"): 6, ("static", "1"): 0, ("static", "4"): 0}


def test_the_table_says_where_fine_tunings_guard_stepped_in(tiny_model, tiny_data, tmp_path, monkeypatch):
    from talkinghead.training.gan import DivergenceGuard

    # Every step looks diverged, so the guard goes back each time and the avatar says so.
    monkeypatch.setattr(DivergenceGuard, "diverged", lambda self, out: "forced")
    options = EvalOptions(shots=(1,), targets=2, steps=2, max_clips=1, methods=("ft", "static"))
    summary = evaluate(tiny_model, tiny_data, tmp_path / "eval", options, progress=False)
    assert summary["methods"]["ft"]["1"]["guarded"] == 1 and summary["methods"]["static"]["1"]["guarded"] == 0
    notes = summary["per_clip"][0]["methods"]["ft"]["1"]["notes"]
    assert len(notes) == 1 and "diverged 2 time(s)" in notes[0]
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "guard went back to an earlier state" in table and "meta-learned, fine-tuned, T = 1: 1" in table


@pytest.mark.slow
def test_scoring_at_twice_the_models_size(carphone, tmp_path):
    """`--size`: every method at 64 px from a 64 px data set, a tiny warp model at its 32 px. Moving
    the shots' own pixels at 64 keeps more of the real frames' detail than the model's 32 px frame
    enlarged."""
    import torch

    from talkinghead.checkpoint import save_model
    from talkinghead.config import load_config
    from talkinghead.data.prepare import PrepareOptions, prepare
    from talkinghead.evaluation.evaluate import EvalOptions, evaluate
    from talkinghead.model import build_model

    torch.manual_seed(0)
    config = load_config("tiny", ["model.generator=warp", "model.dense_motion=false", "model.blend_bias=4"])
    tiny_model = save_model(tmp_path / "warp.safetensors", build_model(config, num_videos=1), half=False)

    data = tmp_path / "data64"
    prepare([carphone], data, PrepareOptions(crop_size=64), workers=1, progress=False)
    options = EvalOptions(shots=(2,), methods=("ff", "warp", "ff_upscaled"), targets=4, size=64)
    summary = evaluate(tiny_model, data, tmp_path / "eval", options, progress=False)
    methods = summary["methods"]
    assert summary["size"] == 64
    assert methods["ff"]["2"]["sharpness"] > methods["ff_upscaled"]["2"]["sharpness"] + 0.1
    assert 0 < methods["warp"]["2"]["sharpness"]
    assert "64 px" in (tmp_path / "eval" / "table.md").read_text()
    with pytest.raises(ValueError, match="--size 128: .* holds 64 px crops"):
        evaluate(tiny_model, data, tmp_path / "eval128", EvalOptions(shots=(2,), size=128), progress=False)
