"""Stimuli of the in-silico experiments, as contrast (grey levels minus the mean luminance) torch tensors:
gratings with an optional soft disc window, white noise, and the Gaussian blur that smooths MEI gradients.

Orientation is the simulator's convention (``rf_orientation_rad``): the direction in which the carrier
varies (perpendicular to the bars), radians, image axes x to the right and y down; spatial frequency in
cycles per pixel; the phase is that of the cosine carrier at the window centre.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Width of the raised-cosine edge of a grating window, pixels (a hard edge would add broadband energy).
WINDOW_EDGE_PX = 1.5


def gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) with std ``sigma_px`` pixels (reflected borders); 0 returns the
    input unchanged."""
    if sigma_px <= 0:
        return images
    radius = max(1, int(np.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    out = images.unsqueeze(1)
    height, width = images.shape[-2:]
    # Reflection needs a border smaller than the image; tiny test images fall back to replicated edges.
    mode = "reflect" if radius < min(height, width) else "replicate"
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode=mode), kernel.reshape(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode=mode), kernel.reshape(1, 1, -1, 1))
    return out.squeeze(1)


def disc_windows(centre_px: np.ndarray, diameter_px: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """Soft discs (C, H, W) in [0, 1] centred at ``centre_px`` (C, 2) x/y pixels with diameters (C,) pixels
    (inf: the whole screen), with a raised-cosine edge ``WINDOW_EDGE_PX`` wide."""
    ys, xs = torch.meshgrid(torch.arange(shape[0], dtype=torch.float32),
                            torch.arange(shape[1], dtype=torch.float32), indexing="ij")
    centre = torch.as_tensor(np.asarray(centre_px, dtype=np.float32))
    radius = torch.as_tensor(np.asarray(diameter_px, dtype=np.float32)) / 2
    distance = torch.sqrt((xs - centre[:, 0, None, None]) ** 2 + (ys - centre[:, 1, None, None]) ** 2)
    edge = ((distance - radius[:, None, None]) / WINDOW_EDGE_PX + 0.5).clamp(0, 1)
    return 0.5 * (1 + torch.cos(np.pi * edge))


def gratings(orientation_rad: np.ndarray, sf_cpp: np.ndarray, phases_rad: np.ndarray, centre_px: np.ndarray,
             diameter_px: np.ndarray, amplitude: float, shape: tuple[int, int]) -> torch.Tensor:
    """Cosine gratings (C, P, H, W) in contrast units: condition c has orientation (C,), spatial frequency
    (C,) and window (``disc_windows``); ``phases_rad`` (P,) or (C, P) are its frames (still phases or the
    frames of a drift); ``amplitude``: peak contrast, grey levels."""
    ys, xs = torch.meshgrid(torch.arange(shape[0], dtype=torch.float32),
                            torch.arange(shape[1], dtype=torch.float32), indexing="ij")
    centre = torch.as_tensor(np.asarray(centre_px, dtype=np.float32))
    theta = torch.as_tensor(np.asarray(orientation_rad, dtype=np.float32))[:, None, None]
    along = (xs - centre[:, 0, None, None]) * torch.cos(theta) + (ys - centre[:, 1, None, None]) * torch.sin(theta)
    carrier = 2 * np.pi * torch.as_tensor(np.asarray(sf_cpp, dtype=np.float32))[:, None, None] * along
    phases = torch.as_tensor(np.broadcast_to(phases_rad, (len(theta), np.shape(phases_rad)[-1])).copy(),
                             dtype=torch.float32)
    window = disc_windows(centre_px, diameter_px, shape)
    return amplitude * window[:, None] * torch.cos(carrier[:, None] + phases[:, :, None, None])


def white_noise(generator: torch.Generator, n: int, shape: tuple[int, int], std: float) -> torch.Tensor:
    """Gaussian white noise (n, H, W) with pixel std ``std`` grey levels, in contrast units."""
    return std * torch.randn((n, *shape), generator=generator)
