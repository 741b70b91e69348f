"""Building blocks of the paper's U-Nets (DDPM, DDPM++, NCSN++): init, resampling, residual blocks, attention.

Everything works on `[B, C, H, W]` feature maps and stays on the input's device and dtype. Layer
shapes follow score_sde so that parameter counts match the published configs.
"""
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Residual branches are summed with their skip path and divided by sqrt(2) when skip_rescale is on,
# which keeps the variance of the sum equal to that of each branch (NCSN++ / DDPM++).
SKIP_SCALE = 1.0 / math.sqrt(2.0)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "elu": nn.ELU,
}


def check_choice(kind: str, value: str, valid) -> str:
    """Return `value` if it is one of `valid`, else raise a ValueError that lists the valid names."""
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {sorted(valid)}")
    return value


def get_activation(name: str) -> nn.Module:
    """The nonlinearity called `name` ("swish", "relu", "lrelu", "elu")."""
    return ACTIVATIONS[check_choice("nonlinearity", name, ACTIVATIONS)]()


# ----------------------------------------------------------------------------------------------
# Initialisation: DDPM's variance scaling (fan_avg, uniform). A scale of 0 is replaced by 1e-10 so
# that "zero-initialised" output layers are numerically zero but every weight still gets a gradient
# through them from the first step on (the reference convention).
# ----------------------------------------------------------------------------------------------

def default_init_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """In place: U(-a, a) with a = sqrt(3 scale / fan_avg), fan_avg = (fan_in + fan_out) / 2."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3.0 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def conv2d(in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1, padding: int | None = None,
           init_scale: float = 1.0) -> nn.Conv2d:
    """A conv with default init and zero bias; padding defaults to 'same' for odd kernels."""
    padding = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
    default_init_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def dense(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with default init and zero bias."""
    layer = nn.Linear(in_features, out_features)
    default_init_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


# Group count of every GroupNorm, by name. NCSN++ / DDPM++ use min(C // 4, 32); score_sde's DDPM (as Ho
# et al.) always uses 32 groups, which needs C divisible by 32 -- widths the reference cannot build at all
# (small test networks) fall back to the NCSN++ rule. The two agree from 128 channels up.
NORM_GROUPS: dict[str, Callable[[int], int]] = {
    "ncsnpp": lambda c: min(c // 4, 32),
    "ddpm": lambda c: 32 if c % 32 == 0 else min(c // 4, 32),
}


def group_norm(channels: int, rule: str = "ncsnpp") -> nn.GroupNorm:
    """GroupNorm (eps 1e-6) with the group count of NORM_GROUPS[rule]: min(C // 4, 32), or 32 for DDPM."""
    groups = NORM_GROUPS[check_choice("norm_groups", rule, NORM_GROUPS)](channels)
    if groups < 1 or channels % groups:
        raise ValueError(f"GroupNorm cannot split {channels} channels into min(C // 4, 32) = {groups} groups; "
                         f"choose nf so that every feature width (nf * ch_mult and the concatenated skip widths) "
                         f"is >= 4 and divisible by its group count, e.g. multiples of 32 from 128 channels up")
    return nn.GroupNorm(groups, channels, eps=1e-6)


# ----------------------------------------------------------------------------------------------
# Resampling. upfirdn2d = zero-insertion upsampling, padding (negative pads crop), FIR filtering
# (a true convolution), then keeping every `down`-th pixel, as in StyleGAN2.
# ----------------------------------------------------------------------------------------------

def make_fir_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps [K] -> [K, K], normalised to sum 1."""
    # Validate on plain Python numbers: no tensor reads, so this also works under a meta device.
    try:
        values = [float(t) for t in taps]
    except (TypeError, ValueError):
        values = []
    if len(values) < 2 or not all(math.isfinite(v) for v in values) or sum(values) <= 0:
        raise ValueError(f"fir_kernel must be a 1-D list of >= 2 finite taps with a positive sum, got {taps!r}")
    k = torch.tensor(values, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (before, after) on both axes, convolve with `kernel` [K, K], subsample."""
    b, c, h, w = x.shape
    if up > 1:  # insert up-1 zeros after every pixel along H and W
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    x = x[..., max(-p0, 0):x.shape[-2] - max(-p1, 0), max(-p0, 0):x.shape[-1] - max(-p1, 0)]
    # conv2d correlates, so flip the kernel to convolve; one filter per channel (depthwise).
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[..., ::down, ::down]


def upsample_fir(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, fH, fW]; a constant image stays constant away from the border."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor ** 2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_fir(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/f, W/f]; kernel [1, 1] is average pooling."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, 2H, 2W] by pixel repetition."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample_avg(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/2, W/2] by 2x2 average pooling."""
    return F.avg_pool2d(x, 2, stride=2)


class FIRConv2d(nn.Module):
    """3x3 conv fused with FIR up- or downsampling by 2 (StyleGAN2): filter applied once, padding once."""

    def __init__(self, in_ch: int, out_ch: int, *, up: bool = False, down: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if up == down:
            raise ValueError("FIRConv2d needs exactly one of up=True or down=True")
        self.up = up
        self.weight = nn.Parameter(default_init_(torch.empty(out_ch, in_ch, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("fir_k", make_fir_kernel(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, taps = self.fir_k, self.fir_k.shape[0]
        if self.up:
            # Strided transposed conv == zero insertion then a conv with w; flip+transpose makes it w itself.
            x = F.conv_transpose2d(x, self.weight.flip(2, 3).transpose(0, 1), stride=2)
            p = taps - 4  # (K - factor) - (3 - 1)
            x = upfirdn2d(x, k * 4, pad=((p + 1) // 2 + 1, p // 2 + 1))
        else:
            p = taps  # (K - factor) + (3 - 1)
            x = F.conv2d(upfirdn2d(x, k, pad=((p + 1) // 2, p // 2)), self.weight, stride=2)
        return x + self.bias[None, :, None, None]


class Upsample(nn.Module):
    """x2 upsampling: nearest (+3x3 conv) or FIR (fused with the conv when with_conv)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if out_ch != in_ch and not with_conv:
            raise ValueError(f"Upsample without a conv cannot change channels ({in_ch} -> {out_ch})")
        self.fir = fir
        self.conv = None
        if with_conv:
            self.conv = FIRConv2d(in_ch, out_ch, up=True, fir_kernel=fir_kernel) if fir else conv2d(in_ch, out_ch)
        if fir and not with_conv:
            self.register_buffer("fir_k", make_fir_kernel(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.conv(x) if self.conv is not None else upsample_fir(x, self.fir_k)
        h = upsample_nearest(x)
        return self.conv(h) if self.conv is not None else h


class Downsample(nn.Module):
    """/2 downsampling: strided 3x3 conv or average pooling, or FIR (fused with the conv when with_conv)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if out_ch != in_ch and not with_conv:
            raise ValueError(f"Downsample without a conv cannot change channels ({in_ch} -> {out_ch})")
        self.fir = fir
        self.conv = None
        if with_conv:
            self.conv = (FIRConv2d(in_ch, out_ch, down=True, fir_kernel=fir_kernel) if fir
                         else conv2d(in_ch, out_ch, stride=2, padding=0))
        if fir and not with_conv:
            self.register_buffer("fir_k", make_fir_kernel(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.conv(x) if self.conv is not None else downsample_fir(x, self.fir_k)
        if self.conv is None:
            return downsample_avg(x)
        # TF "SAME" padding for a stride-2 3x3 conv on even sizes: one extra row/column at the end.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


# ----------------------------------------------------------------------------------------------
# Residual blocks and attention.
# ----------------------------------------------------------------------------------------------

class _ResBlockBase(nn.Module):
    """Shared body: GN-act-[resample]-conv, + Dense(act(temb)), GN-act-dropout-conv; then the skip sum."""

    def __init__(self, in_ch: int, out_ch: int, *, act: nn.Module, temb_dim: int | None, dropout: float,
                 skip_rescale: bool, init_scale: float, norm_groups: str = "ncsnpp"):
        super().__init__()
        self.act = act
        self.norm_0 = group_norm(in_ch, norm_groups)
        self.conv_0 = conv2d(in_ch, out_ch)
        self.temb_proj = dense(temb_dim, out_ch) if temb_dim is not None else None
        self.norm_1 = group_norm(out_ch, norm_groups)
        self.dropout = nn.Dropout(dropout)
        # init_scale 0 makes each block start as (almost) the identity on its skip path.
        self.conv_1 = conv2d(out_ch, out_ch, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def _residual(self, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv_0(h)
        if self.temb_proj is not None:
            if temb is None:
                raise ValueError("this block is time-conditional but received temb=None")
            h = h + self.temb_proj(self.act(temb))[:, :, None, None]
        return self.conv_1(self.dropout(self.act(self.norm_1(h))))

    def _combine(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (x + h) * SKIP_SCALE if self.skip_rescale else x + h


class ResBlockDDPM(_ResBlockBase):
    """DDPM residual block [B, in_ch, H, W] -> [B, out_ch, H, W]; 1x1 shortcut (init 0.1) if channels change."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, act: nn.Module, temb_dim: int | None = None,
                 dropout: float = 0.1, skip_rescale: bool = False, init_scale: float = 0.0,
                 norm_groups: str = "ncsnpp"):
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, act=act, temb_dim=temb_dim, dropout=dropout,
                         skip_rescale=skip_rescale, init_scale=init_scale, norm_groups=norm_groups)
        self.shortcut = conv2d(in_ch, out_ch, 1, init_scale=0.1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self._residual(self.act(self.norm_0(x)), temb)
        return self._combine(x if self.shortcut is None else self.shortcut(x), h)


class ResBlockBigGAN(_ResBlockBase):
    """BigGAN residual block, optionally resampling by 2 inside (up or down): [B, in_ch, H, W] -> [B, out_ch, H', W']."""

    def __init__(self, in_ch: int, out_ch: int | None = None, *, act: nn.Module, temb_dim: int | None = None,
                 up: bool = False, down: bool = False, dropout: float = 0.1, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True, init_scale: float = 0.0,
                 norm_groups: str = "ncsnpp"):
        out_ch = out_ch or in_ch
        if up and down:
            raise ValueError("ResBlockBigGAN cannot both upsample and downsample")
        super().__init__(in_ch, out_ch, act=act, temb_dim=temb_dim, dropout=dropout,
                         skip_rescale=skip_rescale, init_scale=init_scale, norm_groups=norm_groups)
        self.up, self.down, self.fir = up, down, fir
        if fir:
            self.register_buffer("fir_k", make_fir_kernel(fir_kernel), persistent=False)
        self.shortcut = conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or up or down) else None

    def _resample(self, t: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_fir(t, self.fir_k) if self.fir else upsample_nearest(t)
        if self.down:
            return downsample_fir(t, self.fir_k) if self.fir else downsample_avg(t)
        return t

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        # Both paths are resampled, after the first activation on the residual path.
        h = self._residual(self._resample(self.act(self.norm_0(x))), temb)
        x = self._resample(x)
        return self._combine(x if self.shortcut is None else self.shortcut(x), h)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions: [B, C, H, W] -> [B, C, H, W] (DDPM style)."""

    def __init__(self, channels: int, *, skip_rescale: bool = False, init_scale: float = 0.0,
                 norm_groups: str = "ncsnpp"):
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.q = conv2d(channels, channels, 1, init_scale=0.1)
        self.k = conv2d(channels, channels, 1, init_scale=0.1)
        self.v = conv2d(channels, channels, 1, init_scale=0.1)
        self.out = conv2d(channels, channels, 1, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).reshape(b, c, hgt * wid) for proj in (self.q, self.k, self.v))
        # w[b, i, j]: how much position i attends to position j.
        w = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=-1)
        h = torch.bmm(v, w.transpose(1, 2)).reshape(b, c, hgt, wid)
        h = self.out(h)
        return (x + h) * SKIP_SCALE if self.skip_rescale else x + h


class Combine(nn.Module):
    """Merge a (projected) pyramid image into features: 1x1 conv dim1 -> dim2, then sum or concat."""

    METHODS = ("sum", "cat")

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        self.method = check_choice("progressive_combine", method, self.METHODS)
        self.proj = conv2d(dim1, dim2, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y
