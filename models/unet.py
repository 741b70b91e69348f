"""A small U-Net sized for CPU training on 8x8 and 28x28 images."""
import torch
from torch import nn

from models.embedding import sinusoidal_embedding


def _groups(channels: int) -> int:
    """The largest GroupNorm group count <= 32 that leaves at least 4 channels per group."""
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, with a skip connection."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, out_ch)
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, temb):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the spatial positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))


class ClassEmbedding(nn.Module):
    """Class labels [B] -> a vector [B, dim] added to the time embedding; index num_classes is the
    null label (no class: the unconditional score). Starts at zero, so a fresh conditional network
    is the unconditional one."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1 for a class embedding, got {num_classes!r}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.zeros_(self.table.weight)

    def forward(self, class_labels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if class_labels is None:  # no labels: the null label for every sample
            class_labels = torch.full((like.shape[0],), self.num_classes, device=like.device, dtype=torch.long)
        return self.table(class_labels.to(like.device)).to(like.dtype)


def class_embedding(num_classes: int, dim: int) -> ClassEmbedding | None:
    """The label embedding of a class-conditional network, None for num_classes = 0 (unconditional)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional), got {num_classes!r}")
    return ClassEmbedding(num_classes, dim) if num_classes else None


def add_class_embedding(temb: torch.Tensor, embedding: ClassEmbedding | None, class_labels) -> torch.Tensor:
    """temb + the class embedding (the null label when class_labels is None); unchanged without one."""
    if embedding is None:
        if class_labels is not None:
            raise ValueError("class_labels were given to an unconditional network (num_classes=0)")
        return temb
    return temb + embedding(class_labels, temb)


class SmallUNet(nn.Module):
    """model(x [B, C, H, W], label [B], class_labels [B] | None) -> [B, C, H, W]; H = W must divide by
    2^(len(ch_mult)-1). `num_classes` > 0 adds a class embedding to the time embedding (class_labels
    None or num_classes: the null label); 0 (the default) is unconditional, with no extra weights."""

    def __init__(self, image_size: int = 8, num_channels: int = 1, nf: int = 64, ch_mult=(1, 2),
                 num_res_blocks: int = 2, attn_resolutions=(), dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        levels = len(ch_mult)
        if levels < 1 or image_size % (2 ** (levels - 1)) != 0:
            raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult)-1)={2 ** (levels - 1)}"
                             f" for ch_mult={tuple(ch_mult)}")
        resolutions = [image_size // 2 ** i for i in range(levels)]
        unknown = [r for r in attn_resolutions if r not in resolutions]
        if unknown:
            raise ValueError(f"attn_resolutions={tuple(attn_resolutions)} contains {unknown}, which is not a resolution "
                             f"of this U-Net; expected values from {resolutions}")
        self.image_size, self.num_channels, self.nf = image_size, num_channels, nf
        temb_dim = 4 * nf
        self.temb_mlp = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(num_channels, nf, 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        chans, ch, res = [nf], nf, image_size
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(self._block(ch, nf * mult, temb_dim, dropout, res in attn_resolutions))
                ch = nf * mult
                chans.append(ch)
            if level < levels - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                chans.append(ch)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, temb_dim, dropout), AttnBlock(ch), ResBlock(ch, ch, temb_dim, dropout)])
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._block(ch + chans.pop(), nf * mult, temb_dim, dropout, res in attn_resolutions))
                ch = nf * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
                res *= 2
        self.norm_out, self.conv_out = _norm(ch), nn.Conv2d(ch, num_channels, 3, padding=1)
        self.num_classes = num_classes
        self.class_embed = class_embedding(num_classes, temb_dim)  # created last: the other weights' init is unchanged

    @staticmethod
    def _block(in_ch, out_ch, temb_dim, dropout, attn):
        res = ResBlock(in_ch, out_ch, temb_dim, dropout)
        return nn.ModuleList([res, AttnBlock(out_ch)]) if attn else nn.ModuleList([res])

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(f"SmallUNet expects x of shape [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        temb = self.temb_mlp(sinusoidal_embedding(label, self.nf).to(x.dtype))
        temb = add_class_embedding(temb, self.class_embed, class_labels)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, temb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb)), temb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run_layer(layer, h, temb)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))

    @staticmethod
    def _run_layer(layer, h, temb):
        if isinstance(layer, nn.ModuleList):  # a ResBlock, optionally followed by attention
            h = layer[0](h, temb)
            return layer[1](h) if len(layer) > 1 else h
        return layer(h)  # a resampling layer
