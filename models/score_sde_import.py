"""Import the paper's released score_sde_pytorch checkpoints into our DDPM++ / NCSN++ / DDPM networks.

A score_sde_pytorch checkpoint (`checkpoint_<n>.pth`) is `{'model': DataParallel state dict, 'ema':
{'decay', 'num_updates', 'shadow_params': [tensors]}, 'optimizer': ..., 'step': int}`. Its network keeps
every layer in one flat list, `module.all_modules.<i>.<name>`, and the EMA stores bare tensors in the
order of `model.parameters()` (trainable ones only). Our networks hold the same tensors under names, so
the conversion is positional: `reference_layout(model)` lists our modules in the reference's order, and
each module kind knows the reference names of its tensors. NIN layers (a weight W [in, out]) become
1x1 convolutions (weight [out, in, 1, 1]); the reference's `sigmas` buffer is not a weight and is dropped.

Usage: `ckpt = load_score_sde_checkpoint(path)`, then `convert_to(model, ckpt, scale_by_sigma=...)`
gives `(model_state_dict, ema_state_dict)` in our `models.EMA` format. `import_score_sde_checkpoint`
does both. Errors are `ScoreSdeImportError` with one sentence that names the file or the first
mismatching tensor; nothing is loaded partially (the caller gets complete state dicts or an error).
"""
import os
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from models.blocks import AttnBlock, Combine, Downsample, FIRConv2d, ResBlockBigGAN, ResBlockDDPM, Upsample
from models.embedding import GaussianFourierProjection
from models.ncsnpp import NCSNpp
from sde_runtime.errors import UserError

_REF_KEY = re.compile(r"^all_modules\.(\d+)\.")
_DROPPED_KEYS = ("sigmas",)  # the reference's table of SMLD noise levels: recomputed by sde_lib, not a weight
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors",
                      "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")


class ScoreSdeImportError(UserError, RuntimeError):
    """A file that is not a (readable, matching) score_sde_pytorch checkpoint."""


class ReferenceCheckpoint(NamedTuple):
    """The parts of a score_sde_pytorch checkpoint that the conversion needs."""
    raw_state: dict[str, torch.Tensor]  # reference names without 'module.' and without 'sigmas'
    ema_shadow: list[torch.Tensor]      # EMA of the trainable tensors, in reference parameter order
    step: int
    ema_decay: float
    ema_num_updates: int


class LayoutEntry(NamedTuple):
    """One tensor: its reference name, our state-dict name, whether it is trainable (in the EMA)."""
    ref_key: str
    our_key: str
    trainable: bool
    nin: bool  # a reference NIN weight [in, out] that we store as a 1x1 conv weight [out, in, 1, 1]


# ---------------------------------------------------------------------------------------------- reading

def _looks_like_msgpack(head: bytes) -> bool:
    """A msgpack map (flax.serialization.to_bytes of a state dict) whose first key is a string."""
    if len(head) < 2:
        return False
    b0 = head[0]
    if 0x81 <= b0 <= 0x8F:  # fixmap with 1..15 entries (0x80 followed by a version byte is a pickle)
        key = head[1]
    elif b0 in (0xDE, 0xDF):  # map16 / map32
        key = head[3] if b0 == 0xDE else head[5] if len(head) > 5 else -1
    else:
        return False
    return 0xA0 <= key <= 0xBF or key in (0xD9, 0xDA, 0xDB)  # fixstr / str8 / str16 / str32


def _refuse_other_formats(path: Path) -> None:
    """Raise for a missing path, a diffusers folder or weights file, or a JAX/Flax msgpack checkpoint."""
    if not path.exists():
        raise ScoreSdeImportError(f"{path} does not exist; expected a score_sde_pytorch checkpoint_<n>.pth file")
    folder = path if path.is_dir() else path.parent
    is_diffusers = ((folder / "model_index.json").is_file()
                    or ((folder / "config.json").is_file() and any((folder / w).is_file() for w in _DIFFUSERS_WEIGHTS))
                    or path.name in _DIFFUSERS_WEIGHTS)
    if is_diffusers:
        raise ScoreSdeImportError(
            f"{path} is a diffusers model (model_index.json / config.json + diffusion_pytorch_model.*), not a "
            f"score_sde_pytorch checkpoint; import the original checkpoint_<n>.pth from score_sde_pytorch instead")
    if path.is_dir():
        raise ScoreSdeImportError(f"{path} is a directory; pass the score_sde_pytorch checkpoint_<n>.pth file itself")
    with open(path, "rb") as f:
        head = f.read(8)
    if _looks_like_msgpack(head):
        raise ScoreSdeImportError(
            f"{path} is a JAX/Flax msgpack checkpoint (the paper's JAX code, score_sde), not a PyTorch one; "
            f"only score_sde_pytorch checkpoint_<n>.pth files can be imported")


def _torch_load(path: Path, map_location) -> object:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip / pickle, or objects other than tensors and containers
        kind = ("a truncated or corrupt file" if _truncated(path, e)
                else "not a PyTorch file of plain tensors and containers")
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else ""  # torch's first sentence
        raise ScoreSdeImportError(f"{path} cannot be read with torch.load(weights_only=True): {kind} "
                                  f"({type(e).__name__}: {first})") from e


def _truncated(path: Path, error: Exception) -> bool:
    """Whether a failed load looks like a cut-off file (bad zip, or a pickle that ends early)."""
    if isinstance(error, (EOFError, zipfile.BadZipFile)):
        return True
    text = str(error).lower()
    return any(s in text for s in ("central directory", "zip archive", "ran out of input", "eof", "truncated"))


def _strip_prefix(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """Drop DataParallel's 'module.' prefix (all keys have it, or none) and the non-weight buffers."""
    keys = list(state)
    prefixed = [k.startswith("module.") for k in keys]
    if any(prefixed) and not all(prefixed):
        raise ScoreSdeImportError(f"{path}: 'model' mixes keys with and without the DataParallel 'module.' prefix")
    out = {}
    for k, v in state.items():
        name = k[len("module."):] if all(prefixed) else k
        if name in _DROPPED_KEYS:
            continue
        if not _REF_KEY.match(name) or not isinstance(v, torch.Tensor):
            raise ScoreSdeImportError(
                f"{path} is not a score_sde_pytorch NCSN++ / DDPM++ / DDPM checkpoint: its model has the entry "
                f"{k!r}, expected only 'module.all_modules.<i>.<name>' tensors (and 'module.sigmas')")
        out[name] = v
    return out


def load_score_sde_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> ReferenceCheckpoint:
    """Read a score_sde_pytorch checkpoint_<n>.pth (safely: weights_only) into its raw / EMA / step parts."""
    path = Path(path)
    _refuse_other_formats(path)
    state = _torch_load(path, map_location)
    if not isinstance(state, dict) or not {"model", "ema", "step"} <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ScoreSdeImportError(f"{path} is not a score_sde_pytorch checkpoint: expected a dict with 'model', "
                                  f"'ema' and 'step' entries, got {found}")
    ema = state["ema"]
    if isinstance(ema, dict) and "model" in ema and "shadow_params" not in ema:
        raise ScoreSdeImportError(f"{path} is a scoresde checkpoint of our own format, not a score_sde_pytorch one; "
                                  f"use it directly (e.g. --mode sample) instead of importing it")
    if not isinstance(ema, dict) or not isinstance(ema.get("shadow_params"), (list, tuple)) or "decay" not in ema:
        raise ScoreSdeImportError(f"{path} is not a score_sde_pytorch checkpoint: its 'ema' entry has no 'decay' "
                                  f"and 'shadow_params' list (expected ExponentialMovingAverage.state_dict())")
    if not isinstance(state["model"], dict):
        raise ScoreSdeImportError(f"{path} is not a score_sde_pytorch checkpoint: 'model' is not a state dict")
    num_updates = ema.get("num_updates")
    return ReferenceCheckpoint(raw_state=_strip_prefix(state["model"], path), ema_shadow=list(ema["shadow_params"]),
                               step=int(state["step"]), ema_decay=float(ema["decay"]),
                               ema_num_updates=int(num_updates) if num_updates is not None else 0)


# ---------------------------------------------------------------------------------------------- layout

def _conv_names(conv: nn.Module, ref: str, ours: str) -> list[tuple[str, str, bool]]:
    return [(f"{ref}.weight", f"{ours}.weight", False), (f"{ref}.bias", f"{ours}.bias", False)]


def _resblock_names(block: nn.Module) -> list[tuple[str, str, bool]]:
    """score_sde's ResnetBlock{DDPM,BigGAN}pp / layers.ResnetBlockDDPM, in registration order."""
    names = _conv_names(block.norm_0, "GroupNorm_0", "norm_0") + _conv_names(block.conv_0, "Conv_0", "conv_0")
    if block.temb_proj is not None:
        names += _conv_names(block.temb_proj, "Dense_0", "temb_proj")
    names += _conv_names(block.norm_1, "GroupNorm_1", "norm_1") + _conv_names(block.conv_1, "Conv_1", "conv_1")
    if block.shortcut is not None:
        if isinstance(block, ResBlockDDPM):  # a NIN layer: W [in, out], b [out]
            names += [("NIN_0.W", "shortcut.weight", True), ("NIN_0.b", "shortcut.bias", False)]
        else:
            names += _conv_names(block.shortcut, "Conv_2", "shortcut")
    return names


def _attn_names(block: AttnBlock) -> list[tuple[str, str, bool]]:
    names = _conv_names(block.norm, "GroupNorm_0", "norm")
    for i, ours in enumerate(("q", "k", "v", "out")):
        names += [(f"NIN_{i}.W", f"{ours}.weight", True), (f"NIN_{i}.b", f"{ours}.bias", False)]
    return names


def _resample_names(module: Upsample | Downsample) -> list[tuple[str, str, bool]]:
    """layerspp / layers Up- and Downsample: no tensors, a plain conv `Conv_0`, or a FIR conv `Conv2d_0`."""
    if module.conv is None:
        return []
    return _conv_names(module.conv, "Conv2d_0" if isinstance(module.conv, FIRConv2d) else "Conv_0", "conv")


def _module_names(module: nn.Module) -> list[tuple[str, str, bool]]:
    """(reference sub-name, our sub-name, is-NIN) of every tensor of one reference list entry."""
    if isinstance(module, GaussianFourierProjection):
        return [("W", "W", False)]
    if isinstance(module, (ResBlockBigGAN, ResBlockDDPM)):
        return _resblock_names(module)
    if isinstance(module, AttnBlock):
        return _attn_names(module)
    if isinstance(module, (Upsample, Downsample)):
        return _resample_names(module)
    if isinstance(module, Combine):
        return _conv_names(module.proj, "Conv_0", "proj")
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.GroupNorm)):
        return [("weight", "weight", False), ("bias", "bias", False)]
    raise TypeError(f"no score_sde layout for {type(module).__name__}")


def _reference_module_order(model: NCSNpp) -> list[tuple[str, nn.Module]]:
    """Our modules, named, in the order of the reference's `all_modules` list (its __init__ order)."""
    order: list[tuple[str, nn.Module]] = []
    if model.fourier is not None:
        order.append(("fourier", model.fourier))
    if model.temb_mlp is not None:
        order += [("temb_mlp.0", model.temb_mlp[0]), ("temb_mlp.2", model.temb_mlp[2])]
    order.append(("conv_in", model.conv_in))
    for i, level in enumerate(model.down_levels):
        for b, block in enumerate(level["blocks"]):  # the reference interleaves each block with its attention
            order.append((f"down_levels.{i}.blocks.{b}", block))
            if "attns" in level:
                order.append((f"down_levels.{i}.attns.{b}", level["attns"][b]))
        order += [(f"down_levels.{i}.{k}", level[k]) for k in ("down", "pyramid") if k in level]
    order += [(f"mid.{j}", m) for j, m in enumerate(model.mid)]
    for i, level in enumerate(model.up_levels):
        order += [(f"up_levels.{i}.blocks.{b}", block) for b, block in enumerate(level["blocks"])]
        keys = ("attn", "pyramid_norm", "pyramid_conv", "pyramid_up", "up")
        order += [(f"up_levels.{i}.{k}", level[k]) for k in keys if k in level]
    if model.progressive != "output_skip":
        order += [("norm_out", model.norm_out), ("conv_out", model.conv_out)]
    return order


def reference_layout(model: NCSNpp) -> list[LayoutEntry]:
    """Every tensor of the reference network that `model` mirrors, in the reference's state-dict order."""
    if not isinstance(model, NCSNpp):
        raise ScoreSdeImportError(f"score_sde_pytorch checkpoints fit our NCSNpp / DDPM networks only, "
                                  f"got {type(model).__name__}")
    entries = []
    for index, (name, module) in enumerate(_reference_module_order(model)):
        for ref_sub, our_sub, nin in _module_names(module):
            trainable = not isinstance(module, GaussianFourierProjection)  # the reference's W has requires_grad=False
            entries.append(LayoutEntry(f"all_modules.{index}.{ref_sub}", f"{name}.{our_sub}", trainable, nin))
    return entries


def output_keys(model: NCSNpp) -> list[str]:
    """Our state-dict keys of the layers that form the output (every pyramid conv with output_skip)."""
    if model.progressive == "output_skip":
        return [f"up_levels.{i}.pyramid_conv.{p}" for i in range(len(model.up_levels)) for p in ("weight", "bias")]
    return ["conv_out.weight", "conv_out.bias"]


# ---------------------------------------------------------------------------------------------- conversion

def _describe(tensor: torch.Tensor | None) -> str:
    return "missing" if tensor is None else f"shape {list(tensor.shape)}"


def _check_names(entries: list[LayoutEntry], raw: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                 what: str) -> None:
    """Same reference names in the same order, and every shape fits; else one error at the first mismatch."""
    ref_keys = list(raw)
    for i in range(max(len(entries), len(ref_keys))):
        e = entries[i] if i < len(entries) else None
        ref_key = ref_keys[i] if i < len(ref_keys) else None
        ours = expected[e.our_key] if e is not None else None
        if e is None or ref_key != e.ref_key or tuple(_as_ours(raw[ref_key], e).shape) != tuple(ours.shape):
            ref_desc = f"{ref_key!r} ({_describe(raw[ref_key])})" if ref_key is not None else "nothing (it has no more)"
            our_desc = (f"{e.ref_key!r} for our {e.our_key!r} ({_describe(ours)}"
                        f"{', a NIN weight [in, out] read as a 1x1 conv' if e.nin else ''})" if e else "nothing")
            raise ScoreSdeImportError(
                f"the checkpoint does not fit {what}: reference tensor #{i} is {ref_desc}, but this network "
                f"expects {our_desc}; build the network with the checkpoint's own config (the first difference "
                f"is shown, nothing was loaded)")


def _as_ours(tensor: torch.Tensor, entry: LayoutEntry) -> torch.Tensor:
    """A reference tensor in our storage layout (NIN W [in, out] -> conv weight [out, in, 1, 1])."""
    if entry.nin:
        return tensor.t()[:, :, None, None] if tensor.dim() == 2 else tensor
    return tensor


def _describe_model(model: NCSNpp) -> str:
    return (f"{type(model).__name__}(nf={model.nf}, ch_mult={model.ch_mult}, num_res_blocks={model.num_res_blocks}, "
            f"attn_resolutions={model.attn_resolutions}, resblock_type={model.resblock_type!r}, "
            f"embedding_type={model.embedding_type!r}, progressive={model.progressive!r}, "
            f"progressive_input={model.progressive_input!r})")


def _convert_state(entries: list[LayoutEntry], raw: dict[str, torch.Tensor], trainable_values: list[torch.Tensor],
                   negate: set[str], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict: trainable tensors from `trainable_values` (reference order), the rest from `raw`."""
    values = iter(trainable_values)
    out = {}
    for e in entries:
        t = next(values) if e.trainable else raw[e.ref_key]
        t = _as_ours(t.detach(), e).to(dtype=like[e.our_key].dtype).clone(memory_format=torch.contiguous_format)
        out[e.our_key] = -t if e.our_key in negate else t
    return {k: out[k] for k in like}  # our state-dict order


def convert_to(model: NCSNpp, checkpoint: ReferenceCheckpoint, *,
               scale_by_sigma: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """Map a reference checkpoint onto `model`: (raw state dict, EMA state dict in models.EMA format).

    `scale_by_sigma` is the reference config's `model.scale_by_sigma` (True for every VE checkpoint):
    that network outputs +score = h / sigma, while ours with `prediction="eps"` outputs eps = -sigma score,
    so the output layers are negated and an imported checkpoint behaves exactly as one of ours.
    """
    entries = reference_layout(model)
    like = model.state_dict()
    missing = [k for k in like if k not in {e.our_key for e in entries}]
    if missing:  # a layer of ours without a reference counterpart: a layout bug, not a user error
        raise ScoreSdeImportError(f"{_describe_model(model)} has tensors without a score_sde counterpart: {missing}")
    what = _describe_model(model)
    _check_names(entries, checkpoint.raw_state, like, what)
    trainable = [e for e in entries if e.trainable]
    shadow = checkpoint.ema_shadow
    if len(shadow) != len(trainable):
        raise ScoreSdeImportError(f"the checkpoint's EMA has {len(shadow)} shadow_params, but its model (and {what}) "
                                  f"has {len(trainable)} trainable tensors; the file is inconsistent")
    for j, (e, s) in enumerate(zip(trainable, shadow)):
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != tuple(checkpoint.raw_state[e.ref_key].shape):
            raise ScoreSdeImportError(
                f"EMA shadow_params[{j}] ({_describe(s) if isinstance(s, torch.Tensor) else type(s).__name__}) does "
                f"not match reference tensor {e.ref_key!r} ({_describe(checkpoint.raw_state[e.ref_key])}), which is "
                f"our {e.our_key!r}; the file is inconsistent")
    negate = set(output_keys(model)) if scale_by_sigma else set()
    raw_values = [checkpoint.raw_state[e.ref_key] for e in trainable]
    model_state = _convert_state(entries, checkpoint.raw_state, raw_values, negate, like)
    ema_state = {"model": _convert_state(entries, checkpoint.raw_state, shadow, negate, like),
                 "decay": checkpoint.ema_decay, "num_updates": checkpoint.ema_num_updates}
    return model_state, ema_state


def import_score_sde_checkpoint(path: str | os.PathLike, model: NCSNpp, *,
                                scale_by_sigma: bool) -> tuple[dict[str, torch.Tensor], dict, int]:
    """load_score_sde_checkpoint + convert_to: (model_state_dict, ema_state_dict, step)."""
    checkpoint = load_score_sde_checkpoint(path)
    try:
        model_state, ema_state = convert_to(model, checkpoint, scale_by_sigma=scale_by_sigma)
    except ScoreSdeImportError as e:
        raise ScoreSdeImportError(f"{path}: {e}") from e
    return model_state, ema_state, checkpoint.step


def reference_score_options(sde_name: str, *, continuous: bool) -> dict:
    """Our get_score_fn options that reproduce score_sde's models/utils.get_score_fn for one config.

    VP / sub-VP: the network sees 999 t (continuous, and always for sub-VP) or the step index t (N-1)
    with DDPM's discrete sqrt(1 - alpha-bar_i) (discrete VP); VE (continuous only) sees sigma(t), whose
    log feeds its Fourier embedding, and after `convert_to(..., scale_by_sigma=True)` predicts eps.
    """
    if sde_name in ("vpsde", "subvpsde"):
        if continuous or sde_name == "subvpsde":
            return dict(prediction="eps", time_input="t", time_scale=999.0, discrete_schedule=False)
        return dict(prediction="eps", time_input="index", time_scale=1.0, discrete_schedule=True)
    if sde_name == "vesde":
        if not continuous:
            raise ScoreSdeImportError("discrete-time VE checkpoints (score_sde's ve/cifar10_ncsnpp, ve/cifar10_ddpm) "
                                      "take the integer noise-level index round((1 - t)(N - 1)) as their label, "
                                      "which models.get_score_fn has no time_input for")
        return dict(prediction="eps", time_input="log_sigma", time_scale=1.0, discrete_schedule=False)
    raise ScoreSdeImportError(f"unknown SDE {sde_name!r}; expected 'vpsde', 'subvpsde' or 'vesde'")


__all__ = ["ScoreSdeImportError", "ReferenceCheckpoint", "LayoutEntry", "load_score_sde_checkpoint", "convert_to",
           "import_score_sde_checkpoint", "reference_layout", "output_keys", "reference_score_options"]
