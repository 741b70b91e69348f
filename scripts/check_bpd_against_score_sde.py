#!/usr/bin/env python
"""Bits/dim of an imported score_sde_pytorch checkpoint: ours against the reference's own likelihood code.

    OMP_NUM_THREADS=1 python scripts/check_bpd_against_score_sde.py \\
        --reference /path/to/score_sde_pytorch --ref-python /work/venvs/ref/bin/python \\
        --checkpoint tests/models/fixtures/score_sde/ncsnpp_cont/checkpoint_2.pth --config cifar10_ncsnpp_cont \\
        --set model.nf=4 model.ch_mult=1,2,2 model.num_res_blocks=1 model.attn_resolutions=4, data.image_size=8 \\
        --images 128

Ours: `runners.load_pretrained(CKPT, config)` (our config NAME with the --set overrides), then
`likelihood.bits_per_dim` with uniform dequantization, one Rademacher Hutchinson probe and the
config's solver (dopri5) at the config's eval.bpd_rtol / bpd_atol, or at each of --our-tols.

Reference: the same file run by --ref-python with `--side reference`, importing only score_sde_pytorch
(from --reference), torch, numpy (and what the reference itself imports: scipy, ml_collections). Its
network is built from its config (--reference-config, by default the one our config was written from)
with the same --set overrides (the field names are shared), its EMA weights copied in with
`ema.copy_to`, `likelihood.get_likelihood_fn` (scipy RK45 on the host, Rademacher probes) with its own
`models/utils.get_score_fn`, and bits/dim as its `run_lib.evaluate` forms them: y = (u + 255 x)/256
with x = uint8/255, its data scaler, bpd = -log p/(D ln 2) + 7 - inverse_scaler(-1). Its CUDA `op`
package is replaced in sys.modules by this file's pure-PyTorch upfirdn2d / fused leaky ReLU, and
jax / tensorflow / tensorflow_datasets by empty modules so that its `datasets.py` (the data scaler)
imports; nothing of them is ever called.

Images: the digits test set (8x8 grey, channels repeated, bilinear resize to the network's size), or
CIFAR-10 test images with --cifar10 DIR; the first --images of them, the same uint8 array on both
sides. Each side draws its own dequantization noise and probes (seeds --seed and --seed + 1);
--repeats R evaluates every image R times per side (fresh draws) and averages.

Statistics: each side's mean bits/dim over the N images and its standard error std/sqrt(N) (image
to image variation plus that side's estimator noise); diff = ours - reference and its combined s.e.
sqrt(se_ours^2 + se_ref^2); verdict AGREE when |diff| <= 2 combined s.e. The paired s.e. (std of
the per-image differences / sqrt N: the two estimators' noise alone, as both sides see the same
images) is the sharper test and is reported with its own verdict. Before the likelihoods, the two
sides' SDE (marginal mean and std, prior log-density), score and probability-flow drift on fixed
inputs are compared: a mismatch there means the configs do not describe the same model (exit 2);
a likelihood disagreement exits 1.

--shared-draws adds a sharper check: ours (at the first of --our-tols) on the reference's own model
inputs m = scaler((u + 255 x)/256) and with its own probes (the reference records the RNG state its
likelihood_fn draws the probe from; ours draws from a generator in that state, checked to give the
same signs). Then the two estimates of an image differ only by the two solvers' errors, and the
verdict is |diff| <= 2 paired s.e.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

# our config -> the score_sde_pytorch config it was written from (continuous-time checkpoints: the
# reference's likelihood always converts the network with continuous=True)
REFERENCE_CONFIGS = {
    "cifar10_ncsnpp_cont": "ve/cifar10_ncsnpp_continuous",
    "cifar10_ncsnpp_cont_deep": "ve/cifar10_ncsnpp_deep_continuous",
    "cifar10_ddpmpp_cont": "vp/cifar10_ddpmpp_continuous",
    "cifar10_ddpmpp_cont_deep": "vp/cifar10_ddpmpp_deep_continuous",
    "cifar10_subvp_ddpmpp_cont": "subvp/cifar10_ddpmpp_continuous",
    "cifar10_subvp_ddpmpp_cont_deep": "subvp/cifar10_ddpmpp_deep_continuous",
    "cifar10_ddpm_cont": "vp/ddpm/cifar10_continuous",
    "cifar10_subvp_ddpm_cont": "subvp/cifar10_ddpm_continuous",
    "celebahq256_ncsnpp_cont": "ve/celebahq_256_ncsnpp_continuous",
    "ffhq256_ncsnpp_cont": "ve/ffhq_256_ncsnpp_continuous",
    "ffhq1024_ncsnpp_cont": "ve/ffhq_ncsnpp_continuous",
    "bedroom256_ncsnpp_cont": "ve/bedroom_ncsnpp_continuous",
    "church256_ncsnpp_cont": "ve/church_ncsnpp_continuous",
}
CHECK_TIMES = (1e-5, 0.1, 0.5, 1.0)   # where the two SDEs' marginals are compared
MODEL_RTOL = 1e-4                     # score / drift: float32 networks of the same weights (fixtures: < 2e-5)
SDE_RTOL = 1e-5                       # marginal mean / std and prior log-density


# --------------------------------------------------------------------------- shared: overrides, statistics

def parse_overrides(items) -> dict:
    """['model.nf=4', 'model.ch_mult=1,2,2', ...] -> {'model.nf': 4, 'model.ch_mult': (1, 2, 2)} (literals, else str)."""
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or key.count(".") != 1 or not all(key.split(".")):
            raise ValueError(f"--set expects section.field=value (e.g. model.nf=4), got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare word such as GroupNorm
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _set_field(config, key: str, value) -> bool:
    """config.section.field = value (a scalar for a tuple field becomes a 1-tuple); False if there is no such field."""
    section, field = key.split(".")
    if section not in config or not hasattr(config[section], "keys") or field not in config[section]:
        return False
    current = config[section][field]
    value = tuple(value) if isinstance(value, list) else value  # JSON (the reference's settings) makes lists
    if isinstance(current, tuple) and not isinstance(value, tuple):
        value = (value,)
    config[section][field] = value
    return True


def side_summary(bpd: np.ndarray) -> dict:
    """bpd [R, N] (R evaluations of N images) -> mean over images of the per-image mean, its s.e., N, R."""
    per_image = np.asarray(bpd, dtype=np.float64).reshape(bpd.shape[0], -1).mean(axis=0)
    n = per_image.size
    se = per_image.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": float(per_image.mean()), "se": float(se), "n": n, "repeats": int(bpd.shape[0])}


def compare(ours: np.ndarray, ref: np.ndarray, *, k: float = 2.0) -> dict:
    """Difference of the two sides' mean bits/dim, its combined and paired standard errors, and the verdicts."""
    if ours.shape[-1] != ref.shape[-1]:
        raise ValueError(f"the two sides evaluated different numbers of images: {ours.shape} vs {ref.shape}")
    a, b = side_summary(ours), side_summary(ref)
    d = ours.reshape(ours.shape[0], -1).mean(axis=0) - ref.reshape(ref.shape[0], -1).mean(axis=0)
    diff = a["mean"] - b["mean"]
    se = math.hypot(a["se"], b["se"])
    se_paired = float(d.std(ddof=1) / math.sqrt(d.size))
    return {"ours": a, "reference": b, "diff": diff, "se": se, "se_paired": se_paired,
            "max_abs_diff": float(np.abs(d).max()), "agree": bool(abs(diff) <= k * se),
            "agree_paired": bool(abs(diff) <= k * se_paired), "k": k}


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# --------------------------------------------------------------------------- our side

def our_config(name: str, overrides: dict):
    """Our config `name` (a file or a name under configs/) with the overrides; an unknown field is an error."""
    from runners.pretrained import resolve_config
    config = resolve_config(name)
    for key, value in overrides.items():
        if not _set_field(config, key, value):
            raise ValueError(f"--set {key}: our config {name!r} has no field {key}")
    return config


def fit_images(images: torch.Tensor, shape) -> torch.Tensor:
    """uint8 [M, c, h, w] -> [M, C, H, W] of the network: grey repeated to C channels, bilinear resize to H."""
    from sde_data.resize import resize_images
    C, H, W = shape
    if H != W:
        raise ValueError(f"the network's images are {H}x{W}; only square images are supported")
    if images.shape[1] not in (1, C):
        raise ValueError(f"cannot feed {images.shape[1]}-channel images to a {C}-channel network")
    images = resize_images(images, H)
    return images.expand(-1, C, -1, -1).contiguous() if images.shape[1] != C else images


def load_images(n: int, shape, *, cifar10: str | None = None) -> np.ndarray:
    """The first n test images (digits, or CIFAR-10 from the folder cifar10) as uint8 [n, C, H, W]."""
    if cifar10 is not None:
        from sde_data.cifar10 import load_cifar10
        images = load_cifar10(split="test", root=cifar10, download=False).images
    else:
        from sde_data.digits import load_digits
        images = load_digits(split="test").images
    if not 1 <= n <= len(images):
        raise ValueError(f"--images {n}: the {'CIFAR-10' if cifar10 else 'digits'} test set has {len(images)} "
                         "images; ask for 2 to that many")
    return fit_images(images[:n], shape).numpy()


def check_inputs(shape, seed: int) -> dict:
    """Fixed inputs for comparing the two models: x [2, *shape], t [2], ts [k], z [2, *shape] (float32)."""
    g = torch.Generator().manual_seed(seed + 7)
    x = 0.5 + 0.5 * torch.randn((2, *shape), generator=g)
    z = torch.randn((2, *shape), generator=g)
    return {"x": x.numpy(), "t": np.array([0.31, 0.77], np.float32), "ts": np.array(CHECK_TIMES, np.float32),
            "z": z.numpy()}


def model_checks(score_fn, sde, checks: dict) -> dict:
    """score(x, t), probability-flow drift, marginal mean coefficient and std at ts, prior_logp(z), as numpy."""
    x, t, ts = (torch.from_numpy(checks[k]) for k in ("x", "t", "ts"))
    ones = torch.ones((len(ts), *x.shape[1:]))
    with torch.no_grad():
        score = score_fn(x, t)
        drift = sde.reverse(score_fn, probability_flow=True).sde(x, t)[0]
        mean, std = sde.marginal_prob(ones, ts)
        prior = sde.prior_logp(torch.from_numpy(checks["z"]) * std[-1])
    return {"score": score.numpy(), "drift": drift.numpy(), "mean": mean.reshape(len(ts), -1)[:, 0].numpy(),
            "std": std.numpy(), "prior": prior.numpy()}


def run_ours(pre, images: np.ndarray, *, tol: tuple, batch_size: int, repeats: int, seed: int) -> dict:
    """Our bits/dim [R, N] of the uint8 images, with NFE per batch and seconds (the likelihood loop alone)."""
    from likelihood import bits_per_dim
    ev = pre.config.eval
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images)
    bpd, nfe = np.zeros((repeats, len(x))), []
    t0 = time.perf_counter()
    for r in range(repeats):
        for start in range(0, len(x), batch_size):
            res = bits_per_dim(pre.score_fn, pre.sde, x[start:start + batch_size], centered=pre.config.data.centered,
                               dequantization="uniform", n_dequant=1, generator=gen, divergence="hutchinson",
                               noise="rademacher", n_probes=1, solver=ev.bpd_solver, rtol=tol[0], atol=tol[1],
                               eps=ev.bpd_eps)
            bpd[r, start:start + batch_size] = res.bpd.double().numpy()
            nfe.append(res.nfe)
    return {"bpd": bpd, "nfe": nfe, "seconds": time.perf_counter() - t0, "draws": "own"}


def _replayed_generator(state: np.ndarray, m: torch.Tensor, probe: np.ndarray) -> torch.Generator:
    """A generator in the reference's RNG state, after checking that our probe draw from it is the reference's probe."""
    from likelihood.divergence import sample_probes
    check = torch.Generator()
    check.set_state(torch.from_numpy(state))
    if not torch.equal(sample_probes("rademacher", 1, m, check)[0], torch.from_numpy(probe).to(m.dtype)):
        raise SystemExit("our Rademacher draw from the reference's RNG state is not its probe: --shared-draws "
                         "cannot replay this torch build's randint; run without it")
    gen = torch.Generator()
    gen.set_state(torch.from_numpy(state))
    return gen


def run_ours_on_reference_draws(pre, ref: dict, *, tol: tuple, batch_size: int) -> dict:
    """Our bits/dim [R, N] of the reference's own model inputs m = scaler((x + u)/256), with its probes."""
    from likelihood import bpd_from_logp, log_likelihood
    from sde_data.scalers import get_data_scaler
    ev, scaler = pre.config.eval, get_data_scaler(pre.config.data.centered)
    a = float(scaler(torch.tensor(1.0, dtype=torch.float64)) - scaler(torch.tensor(0.0, dtype=torch.float64)))
    inputs, R, N = torch.from_numpy(ref["draw_inputs"]), *ref["draw_inputs"].shape[:2]
    bpd, nfe, k = np.zeros((R, N)), [], 0
    t0 = time.perf_counter()
    for r in range(R):
        for start in range(0, N, batch_size):
            m = inputs[r, start:start + batch_size]
            gen = _replayed_generator(ref["draw_states"][k], m, ref["draw_probes"][r, start:start + batch_size])
            res = log_likelihood(pre.score_fn, pre.sde, m, divergence="hutchinson", noise="rademacher", n_probes=1,
                                 solver=ev.bpd_solver, rtol=tol[0], atol=tol[1], eps=ev.bpd_eps, generator=gen)
            bpd[r, start:start + batch_size] = bpd_from_logp(res.logp.double(), m[0].numel(), a).numpy()
            nfe.append(res.nfe)
            k += 1
    return {"bpd": bpd, "nfe": nfe, "seconds": time.perf_counter() - t0, "draws": "reference's"}


# --------------------------------------------------------------------------- reference side: its op/ stand-in

def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    """[B, C, H, W]: zero-insert `up`x, pad both axes by pad (negative crops), convolve with kernel, keep every down-th.

    The pure-PyTorch stand-in for the CUDA kernel of score_sde_pytorch's op/ package (same semantics:
    a true convolution, i.e. the kernel flipped, applied to every channel alike).
    """
    b, c, h, w = input.shape
    x = input.reshape(b * c, 1, h, w)
    if up > 1:
        # a stride-`up` transposed 1x1 convolution places sample (i, j) at (up i, up j), zeros between
        one = torch.ones((1, 1, 1, 1), dtype=x.dtype, device=x.device)
        x = F.pad(F.conv_transpose2d(x, one, stride=up), (0, up - 1, 0, up - 1))
    p0, p1 = int(pad[0]), int(pad[1])
    x = F.pad(x, (p0, p1, p0, p1))  # negative amounts crop
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    x = F.conv2d(x, k.flip(0, 1)[None, None], stride=down)  # conv2d correlates: flip for a convolution
    return x.reshape(b, c, x.shape[-2], x.shape[-1])


def fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):
    """leaky_relu(input + bias on dim 1) * scale: the fused CUDA op's arithmetic."""
    shaped = bias.reshape(1, -1, *([1] * (input.ndim - 2)))
    return F.leaky_relu(input + shaped, negative_slope=negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """A learned bias, leaky ReLU and gain (the op/ package's module)."""

    def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, input):
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)


def install_reference(root: str) -> None:
    """Put score_sde_pytorch first on sys.path, this file's op/ stand-in and empty jax / tf / tfds in sys.modules."""
    root = str(Path(root).resolve())
    if not (Path(root) / "likelihood.py").is_file() or not (Path(root) / "models" / "utils.py").is_file():
        raise SystemExit(f"--reference {root} is not a score_sde_pytorch checkout (no likelihood.py, models/utils.py)")
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [root] + [p for p in sys.path if p not in ("", here, str(ROOT))]
    op = types.ModuleType("op")
    op.upfirdn2d, op.fused_leaky_relu, op.FusedLeakyReLU = upfirdn2d, fused_leaky_relu, FusedLeakyReLU
    sys.modules["op"] = op
    for name in ("jax", "tensorflow", "tensorflow_datasets"):  # imported by datasets.py, used only by its loaders
        sys.modules[name] = types.ModuleType(name)


# --------------------------------------------------------------------------- reference side: model, SDE, bits/dim

def reference_config(name: str, overrides: dict):
    """The reference's configs/<name>.py with the overrides that name one of its fields (-> config, skipped keys)."""
    import importlib
    config = importlib.import_module("configs." + name.replace("/", ".")).get_config()
    skipped = [key for key, value in overrides.items() if not _set_field(config, key, value)]
    config.device = torch.device("cpu")
    return config, skipped


def reference_model(config, checkpoint: str):
    """The reference's network with the checkpoint's EMA weights copied in, as run_lib.evaluate does."""
    import importlib
    from models import utils as mutils
    for family in ("ddpm", "ncsnpp", "ncsnv2"):  # imported for their side effect: @register_model of each network
        importlib.import_module(f"models.{family}")
    from models.ema import ExponentialMovingAverage
    model = mutils.create_model(config)
    ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
    state = torch.load(checkpoint, map_location="cpu")
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    ema.load_state_dict(state["ema"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    if missing or unexpected or len(ema.shadow_params) != len(trainable):
        raise SystemExit(f"{checkpoint} does not fit the reference config's network: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, {len(ema.shadow_params)} EMA tensors for "
                         f"{len(trainable)} parameters")
    ema.copy_to(model.parameters())
    return model.eval()


def reference_sde(config):
    """The SDE of config.training.sde, built as the reference's run_lib does."""
    import sde_lib
    m, name = config.model, config.training.sde.lower()
    if name == "vesde":
        return sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
    kinds = {"vpsde": sde_lib.VPSDE, "subvpsde": sde_lib.subVPSDE}
    if name not in kinds:
        raise SystemExit(f"reference config has training.sde={name!r}; expected vpsde, subvpsde or vesde")
    return kinds[name](beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales)


def reference_bpd(model, sde, config, images: np.ndarray, settings: dict) -> dict:
    """The reference's bits/dim [R, N]: run_lib.evaluate's dequantization and scaler, its likelihood_fn."""
    import datasets
    import likelihood
    scaler, inverse_scaler = datasets.get_data_scaler(config), datasets.get_data_inverse_scaler(config)
    tol = {} if settings["ref_tol"] is None else {"rtol": settings["ref_tol"], "atol": settings["ref_tol"]}
    likelihood_fn = likelihood.get_likelihood_fn(sde, inverse_scaler, eps=settings["eps"], **tol)
    torch.manual_seed(settings["seed"])
    bs, R = settings["batch_size"], settings["repeats"]
    bpd, nfe, draws = np.zeros((R, len(images))), [], {"draw_inputs": [], "draw_states": [], "draw_probes": []}
    t0 = time.perf_counter()
    for r in range(R):
        for start in range(0, len(images), bs):
            x = torch.from_numpy(images[start:start + bs]).float() / 255.0  # convert_image_dtype: [0, 1]
            y = (torch.rand(x.shape) + x * 255.0) / 256.0                  # its uniform dequantization
            state = torch.get_rng_state()                                  # what its probe is drawn from
            b, _, n = likelihood_fn(model, scaler(y))
            bpd[r, start:start + bs] = b.detach().double().numpy().reshape(-1)
            nfe.append(int(n))
            if settings["shared_draws"]:
                record_draws(draws, scaler(y), state)
            print(f"reference: repeat {r}, images {start}-{start + len(x) - 1}: mean bpd "
                  f"{bpd[r, start:start + bs].mean():.4f}, nfe {n}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out = {"bpd": bpd, "nfe": np.array(nfe), "seconds": time.perf_counter() - t0}
    if settings["shared_draws"]:
        shape = (R, len(images), *images.shape[1:])
        out.update(draw_inputs=torch.cat(draws["draw_inputs"]).reshape(shape).numpy(),
                   draw_probes=torch.cat(draws["draw_probes"]).reshape(shape).numpy(),
                   draw_states=torch.stack(draws["draw_states"]).numpy())
    return out


def record_draws(draws: dict, m: torch.Tensor, state: torch.Tensor) -> None:
    """Keep the model input m, the RNG state its likelihood_fn started from, and the probe it drew from it."""
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    probe = torch.randint_like(m, low=0, high=2) * 2 - 1  # likelihood_fn's first draw: its Rademacher probe
    torch.set_rng_state(after)
    draws["draw_inputs"].append(m)
    draws["draw_states"].append(state)
    draws["draw_probes"].append(probe.to(torch.int8))


def reference_side(in_path: str, out_path: str) -> None:
    """--side reference: read IN.npz (images, check inputs, settings), write OUT.npz (bpd, nfe, checks, info)."""
    inp = np.load(in_path, allow_pickle=False)
    settings = json.loads(str(inp["settings"]))
    torch.set_num_threads(settings["threads"])
    install_reference(settings["reference"])
    import models
    if not str(Path(models.__file__).resolve()).startswith(str(Path(settings["reference"]).resolve())):
        raise SystemExit(f"imported models from {models.__file__}, not from the reference checkout")
    from models import utils as mutils
    config, skipped = reference_config(settings["reference_config"], settings["overrides"])
    model = reference_model(config, settings["checkpoint"])
    sde = reference_sde(config)
    score_fn = mutils.get_score_fn(sde, model, train=False, continuous=True)  # what its likelihood uses
    checks = model_checks(score_fn, sde, {k: inp[k] for k in ("x", "t", "ts", "z")})
    out = reference_bpd(model, sde, config, inp["images"], settings)
    info = {"skipped_overrides": skipped, "torch": torch.__version__, "centered": bool(config.data.centered),
            "sde": type(sde).__name__, "shape": [config.data.num_channels, config.data.image_size,
                                                 config.data.image_size]}
    np.savez(out_path, **out, **{f"check_{k}": v for k, v in checks.items()}, info=json.dumps(info))


# --------------------------------------------------------------------------- driver

def start_reference(args, images: np.ndarray, checks: dict, overrides: dict, tmp: Path) -> tuple:
    """Write IN.npz and start `ref-python this-file --side reference` (-> process, OUT path, start time)."""
    settings = {"reference": str(Path(args.reference).resolve()), "reference_config": args.reference_config,
                "overrides": overrides, "checkpoint": str(Path(args.checkpoint).resolve()), "seed": args.seed + 1,
                "ref_tol": args.ref_tol, "eps": args.eps, "batch_size": args.batch_size, "repeats": args.repeats,
                "threads": args.threads, "shared_draws": bool(args.shared_draws)}
    np.savez(tmp / "in.npz", images=images, settings=json.dumps(settings), **checks)
    threads = os.environ.get("OMP_NUM_THREADS", str(args.threads))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(tmp)),
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [args.ref_python, str(Path(__file__).resolve()), "--side", "reference",
           "--io", str(tmp / "in.npz"), str(tmp / "out.npz")]
    return subprocess.Popen(cmd, env=env), tmp / "out.npz", time.perf_counter()


def finish_reference(proc, out_path: Path, t0: float) -> dict:
    """Wait for the reference process and read its OUT.npz."""
    if proc.wait() != 0:
        raise SystemExit(f"the reference run failed (exit {proc.returncode}); its messages are above")
    out = np.load(out_path, allow_pickle=False)
    res = {k: out[k] for k in out.files if k != "info"}
    res.update(info=json.loads(str(out["info"])), wall=time.perf_counter() - t0)
    return res


def check_same_model(ours: dict, ref: dict) -> list[str]:
    """The comparisons of score, drift, marginal and prior that exceed their tolerance (empty: same model)."""
    bad = []
    for key, tol in (("score", MODEL_RTOL), ("drift", MODEL_RTOL), ("mean", SDE_RTOL), ("std", SDE_RTOL),
                     ("prior", SDE_RTOL)):
        err = rel_err(ours[key], ref[f"check_{key}"])
        print(f"  {key:<6} max rel. difference {err:.2e} (tolerance {tol:g})")
        if not err <= tol:
            bad.append(f"{key} differs by {err:.2e}")
    return bad


def our_tolerances(args, config) -> list[tuple]:
    """(rtol, atol) pairs: each of --our-tols as rtol = atol, default the config's eval.bpd_rtol / bpd_atol."""
    if not args.our_tols:
        return [(float(config.eval.bpd_rtol), float(config.eval.bpd_atol))]
    return [(float(t), float(t)) for t in args.our_tols]


def fmt_side(name: str, s: dict, seconds: float, nfe, tol: str) -> str:
    nfe = np.asarray(nfe)
    return (f"| {name} | {tol} | {s['n']} x {s['repeats']} | {s['mean']:.4f} | {s['se']:.4f} | {seconds:.1f} | "
            f"{int(nfe.min())}-{int(nfe.max())} |")


def report(results: list[dict], ref: dict, ref_tol: str) -> str:
    """Markdown table: each side's mean bpd and s.e., seconds, NFE; then per tolerance the difference and verdicts."""
    lines = ["| side | rtol = atol | images x repeats | mean bpd | s.e. | seconds | NFE per batch |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             fmt_side("score_sde_pytorch (RK45)", results[0]["cmp"]["reference"], float(ref["seconds"]), ref["nfe"],
                      ref_tol)]
    for r in results:
        name = f"ours ({r['solver']})" + (", the reference's draws" if r["draws"] != "own" else "")
        lines.append(fmt_side(name, r["cmp"]["ours"], r["seconds"], r["nfe"], f"{r['tol'][0]:g}"))
    lines += ["", "| ours at rtol = atol | draws | diff (ours - ref) | combined s.e. | verdict | paired s.e. | "
              "paired verdict | max per-image diff |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c, word = r["cmp"], lambda ok: "AGREE" if ok else "DISAGREE"
        lines.append(f"| {r['tol'][0]:g} | {r['draws']} | {c['diff']:+.4f} | {c['se']:.4f} | {word(c['agree'])} | "
                     f"{c['se_paired']:.4f} | {word(c['agree_paired'])} | {c['max_abs_diff']:.4f} |")
    return "\n".join(lines)


def verdict(r: dict) -> bool:
    """Own draws: |diff| <= 2 combined s.e.; the reference's draws (only solver error differs): <= 2 paired s.e."""
    return r["cmp"]["agree"] if r["draws"] == "own" else r["cmp"]["agree_paired"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="a score_sde_pytorch checkout (its likelihood.py, models/, configs/)")
    ap.add_argument("--ref-python", default="/work/venvs/ref/bin/python",
                    help="a python whose torch can run the reference (default %(default)s)")
    ap.add_argument("--checkpoint", help="a score_sde_pytorch checkpoint_<n>.pth")
    ap.add_argument("--config", help="our config of the same model, e.g. cifar10_ncsnpp_cont")
    ap.add_argument("--reference-config", help="the reference config (default: the one --config was written from)")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.FIELD=VALUE",
                    help="overrides applied to both configs, e.g. model.nf=4 model.ch_mult=1,2 data.image_size=8")
    ap.add_argument("--images", type=int, default=128, help="test images to evaluate (default %(default)s)")
    ap.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 test images from DIR (cifar-10-batches-py) "
                    "instead of the digits test set")
    ap.add_argument("--repeats", type=int, default=1, help="evaluations of each image per side (fresh draws)")
    ap.add_argument("--batch-size", type=int, default=128, help="images per likelihood solve, both sides")
    ap.add_argument("--our-tols", nargs="+", type=float, help="our rtol = atol, one run each "
                    "(default: the config's eval.bpd_rtol / bpd_atol)")
    ap.add_argument("--ref-tol", type=float, help="the reference's rtol = atol (default: its own, 1e-5)")
    ap.add_argument("--eps", type=float, default=1e-5, help="start time of the ODE, both sides (default %(default)g)")
    ap.add_argument("--seed", type=int, default=0, help="ours draws with seed, the reference with seed + 1")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per side (default %(default)s)")
    ap.add_argument("--shared-draws", action="store_true", help="also run ours (at the first of --our-tols) on the "
                    "reference's own dequantized inputs and probes: the same numbers, only the solvers' errors differ")
    ap.add_argument("--parallel", action="store_true", help="run the two sides at the same time (2 cores)")
    ap.add_argument("--json", type=Path, help="write the numbers to this file")
    ap.add_argument("--side", choices=("ours", "reference"), default="ours", help=argparse.SUPPRESS)
    ap.add_argument("--io", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    return ap


def run_comparison(args) -> int:
    """Our side in this process, the reference in --ref-python; print the checks, the table and the verdicts."""
    sys.path.insert(0, str(ROOT))  # only here: the reference side must not see our packages (same names)
    from runners import load_pretrained
    overrides = parse_overrides(args.set)
    config = our_config(args.config, overrides)
    args.reference_config = args.reference_config or REFERENCE_CONFIGS.get(args.config)
    if args.reference_config is None:
        raise SystemExit(f"no reference config known for {args.config!r}; pass --reference-config")
    torch.set_num_threads(args.threads)
    pre = load_pretrained(args.checkpoint, config=config)
    shape = (config.data.num_channels, config.data.image_size, config.data.image_size)
    images = load_images(args.images, shape, cifar10=args.cifar10)
    checks = check_inputs(shape, args.seed)
    mine = model_checks(pre.score_fn, pre.sde, checks)
    with tempfile.TemporaryDirectory() as tmp:
        proc, out_path, t0 = start_reference(args, images, checks, overrides, Path(tmp))
        try:
            if not args.parallel:
                ref = finish_reference(proc, out_path, t0)
            tols = our_tolerances(args, config)
            results = [dict(tol=tol, solver=config.eval.bpd_solver,
                            **run_ours(pre, images, tol=tol, batch_size=args.batch_size, repeats=args.repeats,
                                       seed=args.seed)) for tol in tols]
            if args.parallel:
                ref = finish_reference(proc, out_path, t0)
            if args.shared_draws:
                results.append(dict(tol=tols[0], solver=config.eval.bpd_solver,
                                    **run_ours_on_reference_draws(pre, ref, tol=tols[0], batch_size=args.batch_size)))
        finally:
            if proc.poll() is None:  # ours failed or was interrupted: do not leave the reference running
                proc.kill()
                proc.wait()
    return print_results(args, config, images, mine, ref, results)


def print_results(args, config, images, mine: dict, ref: dict, results: list[dict]) -> int:
    """Same-model checks, the table and the verdicts (exit code 0 agree, 1 disagree, 2 different models)."""
    src = f"CIFAR-10 test ({args.cifar10})" if args.cifar10 else "digits test"
    print(f"{args.checkpoint}: ours {args.config}, reference {args.reference_config}, overrides {args.set}")
    print(f"images: the first {len(images)} of the {src} set as {list(images.shape[1:])} uint8, "
          f"centered={config.data.centered}; reference skipped overrides {ref['info']['skipped_overrides']}")
    print("same model on fixed inputs (ours against the reference):")
    bad = check_same_model(mine, ref)
    if ref["info"]["centered"] != bool(config.data.centered):
        bad.append(f"data.centered: ours {config.data.centered}, reference {ref['info']['centered']}")
    for r in results:
        r["cmp"] = compare(r.pop("bpd"), ref["bpd"])
    ref_tol = "1e-5 (its default)" if args.ref_tol is None else f"{args.ref_tol:g}"
    print(report(results, ref, ref_tol))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "reference_seconds": float(ref["seconds"]), "reference_nfe": ref["nfe"].tolist(),
                                         "results": results, "model_checks_failed": bad}, indent=1, default=str))
    if bad:
        print("DIFFERENT MODELS: " + "; ".join(bad))
        return 2
    return 0 if all(verdict(r) for r in results) else 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.side == "reference":
        if not args.io:
            parser.error("--side reference needs --io IN.npz OUT.npz")
        reference_side(*args.io)
        return 0
    missing = [f"--{k.replace('_', '-')}" for k in ("reference", "checkpoint", "config") if getattr(args, k) is None]
    if missing:
        parser.error(f"missing {', '.join(missing)}")
    if args.images < 2 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--images must be >= 2, --repeats and --batch-size >= 1")
    return run_comparison(args)


if __name__ == "__main__":
    sys.exit(main())
