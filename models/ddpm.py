"""Ho et al.'s (2020) DDPM U-Net, as score_sde's `ddpm` model uses it (35.7M parameters on CIFAR-10).

It is the NCSN++ family with every "++" switched off: DDPM residual blocks without skip rescaling,
nearest / strided-conv resampling without FIR, a sinusoidal embedding of the label, and zero-initialised
(scale 1e-10) last convs in every residual branch, in attention and at the output; and GroupNorms with 32
groups (NCSN++ uses min(C // 4, 32); the two agree from 128 channels up).
"""
from typing import Sequence

from models.ncsnpp import NCSNpp


class DDPM(NCSNpp):
    """DDPM score network: `forward(x [B, C, H, W], label [B]) -> [B, C, H, W]` (MATH.md sections 3-4)."""

    def __init__(self, *, image_size: int = 32, num_channels: int = 3, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.1, resamp_with_conv: bool = True, conditional: bool = True,
                 nonlinearity: str = "swish", centered: bool = True):
        super().__init__(image_size=image_size, num_channels=num_channels, nf=nf, ch_mult=ch_mult,
                         num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions, dropout=dropout,
                         resamp_with_conv=resamp_with_conv, conditional=conditional, nonlinearity=nonlinearity,
                         resblock_type="ddpm", skip_rescale=False, init_scale=0.0, fir=False,
                         progressive="none", progressive_input="none", embedding_type="positional",
                         centered=centered, norm_groups="ddpm")
