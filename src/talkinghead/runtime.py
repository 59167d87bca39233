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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UsageError
from .io import atomic_path
from .models import GeneratorInputs

OPSET = 17
INPUT_NAMES = ("driving_landmark_image", "driving_points")


class FramePath(nn.Module):
    """An avatar's generator with its fixed inputs as buffers: (landmark image, points) -> frame."""

    def __init__(self, avatar):
        super().__init__()
        self.generator = avatar._runtime_generator()
        fixed = avatar.generator_inputs(np.asarray(avatar.shot_landmarks[:1], np.float32))
        self.register_buffer("shots", fixed.source_frames[:1].float().clone())
        self.register_buffer("shot_landmark_images", fixed.source_landmark_images[:1].float().clone())
        self.register_buffer("shot_points", fixed.source_points[:1].float().clone())
        self.register_buffer("psi", avatar.psi.detach().float().clone())
        # The warp generator's encoding of the shots: a constant of the graph, not run every frame.
        has_features = fixed.source_features is not None
        self.register_buffer("shot_features", fixed.source_features[:1].float().clone() if has_features else None)

    def forward(self, driving_landmark_image: torch.Tensor, driving_points: torch.Tensor) -> torch.Tensor:
        B = driving_landmark_image.shape[0]
        inputs = GeneratorInputs(
            driving_landmark_image,
            self.shots.expand(B, -1, -1, -1, -1),
            self.shot_landmark_images.expand(B, -1, -1, -1, -1),
            self.shot_points.expand(B, -1, -1, -1),
            driving_points,
            None if self.shot_features is None else self.shot_features.expand(B, -1, -1, -1, -1),
        )
        return self.generator(inputs, self.psi.expand(B, -1))


def sample_inputs(avatar, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Real per-frame inputs: the avatar's own shot landmarks, moved a little (mouth open, head shifted)."""
    base = np.asarray(avatar.shot_landmarks[0], np.float32)
    rng = np.random.default_rng(0)
    points = np.stack([base + rng.normal(0, 0.01 * avatar.size, (1, 2)).astype(np.float32) for _ in range(count)])
    points[1::2, 57] += 0.05 * avatar.size  # lower lip down
    images = avatar.generator_inputs(points).driving_landmark_images.float().cpu().numpy()
    return images, points


def export_onnx(avatar, out: str | Path, *, portable: bool = False) -> dict:
    """Write the avatar's per-frame path as ONNX (atomically) and compare it with PyTorch.
    `portable`: standard ONNX ops only (no onnxruntime contrib op; slower).

    Returns {"path", "opset", "max_abs_difference", "bytes", "contrib_ops"} (`contrib_ops`: nodes
    of onnxruntime's `com.microsoft` domain in the graph)."""
    import warnings

    _onnxruntime()  # both packages, or a clear error
    import onnx

    from .models.flow import export_solver

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
            output_names=["frame"],
        )
        session = OnnxFramePath(tmp)
        with torch.inference_mode():
            expected = module(torch.from_numpy(images), torch.from_numpy(points)).numpy()
        difference = float(np.abs(session(images, points) - expected).max())
        contrib = sum(node.domain == "com.microsoft" for node in onnx.load(str(tmp)).graph.node)
    return {
        "path": path, "opset": OPSET, "max_abs_difference": difference, "bytes": path.stat().st_size,
        "contrib_ops": contrib,
    }  # fmt: skip


def _onnxruntime():
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
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, points: np.ndarray) -> np.ndarray:
        images, points = np.asarray(images, np.float32), np.asarray(points, np.float32)
        # The paper's generator does not read the points: its graph has no such input.
        wanted = {i.name for i in self.session.get_inputs()}
        frames = []
        for i in range(len(images)):
            feeds = dict(zip(INPUT_NAMES, (images[i : i + 1], points[i : i + 1])))
            frames.append(self.session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0])
        return np.concatenate(frames)


def main_export_onnx(args) -> int:
    """`talkinghead export --onnx AVATAR --out FILE.onnx`, or `export --onnx MODEL --images ... --out
    FILE.onnx` (the feed-forward avatar of those images, made here and not written)."""
    from .avatar import Avatar
    from .checkpoint import load_model
    from .errors import check_input_file, check_output_file

    check_output_file(args.out, (".onnx",))
    _onnxruntime()
    if args.images:
        for item in args.images:
            check_input_file(item, "image or video", option="--images")
        model = load_model(check_input_file(args.checkpoint, "model file"))
        avatar = Avatar.fit(args.images, model=model)
    else:
        avatar = Avatar.load(check_input_file(args.checkpoint, "avatar file"))
    report = export_onnx(avatar, args.out, portable=args.portable)
    kind = f"{report['contrib_ops']} onnxruntime contrib op(s)" if report["contrib_ops"] else "standard ops only"
    print(
        f"wrote {report['path']} ({report['bytes'] / 2**20:.1f} MB, ONNX opset {report['opset']}, {kind}); "
        f"largest difference from PyTorch on the same inputs: {report['max_abs_difference']:.2e}"
    )
    return 0
