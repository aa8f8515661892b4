"""Readouts by config name. Each factory takes (n_neurons, in_channels, coords_um (N, 3) um,
image_shape (H, W), **options) so the encoder builds any of them the same way."""

from __future__ import annotations

import torch
from torch import nn

from neurofit.models.readouts.base import ReadoutOutput
from neurofit.models.readouts.factorized import FactorizedReadout
from neurofit.models.readouts.gaussian import GaussianReadout


def _gaussian(n_neurons: int, in_channels: int, coords_um: torch.Tensor, image_shape: tuple[int, int],
              **options) -> nn.Module:
    return GaussianReadout(n_neurons, in_channels, coords_um=coords_um, image_shape=image_shape, **options)


def _factorized(n_neurons: int, in_channels: int, coords_um: torch.Tensor, image_shape: tuple[int, int],
                **options) -> nn.Module:
    return FactorizedReadout(n_neurons, in_channels, *image_shape, **options)


READOUTS = {"gaussian": _gaussian, "factorized": _factorized}
#: The classes behind READOUTS, whose keyword parameters are the readouts' config options.
READOUT_CLASSES = {"gaussian": GaussianReadout, "factorized": FactorizedReadout}

__all__ = ["READOUTS", "READOUT_CLASSES", "FactorizedReadout", "GaussianReadout", "ReadoutOutput"]
