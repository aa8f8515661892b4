"""Sub-pixel translation of images by bicubic interpolation (``torch.nn.functional.grid_sample``).

Used to drift scenes across the screen and to move the image on the retina with eye position. Cheaper than
Fourier shifts for many frames, since each output pixel reads only a 4 x 4 neighbourhood, and free of the
ringing that a Fourier shift gives at occluding edges.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import grid_sample, pad

_BLOCK = 4096


def shift_frames(frames: torch.Tensor, dx: np.ndarray, dy: np.ndarray) -> torch.Tensor:
    """``out[b, y, x] = frames[b](y + dy[b], x + dx[b])``; pixels from outside a frame read as 0.

    Args:
        frames: (B, H, W) float32 (mean-subtracted, so 0 is mean grey).
        dx, dy: (B,) shifts in pixels.
    Returns:
        (B, H, W) float32.
    """
    n, height, width = frames.shape
    out = torch.empty_like(frames)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        grid = _grid(height, width, dx[start:stop], dy[start:stop], (height, width))
        out[start:stop] = grid_sample(frames[start:stop, None], grid, mode="bicubic", padding_mode="zeros",
                                      align_corners=False)[:, 0]
    return out


def drift_scene(scene: torch.Tensor, dx: np.ndarray, dy: np.ndarray, out_shape: tuple[int, int],
                origin: tuple[int, int]) -> torch.Tensor:
    """Windows of a periodic scene at many offsets: ``out[f, y, x] = scene(origin + (y, x) + (dy[f], dx[f]))``.

    Args:
        scene: (Hc, Wc) float32, treated as periodic (it tiles the plane); Hc, Wc >= out_shape + 3.
        dx, dy: (F,) offsets in pixels, any size (they wrap around the scene).
        out_shape: (height, width) of the windows; origin: their top-left corner (y, x) at zero offset.
    Returns:
        (F, height, width) float32.
    """
    height, width = out_shape
    scene_h, scene_w = scene.shape
    # Wrap the offsets into the scene, then pad it periodically so a window never leaves the padded copy.
    oy = np.mod(origin[0] + dy, scene_h)
    ox = np.mod(origin[1] + dx, scene_w)
    padded = pad(scene[None, None], (2, width + 3, 2, height + 3), mode="circular")
    grid = _grid(height, width, ox + 2, oy + 2, padded.shape[2:])
    # All windows of a scene are stacked vertically into one output image, so one call samples them all.
    grid = grid.reshape(1, len(dx) * height, width, 2)
    return grid_sample(padded, grid, mode="bicubic", align_corners=False)[0, 0].reshape(len(dx), height, width)


def _grid(height: int, width: int, dx: np.ndarray, dy: np.ndarray, source_hw: tuple[int, int]) -> torch.Tensor:
    """(B, height, width, 2) grid_sample positions of source pixels (x + dx, y + dy), x and y in pixels, in
    grid_sample's [-1, 1] pixel-centre units (``align_corners=False``)."""
    src_h, src_w = source_hw
    xs = torch.arange(width, dtype=torch.float32)[None, :] + torch.from_numpy(np.asarray(dx, np.float32))[:, None]
    ys = torch.arange(height, dtype=torch.float32)[None, :] + torch.from_numpy(np.asarray(dy, np.float32))[:, None]
    grid = torch.empty((len(dx), height, width, 2), dtype=torch.float32)
    # Broadcast assignment fills the grid without materialising two full-size coordinate tensors first.
    grid[..., 0] = ((2 * xs + 1) / src_w - 1)[:, None, :]
    grid[..., 1] = ((2 * ys + 1) / src_h - 1)[:, :, None]
    return grid
