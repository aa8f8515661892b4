"""Training-time augmentation that keeps receptive fields where they are (no shifts, flips or crops)."""

from __future__ import annotations

import math

import torch

from neurofit.config.schema import CutMixConfig


def cutmix(batch: dict, cfg: CutMixConfig, generator: torch.Generator | None = None) -> dict:
    """With probability ``cfg.probability`` mix every trial with another of the batch (a random pairing): a
    box of the other trial's stimulus replaces the same box of this one (on every frame of a video), and the
    responses mix by the kept area, ``lam r_a + (1 - lam) r_b``. A frame counts only where both trials were
    recorded. Returns the batch, unchanged when the mix is not drawn; behaviour and eye position stay each
    trial's own.

    Shapes: stimulus (B, [T,] H, W), responses (B, [T,] N), response_mask (B, [T]) if present."""
    stimulus = batch["stimulus"]
    if len(stimulus) < 2 or torch.rand((), generator=generator).item() >= cfg.probability:
        return batch
    h, w = stimulus.shape[-2:]
    lam = float(torch.distributions.Beta(cfg.alpha, cfg.alpha).sample())
    bh, bw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    top = int(torch.randint(0, h - bh + 1, (), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (), generator=generator))
    lam = 1 - bh * bw / (h * w)  # the area actually kept, after rounding the box to pixels
    other = torch.randperm(len(stimulus), generator=generator).to(stimulus.device)
    mixed = stimulus.clone()
    mixed[..., top:top + bh, left:left + bw] = stimulus[other][..., top:top + bh, left:left + bw]
    responses, out = batch["responses"], {**batch, "stimulus": mixed}
    mask = batch.get("response_mask")
    if mask is not None:  # unrecorded (NaN) responses of either trial must not leak into the mix
        out["response_mask"] = mask & mask[other]
        responses = torch.where(mask.unsqueeze(-1), responses, torch.zeros_like(responses))
    out["responses"] = lam * responses + (1 - lam) * responses[other]
    return out
