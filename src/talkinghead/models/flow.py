"""Landmark-driven warps: a thin-plate spline from the driving landmarks to a source's, as a
`grid_sample` grid.

Coordinate frames: points are pixels of an R x R image with pixel centres at integers
(points.py). A grid is `[B, H, W, 2]` (x, y) in `grid_sample`'s frame with `align_corners=False`:
-1 and 1 are the outer edges of the image, so pixel x maps to `(x + 0.5) * 2 / R - 1`. The grid
is a *backward* map: output pixel (i, j) of the driving frame reads the source at `grid[:, j, i]`.

Border anchors (fixed points on the crop's edge, the same in source and driving) keep the
background and the crop's frame in place while the face moves.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from talkinghead.face.points import to_grid


def border_anchors(size: int, per_side: int = 5) -> torch.Tensor:
    """`[4 * (per_side - 1), 2]` pixel points evenly spaced along the edge of a `size` crop."""
    edge = torch.linspace(-0.5, size - 0.5, per_side)
    low, high = torch.full_like(edge, -0.5), torch.full_like(edge, size - 0.5)
    points = torch.cat(
        [
            torch.stack([edge, low], 1)[:-1],
            torch.stack([high, edge], 1)[:-1],
            torch.stack([edge.flip(0), high], 1)[:-1],
            torch.stack([low, edge.flip(0)], 1)[:-1],
        ]
    )
    return points


def float32(fn):
    """Under autocast, run `fn` with it off and its tensor arguments in float32: landmark geometry
    (distances, the spline, its grid, the positions `warp` samples at) needs float32's 24 bits of
    precision; under bf16 autocast (8 bits) the spline's grid was up to 2 px off at 128 px
    (tests/test_warp.py). Without autocast, `fn` as it is."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        device = next(a.device.type for a in args if isinstance(a, torch.Tensor))
        if not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(
                *(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args), **kwargs
            )

    return wrapped


def _tps_kernel(distance_squared: torch.Tensor) -> torch.Tensor:
    """U(r) = r^2 log r^2 (0 at r = 0)."""
    return distance_squared * torch.log(distance_squared.clamp_min(1e-12))


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`[B, n, 2] x [B, m, 2] -> [B, n, m]` squared distances (no square root to undo)."""
    return ((a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None] - 2 * a @ b.transpose(1, 2)).clamp_min(0)


@float32
def tps_grid(
    source_points: torch.Tensor,
    driving_points: torch.Tensor,
    size: int,
    *,
    out_size: int | None = None,
    anchors: int = 5,
    regularization: float = 1e-3,
    landmark_regularization: torch.Tensor | None = None,
) -> torch.Tensor:
    """Thin-plate spline grid that moves the source so its landmarks land on the driving ones.

    Args:
        source_points: `[B, N, 2]`, or `[B, K, N, 2]` for K sources moved to the same driving
            points (the spline's kernel and its solve depend on the driving points only, so the K
            grids cost little more than one); pixels of a `size` image (N = 68 landmarks).
        driving_points: `[B, N, 2]`, same pixels.
        out_size: side of the grid (default `size`); the grid covers the same image.
        anchors: border points per side (0: none).
        regularization: added to the kernel's diagonal (smoothing; keeps repeated points solvable).
        landmark_regularization: `[N]`, each landmark's own instead (the border anchors keep
            `regularization`): a smooth flow that still puts some points exactly, e.g. the eyelids.

    Returns:
        `[B, out, out, 2]` (or `[B, K, out, out, 2]`) grid in `grid_sample`'s frame (align_corners=False).
    """
    many = source_points.dim() == 4
    sources = source_points if many else source_points[:, None]
    B, K = sources.shape[:2]
    dtype, device = torch.float32, source_points.device
    src = to_grid(sources.to(dtype), size)  # [B, K, N, 2]
    drv = to_grid(driving_points.to(dtype), size)  # [B, N, 2]
    if anchors:
        fixed = to_grid(border_anchors(size, anchors).to(device), size)[None].expand(B, -1, -1)
        src, drv = torch.cat([src, fixed[:, None].expand(-1, K, -1, -1)], 2), torch.cat([drv, fixed], 1)
    N = drv.shape[1]
    # Solve [K + lambda I, P; P^T, 0] [w; a] = [src; 0] for the map driving -> source, for all K
    # sources at once: columns (k, x/y) of the right-hand side.
    diagonal = torch.full((N,), float(regularization), device=device)
    if landmark_regularization is not None:
        count = len(landmark_regularization)
        diagonal = torch.cat([landmark_regularization.to(device, dtype), diagonal[count:]])
    kernel = _tps_kernel(squared_distances(drv, drv)) + torch.eye(N, device=device) * diagonal  # (ONNX has no diag)
    P = torch.cat([torch.ones(B, N, 1, device=device), drv], 2)  # [B, N, 3]
    top = torch.cat([kernel, P], 2)
    bottom = torch.cat([P.transpose(1, 2), torch.zeros(B, 3, 3, device=device)], 2)
    system = torch.cat([top, bottom], 1)  # [B, N + 3, N + 3]
    rhs = torch.cat([src.permute(0, 2, 1, 3).reshape(B, N, 2 * K), torch.zeros(B, 3, 2 * K, device=device)], 1)
    params = _solve(system, rhs)  # [B, N + 3, 2K]
    out = out_size or size
    axis = (torch.arange(out, device=device, dtype=dtype) + 0.5) * (2.0 / out) - 1.0
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    pixels = torch.stack([x, y], -1).reshape(1, -1, 2).expand(B, -1, -1)  # [B, HW, 2]
    U = _tps_kernel(squared_distances(pixels, drv))  # [B, HW, N]
    Pp = torch.cat([torch.ones(B, out * out, 1, device=device), pixels], 2)
    grid = (U @ params[:, :N] + Pp @ params[:, N:]).reshape(B, out, out, K, 2).permute(0, 3, 1, 2, 4)
    return grid if many else grid[:, 0]


# How an ONNX export solves the spline (inference/onnx.py): "inverse", onnxruntime's `com.microsoft`
# Inverse contrib op (one node, 0.3 ms), or "elimination", plain ONNX ops any runtime runs
# (about 4,900 nodes, 14 ms in onnxruntime on two cores).
EXPORT_SOLVERS = ("inverse", "elimination")
_export_solver = "inverse"


@contextlib.contextmanager
def export_solver(name: str):
    """Within: ONNX exports solve the spline with `name` (one of `EXPORT_SOLVERS`)."""
    global _export_solver
    if name not in EXPORT_SOLVERS:
        raise ValueError(f"export solver must be one of {EXPORT_SOLVERS}, got {name!r}")
    previous, _export_solver = _export_solver, name
    try:
        yield
    finally:
        _export_solver = previous


class _Inverse(torch.autograd.Function):
    """`torch.linalg.inv`, exported as onnxruntime's `com.microsoft::Inverse` (ONNX has no inverse)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor) -> torch.Tensor:
        return torch.linalg.inv(matrix)

    @staticmethod
    def symbolic(g, matrix):
        return g.op("com.microsoft::Inverse", matrix).setType(matrix.type())


def _solve(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """In float64 (the kernel matrix is badly conditioned for float32; 87 x 87, cheap either way).
    ONNX has no linear solve: an export uses `_export_solver` instead (inference/onnx.py)."""
    system, rhs = system.double(), rhs.double()
    if not torch.onnx.is_in_onnx_export():
        solution = torch.linalg.solve(system, rhs)
    elif _export_solver == "inverse":
        solution = _Inverse.apply(system) @ rhs
    else:
        solution = solve_by_elimination(system, rhs)
    return solution.to(torch.float32)


def solve_by_elimination(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """`[B, n, n] x = [B, n, m]` by Gauss-Jordan elimination with partial pivoting, in ops that
    trace to any graph format (one-hot row swaps, no data-dependent control flow)."""
    n = system.shape[-1]
    a = torch.cat([system, rhs], 2)  # [B, n, n + m]
    rows = torch.arange(n, device=system.device)
    for k in range(n):
        # Swap row k with the row (k or below) of largest |a[:, i, k]|.
        candidates = a[:, :, k].abs() * (rows >= k).to(a.dtype)
        pivot = candidates.argmax(1)  # [B]
        one_k = (rows == k).to(a.dtype)[None, :, None]  # [1, n, 1]
        one_p = (rows[None] == pivot[:, None]).to(a.dtype)[:, :, None]  # [B, n, 1]
        row_k = a[:, k : k + 1]  # [B, 1, n + m]
        row_p = (a * one_p).sum(1, keepdim=True)
        a = a + one_k * (row_p - row_k) + one_p * (row_k - row_p) * (1 - one_k)
        # Eliminate column k from every other row.
        row = a[:, k : k + 1] / a[:, k : k + 1, k : k + 1]
        factor = a[:, :, k : k + 1] * (1 - one_k)
        a = a - factor * row + one_k * (row - a[:, k : k + 1])
    return a[:, :, n:]


@float32
def warp(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample `[B, C, H, W]` at a `[B, h, w, 2]` grid (`mode`: "bilinear" or "bicubic"; border
    padding).

    Bilinear in an ONNX export: `sample_by_gather`, the same sampling (within float rounding) as
    four Gathers, which onnxruntime runs about twice as fast as its GridSample kernel on a CPU."""
    grid = grid.to(image.dtype)
    if mode == "bilinear" and torch.onnx.is_in_onnx_export():
        return sample_by_gather(image, grid)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=False)


def sample_by_gather(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`F.grid_sample(image, grid, "bilinear", padding_mode="border", align_corners=False)` from
    gathers of the four neighbouring pixels (`image` `[B, C, H, W]`, `grid` `[B, h, w, 2]`)."""
    B, C, H, W = image.shape
    h, w = grid.shape[1:3]
    # Grid units -> pixel coordinates (centres at integers), clamped: border padding.
    x = (((grid[..., 0] + 1) * W - 1) / 2).clamp(0, W - 1).reshape(B, 1, h * w)
    y = (((grid[..., 1] + 1) * H - 1) / 2).clamp(0, H - 1).reshape(B, 1, h * w)
    x0, y0 = x.floor(), y.floor()
    wx, wy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
    flat = image.reshape(B, C, H * W)

    def tap(row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
        return torch.gather(flat, 2, (row * W + column).expand(B, C, h * w))

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return (top * (1 - wy) + bottom * wy).reshape(B, C, h, w)


def resize_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """A grid at another resolution: same map, sampled at the new pixel centres."""
    if grid.shape[1] == size:
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False).permute(
        0, 2, 3, 1
    )
