"""NCSN++ / DDPM++: the configurable U-Net of Song et al. (2021), one class for both.

DDPM++ cont. (VP): biggan blocks, no FIR, positional embedding of the label, init_scale 0 (the defaults).
NCSN++ cont. (VE): fir=True, progressive_input="residual", embedding_type="fourier".
`forward(x [B, C, H, W], label [B]) -> [B, C, H, W]` embeds `label` as given: the score converter
(`models.get_score_fn`) decides what the label is (t, an index, log sigma) and how the output is
scaled, so there is no division by sigma here. With `centered=False` (data in [0, 1], the reference's
`data.centered=False`) the network maps its input to 2 x - 1 first, as score_sde's networks do.
"""
from typing import Sequence

import torch
from torch import nn

from models.blocks import (NORM_GROUPS, SKIP_SCALE, AttnBlock, Combine, Downsample, ResBlockBigGAN, ResBlockDDPM,
                           Upsample, check_choice, conv2d, dense, get_activation, group_norm)
from models.embedding import GaussianFourierProjection, sinusoidal_embedding

RESBLOCK_TYPES = ("biggan", "ddpm")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
EMBEDDING_TYPES = ("positional", "fourier")
ATTENTION_TYPES = ("ddpm",)
NORMALIZATIONS = ("GroupNorm",)


def _validate(*, image_size: int, num_channels: int, nf: int, ch_mult: Sequence[int], num_res_blocks: int,
              attn_resolutions: Sequence[int], dropout: float, conv_size: int) -> list[int]:
    """Check the numeric options; return the resolution of every U-Net level, finest first."""
    if not ch_mult or any(int(m) != m or m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty sequence of positive integers, got {ch_mult!r}")
    for name, value in (("image_size", image_size), ("num_channels", num_channels), ("nf", nf),
                        ("num_res_blocks", num_res_blocks)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    factor = 2 ** (len(ch_mult) - 1)
    if image_size % factor:
        raise ValueError(f"image_size {image_size} is not divisible by 2**(len(ch_mult)-1) = {factor} "
                         f"(ch_mult={tuple(ch_mult)} halves the resolution {len(ch_mult) - 1} times)")
    resolutions = [image_size // 2 ** i for i in range(len(ch_mult))]
    unknown = [r for r in attn_resolutions if r not in resolutions]
    if unknown:
        raise ValueError(f"attn_resolutions {tuple(attn_resolutions)} contains {unknown}, which is not a "
                         f"resolution of this U-Net; expected values from {resolutions}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if conv_size != 3:
        raise ValueError(f"conv_size {conv_size!r} is not supported; the reference networks use 3x3 convs only")
    return resolutions


class NCSNpp(nn.Module):
    """DDPM++ / NCSN++ score network: `forward(x [B, C, H, W], label [B]) -> [B, C, H, W]` (MATH.md section 4)."""

    def __init__(self, *, image_size: int = 32, num_channels: int = 3, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.1, resamp_with_conv: bool = True, conditional: bool = True, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True, resblock_type: str = "biggan",
                 progressive: str = "none", progressive_input: str = "none", progressive_combine: str = "sum",
                 attention_type: str = "ddpm", embedding_type: str = "positional", fourier_scale: float = 16.0,
                 init_scale: float = 0.0, conv_size: int = 3, nonlinearity: str = "swish",
                 normalization: str = "GroupNorm", centered: bool = True, norm_groups: str = "ncsnpp"):
        super().__init__()
        self.resolutions = _validate(image_size=image_size, num_channels=num_channels, nf=nf, ch_mult=ch_mult,
                                     num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                                     dropout=dropout, conv_size=conv_size)
        self.resblock_type = check_choice("resblock_type", resblock_type, RESBLOCK_TYPES)
        self.progressive = check_choice("progressive", progressive, PROGRESSIVE)
        self.progressive_input = check_choice("progressive_input", progressive_input, PROGRESSIVE_INPUT)
        self.embedding_type = check_choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        check_choice("progressive_combine", progressive_combine, Combine.METHODS)
        check_choice("attention_type", attention_type, ATTENTION_TYPES)
        check_choice("normalization", normalization, NORMALIZATIONS)
        self.norm_groups = check_choice("norm_groups", norm_groups, NORM_GROUPS)
        self.centered = bool(centered)
        self.image_size, self.num_channels, self.nf = image_size, num_channels, nf
        self.ch_mult, self.num_res_blocks, self.attn_resolutions = tuple(ch_mult), num_res_blocks, tuple(attn_resolutions)
        self.resamp_with_conv, self.conditional, self.fir, self.fir_kernel = resamp_with_conv, conditional, fir, fir_kernel
        self.skip_rescale, self.init_scale, self.dropout = skip_rescale, init_scale, dropout
        self.progressive_combine = progressive_combine
        self.act = get_activation(nonlinearity)
        self._build_embedding(fourier_scale)
        self.conv_in = conv2d(num_channels, nf)
        skip_channels = self._build_down()
        mid_ch = skip_channels[-1]
        self.mid = nn.ModuleList([self._resblock(mid_ch), self._attn(mid_ch), self._resblock(mid_ch)])
        out_ch = self._build_up(skip_channels, mid_ch)
        if self.progressive != "output_skip":
            self.norm_out = group_norm(out_ch, self.norm_groups)
            self.conv_out = conv2d(out_ch, num_channels, init_scale=init_scale)

    # ------------------------------------------------------------------ construction helpers
    def _build_embedding(self, fourier_scale: float) -> None:
        """Label embedding (fixed Fourier features or sinusoidal) and the MLP that maps it to temb [B, 4 nf]."""
        nf = self.nf
        self.fourier = GaussianFourierProjection(nf, fourier_scale) if self.embedding_type == "fourier" else None
        embed_dim = 2 * nf if self.fourier is not None else nf
        self.temb_mlp = nn.Sequential(dense(embed_dim, 4 * nf), self.act, dense(4 * nf, 4 * nf)) if self.conditional else None

    def _resblock(self, in_ch: int, out_ch: int | None = None, *, up: bool = False, down: bool = False) -> nn.Module:
        common = dict(act=self.act, temb_dim=4 * self.nf if self.conditional else None, dropout=self.dropout,
                      skip_rescale=self.skip_rescale, init_scale=self.init_scale, norm_groups=self.norm_groups)
        if self.resblock_type == "ddpm":
            return ResBlockDDPM(in_ch, out_ch, **common)
        return ResBlockBigGAN(in_ch, out_ch, up=up, down=down, fir=self.fir, fir_kernel=self.fir_kernel, **common)

    def _attn(self, channels: int) -> AttnBlock:
        return AttnBlock(channels, skip_rescale=self.skip_rescale, init_scale=self.init_scale,
                         norm_groups=self.norm_groups)

    def _resample(self, in_ch: int, *, up: bool) -> nn.Module:
        """The level transition: a BigGAN block that resamples, or a plain/FIR (conv) resampler."""
        if self.resblock_type == "biggan":
            return self._resblock(in_ch, up=up, down=not up)
        cls = Upsample if up else Downsample
        return cls(in_ch, with_conv=self.resamp_with_conv, fir=self.fir, fir_kernel=self.fir_kernel)

    def _build_down(self) -> list[int]:
        """Encoder levels; returns the channel count of every skip activation, in push order."""
        nf, fir, fir_kernel = self.nf, self.fir, self.fir_kernel
        skip_channels, in_ch, pyramid_ch = [nf], nf, self.num_channels
        self.down_levels = nn.ModuleList()
        if self.progressive_input == "input_skip":  # parameter-free: the raw image, resampled down
            self.pyramid_downsample = Downsample(self.num_channels, fir=fir, fir_kernel=fir_kernel)
        for i_level, mult in enumerate(self.ch_mult):
            level = nn.ModuleDict({"blocks": nn.ModuleList()})
            if self.resolutions[i_level] in self.attn_resolutions:
                level["attns"] = nn.ModuleList()
            for _ in range(self.num_res_blocks):
                level["blocks"].append(self._resblock(in_ch, nf * mult))
                in_ch = nf * mult
                if "attns" in level:
                    level["attns"].append(self._attn(in_ch))
                skip_channels.append(in_ch)
            if i_level < len(self.ch_mult) - 1:
                level["down"] = self._resample(in_ch, up=False)
                if self.progressive_input == "input_skip":
                    level["pyramid"] = Combine(self.num_channels, in_ch, method=self.progressive_combine)
                    in_ch = 2 * in_ch if self.progressive_combine == "cat" else in_ch
                elif self.progressive_input == "residual":
                    level["pyramid"] = Downsample(pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel)
                    pyramid_ch = in_ch
                skip_channels.append(in_ch)
            self.down_levels.append(level)
        return skip_channels

    def _build_up(self, skip_channels: list[int], in_ch: int) -> int:
        """Decoder levels, coarsest first; consumes `skip_channels`; returns the final channel count."""
        skip_channels = list(skip_channels)
        self.up_levels = nn.ModuleList()
        pyramid_ch = 0
        for i_level in reversed(range(len(self.ch_mult))):
            level = nn.ModuleDict({"blocks": nn.ModuleList()})
            for _ in range(self.num_res_blocks + 1):
                out_ch = self.nf * self.ch_mult[i_level]
                level["blocks"].append(self._resblock(in_ch + skip_channels.pop(), out_ch))
                in_ch = out_ch
            if self.resolutions[i_level] in self.attn_resolutions:
                level["attn"] = self._attn(in_ch)
            pyramid_ch = self._build_output_pyramid(level, in_ch, pyramid_ch, coarsest=not self.up_levels)
            if i_level > 0:
                level["up"] = self._resample(in_ch, up=True)
            self.up_levels.append(level)
        assert not skip_channels, "every skip activation must be consumed exactly once"
        return in_ch

    def _build_output_pyramid(self, level: nn.ModuleDict, in_ch: int, pyramid_ch: int, *, coarsest: bool) -> int:
        """Modules of the progressive output path at one decoder level; returns the pyramid's channels."""
        fir, fir_kernel, channels = self.fir, self.fir_kernel, self.num_channels
        if self.progressive == "output_skip":
            # Each level adds its own image-space prediction to the upsampled one from the level below.
            level["pyramid_norm"] = group_norm(in_ch, self.norm_groups)
            level["pyramid_conv"] = conv2d(in_ch, channels, init_scale=self.init_scale)
            if coarsest:
                self.pyramid_upsample = Upsample(channels, fir=fir, fir_kernel=fir_kernel)
            return channels
        if self.progressive == "residual":
            if coarsest:
                level["pyramid_norm"] = group_norm(in_ch, self.norm_groups)
                level["pyramid_conv"] = conv2d(in_ch, in_ch)
            else:
                level["pyramid_up"] = Upsample(pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel)
            return in_ch
        return pyramid_ch

    # ------------------------------------------------------------------ forward pass
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], label [B] (or a scalar, shared by the batch) -> [B, C, H, W]."""
        label = self._check_inputs(x, label)
        temb = self._embed(label.to(x.dtype)) if self.conditional else None
        if not self.centered:  # data in [0, 1]: the reference network centres it itself
            x = 2 * x - 1
        hs = self._encode(x, temb)
        h = hs[-1]
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        return self._decode(h, hs, temb)

    def _check_inputs(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        expected = (self.num_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected x of shape [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        if label.dim() == 0:
            return label.expand(x.shape[0])
        if tuple(label.shape) != (x.shape[0],):
            raise ValueError(f"expected label of shape [{x.shape[0]}] (one scalar per sample), got {tuple(label.shape)}")
        return label

    def _embed(self, label: torch.Tensor) -> torch.Tensor:
        """label [B] -> temb [B, 4 nf]."""
        emb = self.fourier(label) if self.fourier is not None else sinusoidal_embedding(label, self.nf)
        return self.temb_mlp(emb)

    def _level_transition(self, module: nn.Module, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return module(h, temb) if isinstance(module, ResBlockBigGAN) else module(h)

    def _skip_sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b) * SKIP_SCALE if self.skip_rescale else a + b

    def _encode(self, x: torch.Tensor, temb: torch.Tensor | None) -> list[torch.Tensor]:
        """Encoder: returns every skip activation, finest first."""
        input_pyramid = x
        hs = [self.conv_in(x)]
        for level in self.down_levels:
            for i, block in enumerate(level["blocks"]):
                h = block(hs[-1], temb)
                hs.append(level["attns"][i](h) if "attns" in level else h)
            if "down" not in level:
                continue
            h = self._level_transition(level["down"], hs[-1], temb)
            if self.progressive_input == "input_skip":  # inject the downsampled image
                input_pyramid = self.pyramid_downsample(input_pyramid)
                h = level["pyramid"](input_pyramid, h)
            elif self.progressive_input == "residual":  # a second, conv-resampled path from the image
                input_pyramid = self._skip_sum(level["pyramid"](input_pyramid), h)
                h = input_pyramid
            hs.append(h)
        return hs

    def _decode(self, h: torch.Tensor, hs: list[torch.Tensor], temb: torch.Tensor | None) -> torch.Tensor:
        """Decoder: consumes the skip activations coarsest first; returns the output [B, C, H, W]."""
        hs = list(hs)
        pyramid = None
        for level in self.up_levels:
            for block in level["blocks"]:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            if "attn" in level:
                h = level["attn"](h)
            h, pyramid = self._output_pyramid(level, h, pyramid)
            if "up" in level:
                h = self._level_transition(level["up"], h, temb)
        if self.progressive == "output_skip":
            return pyramid
        return self.conv_out(self.act(self.norm_out(h)))

    def _output_pyramid(self, level: nn.ModuleDict, h: torch.Tensor,
                        pyramid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One decoder level of the progressive output path; returns the (possibly updated) h and pyramid."""
        if self.progressive == "none":
            return h, pyramid
        if "pyramid_conv" in level:
            pyramid_h = level["pyramid_conv"](self.act(level["pyramid_norm"](h)))
            if self.progressive == "residual":  # coarsest level starts the residual pyramid
                return h, pyramid_h
            return h, pyramid_h if pyramid is None else self.pyramid_upsample(pyramid) + pyramid_h
        # residual, finer levels: upsample the pyramid (with a conv) and make it the new features
        pyramid = self._skip_sum(level["pyramid_up"](pyramid), h)
        return pyramid, pyramid
