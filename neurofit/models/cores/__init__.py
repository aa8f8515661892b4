"""Cores by config name. Static cores take (B, C_in, H, W) -> (B, C, H, W); video cores take
(B, C_in, T, H, W) -> (B, T, C, H, W). Every core has ``out_channels`` and ``regularizer()``."""

from neurofit.models.cores.conv import ConvCore, IdentityCore
from neurofit.models.cores.video import Conv3dCore, CTRNNCore, GRUCore, VideoCore

CORES = {"conv": ConvCore, "identity": IdentityCore, "gru": GRUCore, "ctrnn": CTRNNCore, "conv3d": Conv3dCore}

__all__ = ["CORES", "CTRNNCore", "Conv3dCore", "ConvCore", "GRUCore", "IdentityCore", "VideoCore"]
