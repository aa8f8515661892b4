"""Cores by config name. Static cores take (B, C_in, H, W) -> (B, C, H, W); video cores take
(B, C_in, T, H, W) -> (B, T, C, H, W). Every core has ``out_channels`` and ``regularizer()``."""

from neurofit.models.cores.conv import ConvCore, IdentityCore
from neurofit.models.cores.dwise import DwiseCore, DwiseVideoCore
from neurofit.models.cores.video import Conv3dCore, CTRNNCore, GRUCore, VideoCore

CORES = {"conv": ConvCore, "identity": IdentityCore, "gru": GRUCore, "ctrnn": CTRNNCore, "conv3d": Conv3dCore,
         "dwise": DwiseCore, "dwise_video": DwiseVideoCore}

__all__ = ["CORES", "CTRNNCore", "Conv3dCore", "ConvCore", "DwiseCore", "DwiseVideoCore", "GRUCore",
           "IdentityCore", "VideoCore"]
