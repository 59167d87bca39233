"""How far a portrait's mouth opens when driven, against the driver's (issue 32's bar): animate the
portrait by each driving video (paste layout), track the output with dlib as `talkinghead motion`
does, and compare the inner-lip gap over mouth width (face/mouth.py `lip_gap`, in pixels) with the
driver's, each beyond its own most closed frame. Prints one JSON object per driver:

- `opening`: mean(output gap - its minimum) / mean(driver gap - its minimum) (1: opens as much)
- `correlation`: Pearson correlation of the two gaps over the frames
- `asked`: the same ratio for the retargeted landmarks the renderer was given (what a perfect
  renderer would reach)

`--interior black`: a check on the measure. The mouth's unseen part (what no shot shows, where the
lips part) is painted the near-black of a real wide-open mouth (hdtf_rd2's, RGB 38, 9, 1): a dark
opening exactly where the renderer is asked to open the mouth, whatever a generator would paint.
How far dlib reads that short of `asked` is the part of the shortfall the lips account for
(docs/training.md). `--interior teeth`: the same, but the generator's paint is kept in the top 0.4
of the unseen gap, column by column: upper teeth under the upper lip over a dark cavity, as a real
talking mouth is arranged.

`--part eyes`: the same for the eyes, their aspect ratio (face/eyes.py `eye_opening`): how far
they close at the driver's blinks (its frames more than halfway from its median down to its most
closed), each below its own median: 1 blinks as deeply as the driver.

    python scripts/mouth_opening.py PORTRAIT --driving VIDEO... [--model M] [--size 512] [--seconds 8]
        [--part mouth|eyes] [--interior model|black|teeth] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

import numpy as np

DARK = (38, 9, 1)  # RGB: the inside of a real wide-open mouth (`--interior black`)
TEETH_KEPT = 0.4  # `--interior teeth`: the top of the unseen gap left to the generator (its upper teeth)


def opening_of(part: str):
    """The measure of a part on `[..., 68, 2]` landmarks: the lip gap or the eyes' aspect ratio."""
    from talkinghead.face.eyes import eye_opening
    from talkinghead.face.mouth import lip_gap

    return eye_opening if part == "eyes" else lip_gap


def pixel_gaps(motion, part: str = "mouth") -> np.ndarray:
    """`[N]` the part's opening on a motion's landmarks, in (isotropic) pixels."""
    from talkinghead.face.points import from_unit

    return opening_of(part)(from_unit(motion.landmarks.astype(np.float64), 512))


def compare(made: np.ndarray, driver: np.ndarray, part: str = "mouth") -> tuple[float, float]:
    """(the movement ratio, correlation). The mouth: the opening beyond each one's most closed
    frame. The eyes: how far they close at the driver's blinks (its frames more than halfway from
    its median opening down to its most closed), each below its own median; NaN without a blink."""
    n = min(len(made), len(driver))
    made, driver = made[:n], driver[:n]
    if part == "eyes":
        middle = np.median(driver)
        blinks = driver < middle - 0.5 * (middle - driver.min())
        drop = middle - driver[blinks].mean() if blinks.any() else np.nan
        ratio = (np.median(made) - made[blinks].mean()) / max(drop, 1e-9) if blinks.any() else np.nan
    else:
        ratio = (made - made.min()).mean() / max((driver - driver.min()).mean(), 1e-9)
    return float(ratio), float(np.corrcoef(made, driver)[0, 1])


@contextmanager
def black_interior(keep: float = 0.0):
    """Within: every fitted mouth's synthesis painted near-black inside its unseen part; with `keep`
    > 0, only below the top `keep` of the unseen gap, column by column (ramped over 0.15 of it), so
    the generator's upper teeth stay over a dark cavity (`--interior teeth`)."""
    import torch

    from talkinghead.inference.mouth import FittedMouth

    synthesise = FittedMouth.synthesise

    def dark(self, crops, lips, hidden):
        mouth, learned = synthesise(self, crops, lips, hidden)
        black = torch.tensor(DARK, dtype=mouth.dtype, device=mouth.device).view(1, 3, 1, 1) / 127.5 - 1
        weight = hidden.clamp(0, 1)
        if keep > 0:
            gap = (hidden > 0.5).to(mouth.dtype)  # [B, 1, s, s]
            depth = gap.cumsum(-2) / gap.sum(-2, keepdim=True).clamp(min=1)  # 0 at the gap's top, 1 at its bottom
            weight = weight * ((depth - keep) / 0.15).clamp(0, 1)
        return torch.lerp(mouth, black.expand_as(mouth), weight), learned

    FittedMouth.synthesise = dark
    try:
        yield
    finally:
        FittedMouth.synthesise = synthesise


def measure(
    portrait: Path, driving: Path, model: str | None, size: int, seconds: float, out: Path, part: str = "mouth"
) -> dict:
    from talkinghead.inference.motion import Motion
    from talkinghead.stages import animate

    motion = Motion.from_video(driving).trimmed(0, seconds)
    template = out / f"{driving.parent.name}-motion.npz"
    motion.save(template)
    video = out / f"{portrait.stem}-{driving.parent.name}.mp4"
    report = animate(source=[portrait], driving=template, model=model, out=video, layout="paste", size=size,
                     mode="relative", progress=False)  # fmt: skip
    avatar = report.avatar
    asked = opening_of(part)(motion.retarget(avatar.shot_landmarks[0], avatar.size).astype(np.float64))
    made, driver = pixel_gaps(Motion.from_video(video), part), pixel_gaps(motion, part)
    opening, correlation = compare(made, driver, part)
    return {
        "portrait": portrait.name,
        "driver": driving.parent.name,
        "part": part,
        "frames": len(motion),
        "opening": round(opening, 3),
        "correlation": round(correlation, 3),
        "asked": round(compare(asked, driver, part)[0], 3),
        "mouth": avatar.mouth is not None,
        "video": str(video),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("portrait", type=Path)
    parser.add_argument("--driving", type=Path, nargs="+", required=True, help="driving videos")
    parser.add_argument("--model", help="model file (default: the bundled one)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=8.0, help="of each driver, from its start")
    parser.add_argument("--part", choices=["mouth", "eyes"], default="mouth", help="what to measure")
    parser.add_argument("--interior", choices=["model", "black", "teeth"], default="model",
                        help="black: the unseen inside of the mouth painted black; teeth: black below the "
                             "generator's upper 0.4 of it (checks on the measure)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="keep the videos here")
    args = parser.parse_args()
    interior = {"model": nullcontext, "black": black_interior, "teeth": partial(black_interior, TEETH_KEPT)}
    with tempfile.TemporaryDirectory() as scratch, interior[args.interior]():
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        for driving in args.driving:
            print(
                json.dumps(measure(args.portrait, driving, args.model, args.size, args.seconds, out, args.part)),
                flush=True,
            )


if __name__ == "__main__":
    main()
