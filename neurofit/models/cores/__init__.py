"""Cores by config name. Static cores take (B, C_in, H, W) -> (B, C, H, W); video cores take
(B, C_in, T, H, W) -> (B, T, C, H, W). Every core has ``out_channels`` and ``regularizer()``."""

from neurofit.models.cores.conv import ConvCore, IdentityCore

CORES = {"conv": ConvCore, "identity": IdentityCore}

__all__ = ["CORES", "ConvCore", "IdentityCore"]
