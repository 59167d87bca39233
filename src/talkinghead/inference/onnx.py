"""The per-frame path of an avatar as an ONNX graph, and running it with onnxruntime.

`FramePath` is the generator with everything the avatar fixes baked in as constants: psi' (the
AdaIN parameters from the embedder), the shots, their landmark images and points. What changes
per frame are its two inputs:

    driving_landmark_image  [1, 3, R, R] float32 in [-1, 1]  (drawing.draw_batch, images.to_tensor)
    driving_points          [1, 68, 2]   float32, crop pixels (points.py: pixel centres at integers)
    -> frame                [1, 3, R, R] float32 in [-1, 1]

One frame per call (B = 1, fixed in the graph), as live use needs it; `OnnxFramePath` runs a
batch frame by frame. Exported with the TorchScript-based exporter at opset 17, the first opset with
`GridSample` (the warp generator's `grid_sample`), which the CPU build of onnxruntime on PyPI runs
as it is. One op had to be replaced: ONNX has no linear solve (`torch.linalg.solve`, for the
thin-plate spline's coefficients, which depend on the driving points), so during export the
system is inverted by onnxruntime's `com.microsoft::Inverse` contrib op (one node), or, with
`portable=True` (`export --onnx --portable`), solved by Gauss-Jordan elimination with partial
pivoting in plain ONNX ops that any runtime runs (`models/flow.py solve_by_elimination`; about
4,900 nodes, which cost 14 ms a frame in onnxruntime); both in float64 like the PyTorch path.
`export_onnx` checks the graph against PyTorch on the same inputs and reports the largest
difference. onnxruntime is optional: `pip install "talkinghead[onnx]"`.

An avatar with a mouth (inference/mouth.py) runs its mouth generator in a second graph,
`MouthPath` (psi' baked in; `[1, 3, s, s]` crop and lips drawn and the `[1, 1, s, s]` part of
the crop it must not see -> the synthesised mouth), which
`OnnxAvatar` exports when it starts (about a second): at one frame a call it runs in a third to
half of PyTorch's time. The cut and the paste at the output size stay beside it, as in PyTorch.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from talkinghead.errors import UsageError
from talkinghead.inference.avatar import Avatar
from talkinghead.inference.mouth import FittedMouth
from talkinghead.io import atomic_path
from talkinghead.media.images import to_uint8
from talkinghead.models import GeneratorInputs, GeneratorOutput

OPSET = 17
INPUT_NAMES = ("driving_landmark_image", "driving_points")
# What the graph gives back: the frame, and for a generator that moves the shots' pixels what the
# renderer needs to repeat the move at the output size (render.py) beside the graph.
OUTPUT_NAMES = ("frame", "flow", "shots", "fusion_weights", "blend_mask", "synthesised")


class FramePath(nn.Module):
    """An avatar's generator with its fixed inputs as buffers: (landmark image, points) -> the
    frame at R and, where the generator has them, its flow, shots, fusion weights, blend mask and
    synthesised frame (`OUTPUT_NAMES`)."""

    def __init__(self, avatar: Avatar):
        super().__init__()
        self.generator = avatar.runtime_generator()
        fixed = avatar.generator_inputs(np.asarray(avatar.shot_landmarks[:1], np.float32))
        self.register_buffer("shots", fixed.source_frames[:1].float().clone())
        self.register_buffer("shot_landmark_images", fixed.source_landmark_images[:1].float().clone())
        self.register_buffer("shot_points", fixed.source_points[:1].float().clone())
        self.register_buffer("psi", avatar.psi.detach().float().clone())
        # The warp generator's encoding of the shots: a constant of the graph, not run every frame.
        has_features = fixed.source_features is not None
        self.register_buffer("shot_features", fixed.source_features[:1].float().clone() if has_features else None)

    def forward(self, driving_landmark_image: torch.Tensor, driving_points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = GeneratorInputs.of(
            driving_landmark_images=driving_landmark_image,
            driving_points=driving_points,
            source_frames=self.shots[0],
            source_landmark_images=self.shot_landmark_images[0],
            source_points=self.shot_points[0],
            source_features=None if self.shot_features is None else self.shot_features[0],
        )
        output = self.generator(inputs, self.psi.expand(len(inputs), -1))
        return tuple(v for v in (getattr(output, name) for name in OUTPUT_NAMES) if v is not None)

    def output_names(self) -> list[str]:
        """The graph's outputs: `OUTPUT_NAMES` that this generator fills."""
        images, points = sample_inputs_for(self)
        with torch.no_grad():
            inputs = GeneratorInputs.of(
                driving_landmark_images=images, driving_points=points, source_frames=self.shots[0],
                source_landmark_images=self.shot_landmark_images[0], source_points=self.shot_points[0],
                source_features=None if self.shot_features is None else self.shot_features[0],
            )  # fmt: skip
            output = self.generator(inputs, self.psi)
        return [name for name in OUTPUT_NAMES if getattr(output, name) is not None]


def sample_inputs_for(path: FramePath) -> tuple[torch.Tensor, torch.Tensor]:
    """One driving frame: the first shot's own landmark image and points."""
    return path.shot_landmark_images[:, 0], path.shot_points[:, 0]


def sample_inputs(avatar: Avatar, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Real per-frame inputs: the avatar's own shot landmarks, moved a little (mouth open, head shifted)."""
    base = np.asarray(avatar.shot_landmarks[0], np.float32)
    rng = np.random.default_rng(0)
    points = np.stack([base + rng.normal(0, 0.01 * avatar.size, (1, 2)).astype(np.float32) for _ in range(count)])
    points[1::2, 57] += 0.05 * avatar.size  # lower lip down
    images = avatar.generator_inputs(points).driving_landmark_images.float().cpu().numpy()
    return images, points


def export_onnx(avatar: Avatar, out: str | Path, *, portable: bool = False) -> dict:
    """Write the avatar's per-frame path as ONNX (atomically) and compare it with PyTorch.
    `portable`: standard ONNX ops only (no onnxruntime contrib op; slower).

    Returns {"path", "opset", "max_abs_difference", "bytes", "contrib_ops"} (`contrib_ops`: nodes
    of onnxruntime's `com.microsoft` domain in the graph)."""
    import warnings

    require_onnxruntime()  # both packages, or a clear error
    import onnx

    from talkinghead.models.flow import export_solver

    path = Path(out)
    module = FramePath(avatar.to("cpu", torch.float32)).eval()
    images, points = sample_inputs(avatar)
    example = (torch.from_numpy(images[:1]), torch.from_numpy(points[:1]))
    solver = export_solver("elimination" if portable else "inverse")
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad(), solver:
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            example,
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=module.output_names(),
        )
        session = OnnxFramePath(tmp)
        with torch.inference_mode():
            expected = module(torch.from_numpy(images), torch.from_numpy(points))[0].numpy()
        difference = float(np.abs(session(images, points) - expected).max())
        contrib = sum(node.domain == "com.microsoft" for node in onnx.load(str(tmp)).graph.node)
    return {
        "path": path, "opset": OPSET, "max_abs_difference": difference, "bytes": path.stat().st_size,
        "contrib_ops": contrib,
    }  # fmt: skip


def require_onnxruntime():
    """onnxruntime, and onnx beside it (the export reads its graph back), or a UsageError."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        raise UsageError(f'{error.name} is not installed: pip install "talkinghead[onnx]"') from None
    return onnxruntime


class OnnxFramePath:
    """An exported per-frame path in onnxruntime (CPU): `(images [B,3,R,R], points [B,68,2]) -> [B,3,R,R]`,
    one frame per session call."""

    def __init__(self, path: str | Path, threads: int = 0):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The frames `[B, 3, R, R]`."""
        return self.outputs(images, points)["frame"]

    def outputs(self, images: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph (`OUTPUT_NAMES` it has), batched over the B frames."""
        images, points = np.asarray(images, np.float32), np.asarray(points, np.float32)
        # The paper's generator does not read the points: its graph has no such input.
        wanted = {i.name for i in self.session.get_inputs()}
        names = [o.name for o in self.session.get_outputs()]
        runs = []
        for i in range(len(images)):
            feeds = dict(zip(INPUT_NAMES, (images[i : i + 1], points[i : i + 1])))
            runs.append(self.session.run(None, {k: v for k, v in feeds.items() if k in wanted}))
        return {name: np.concatenate([run[j] for run in runs]) for j, name in enumerate(names)}


class MouthPath(nn.Module):
    """A fitted mouth's synthesis with its psi' as a buffer: (crop, lips drawn) `[1, 3, s, s]` and
    what of the crop it must not see `[1, 1, s, s]` -> the synthesised mouth `[1, 3, s, s]` and, for a
    generator of the "learned" blend, its mask."""

    def __init__(self, mouth: FittedMouth):
        super().__init__()
        self.generator = mouth.generator
        self.register_buffer("psi", mouth.psi.detach().float().clone())

    def forward(self, crop: torch.Tensor, lips: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mouth, learned = self.generator.synthesise(crop, lips, self.psi, hidden)
        return (mouth,) if learned is None else (mouth, learned)


class OnnxMouth:
    """A fitted mouth's `MouthPath` in onnxruntime: `FittedMouth.synthesiser`, one crop per call."""

    def __init__(self, mouth: FittedMouth, threads: int = 1):
        import io
        import warnings

        ort = require_onnxruntime()
        module = MouthPath(copy.deepcopy(mouth).to("cpu", torch.float32)).eval()
        side = mouth.settings.side
        example = (torch.zeros(1, 3, side, side), torch.zeros(1, 3, side, side), torch.zeros(1, 1, side, side))
        graph = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, example, graph, dynamo=False, opset_version=OPSET, input_names=["crop", "lips", "hidden"]
            )
        options = ort.SessionOptions()
        # One thread that sleeps when idle: a 64 px crop gains nothing from two, and the thread pool's
        # default spin-wait kept the cores busy between calls, starving the face's session beside it
        # (live at 256 px: 14 frames/s with two spinning threads, against 45 without the mouth).
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]  # a "learned" blend's graph does not read `hidden`

    def __call__(
        self, crops: torch.Tensor, lips: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        runs = []
        for i in range(len(crops)):
            feeds = {"crop": crops[i : i + 1], "lips": lips[i : i + 1], "hidden": hidden[i : i + 1]}
            runs.append(self.session.run(None, {name: feeds[name].numpy() for name in self.inputs}))
        outputs = [torch.from_numpy(np.concatenate(parts)) for parts in zip(*runs)]
        return outputs[0], outputs[1] if len(outputs) > 1 else None


class OnnxAvatar:
    """An avatar whose frames come from its per-frame path in onnxruntime: `generate` as
    `Avatar.generate`. Exports the graph once (seconds) unless given an exported file; the mouth's
    graph (`MouthPath`) always."""

    def __init__(self, avatar: Avatar, path: str | Path | None = None):
        import tempfile

        if avatar.mouth is not None:  # a copy whose mouth runs in onnxruntime; the avatar is left as it was
            avatar = copy.copy(avatar)
            avatar.mouth = dataclasses.replace(avatar.mouth, synthesiser=OnnxMouth(avatar.mouth))
        self.avatar = avatar
        if path is None:
            with tempfile.TemporaryDirectory(prefix="talkinghead-onnx-") as folder:
                path = export_onnx(avatar, Path(folder) / "avatar.onnx")["path"]
                self.session = OnnxFramePath(path)  # the session holds the graph; the file can go
        else:
            self.session = OnnxFramePath(path)

    def __getattr__(self, name: str):  # everything else (size, shots, portrait, ...) is the avatar's
        return getattr(self.avatar, name)

    def generate(self, landmarks: np.ndarray, *, batch_size: int = 8) -> Iterator[np.ndarray]:
        """Frames `[D, D, 3] uint8` (the avatar's output size) for `[N, 68, 2]` landmarks in its
        crop pixels: the graph at R, the move repeated at D and the mouth beside it (`Avatar.render`)."""
        for start in range(0, len(landmarks), batch_size):
            driving = landmarks[start : start + batch_size]
            inputs = self.avatar.generator_inputs(driving)
            images, points = (t.float().cpu().numpy() for t in (inputs.driving_landmark_images, inputs.driving_points))
            output = GeneratorOutput(
                **{k: torch.from_numpy(v) for k, v in self.session.outputs(images, points).items()}
            )
            yield from to_uint8(self.avatar.render(output, driving).float())


RUNTIMES = ("torch", "onnx")


def with_runtime(avatar: Avatar, runtime: str = "torch") -> "Avatar | OnnxAvatar":
    """What makes an avatar's frames: PyTorch (the avatar itself) or onnxruntime (`OnnxAvatar`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
    return OnnxAvatar(avatar) if runtime == "onnx" else avatar
