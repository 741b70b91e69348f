"""PC with the Langevin corrector against score_sde_pytorch's own PC sampler on the mixture oracle (issue 16).

Both sides sample from the same x_T [n, D] with the exact score of the same Gaussian mixture
(`sde_lib.oracle.GaussianMixture.score_fn`, continuous time), NFE = 2 x steps (one corrector and one
predictor evaluation per step):

- ours: `samplers.sample("pc", ..., steps=k, corrector="langevin")` at its default snr / n_steps_each,
  with predictor="reverse_diffusion" (the paper's pairing) and with the default predictor
  (ancestral_sampling);
- reference: score_sde_pytorch's `sampling.get_pc_sampler` (ReverseDiffusionPredictor +
  LangevinCorrector, snr 0.16, n_steps 1, eps 1e-3, denoise) on its own `sde_lib` with N = k, run by
  the reference venv's python (`--side reference`, inputs and outputs through .npz files). Its
  `mutils.get_score_fn` is replaced by one that returns the oracle score as is, and the data are
  shaped [n, D, 1, 1] because its updates broadcast with [:, None, None, None].

Quality = sliced W2 (`samplers.quality.sliced_wasserstein`, 256 directions, generator seed 1234) to
n exact samples drawn per seed; floor = mean SW between two independent exact sets of size n.
Mixtures: `ring` (GaussianMixture.ring(), 2-D, 8 modes) and `r16` (GaussianMixture.random(16, 3,
seed=0)). SDEs: VPSDE(0.1, 20) and VESDE(0.01, sigma_max) with sigma_max the largest pairwise
distance of the data rounded up (Song & Ermon 2020, technique 1): 6 for ring, 18 for r16.

Judging line (issue 16), per cell: ours <= 1.25 x ref + 0.25 x floor at NFE 50, 100, 1000, and
SW(NFE 1000) <= SW(NFE 100) (reported as the paired difference over seeds).

    python benchmarks/bench_pc.py                                  # ring, r16 x vp, ve; 8 seeds; n 4000
    python benchmarks/bench_pc.py --mixtures ring --sdes vp --seeds 2 --n 1000   # quick
    python benchmarks/bench_pc.py --json pc.json                   # also the per-seed distances

Environment: REF_PYTHON (default /work/venvs/ref/bin/python: torch, numpy, scipy) and REF_DIR
(default /work/ref/score_sde_pytorch, a work tree of github.com/yang-song/score_sde_pytorch).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = os.environ.get("REF_PYTHON", "/work/venvs/ref/bin/python")
REF_DIR = os.environ.get("REF_DIR", "/work/ref/score_sde_pytorch")
EPS, SNR, BETA = 1e-3, 0.16, (0.1, 20.0)
SIGMA_MIN = 0.01
SIGMA_MAX = {"ring": 6.0, "r16": 18.0}   # max pairwise distance of 4000 exact samples: 5.39, 17.67
OURS = {"ours rd": {"predictor": "reverse_diffusion"}, "ours ancestral": {}}  # + corrector="langevin"
REF = "score_sde_pytorch"


def make_mixture(name: str):
    from sde_lib.oracle import GaussianMixture
    return GaussianMixture.ring() if name == "ring" else GaussianMixture.random(16, 3, seed=0)


def make_sde(kind: str, sigma_max: float):
    """Our SDE: VPSDE(0.1, 20) or VESDE(0.01, sigma_max)."""
    from sde_lib import VESDE, VPSDE
    if kind == "vp":
        return VPSDE(beta_min=BETA[0], beta_max=BETA[1])
    return VESDE(sigma_min=SIGMA_MIN, sigma_max=sigma_max)


# --- reference side (run by REF_PYTHON) -------------------------------------------------------------

def oracle_score(inp) -> callable:
    """The oracle's exact score as a function of [n, D, 1, 1] tensors, built with our sde_lib, which is
    then dropped from sys.modules so that the reference's own `sde_lib` module can be imported."""
    sys.path.insert(0, str(ROOT))
    from sde_lib.oracle import GaussianMixture
    gm = GaussianMixture(inp["weights"], inp["means"], inp["covs"])
    score = gm.score_fn(make_sde(str(inp["sde"]), float(inp["sigma_max"])))
    sys.path.remove(str(ROOT))
    for name in [m for m in sys.modules if m == "sde_lib" or m.startswith("sde_lib.")]:
        del sys.modules[name]
    return lambda x, t: score(x.reshape(x.shape[0], -1), t).reshape(x.shape)


class Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


def ref_sample(sampling, ref_sde_lib, inp, score, z: torch.Tensor, steps: int, seed: int):
    """One run of the reference PC sampler from x_T = z [n, D, 1, 1]; (samples [n, D], score calls)."""
    if str(inp["sde"]) == "vp":
        sde = ref_sde_lib.VPSDE(beta_min=BETA[0], beta_max=BETA[1], N=steps)
    else:
        sde = ref_sde_lib.VESDE(sigma_min=SIGMA_MIN, sigma_max=float(inp["sigma_max"]), N=steps)
    sde.prior_sampling = lambda shape: z.clone()          # the shared x_T instead of its own draw
    sampler = sampling.get_pc_sampler(sde, tuple(z.shape), sampling.ReverseDiffusionPredictor,
                                      sampling.LangevinCorrector, lambda x: x, SNR, n_steps=1,
                                      continuous=True, denoise=True, eps=EPS, device="cpu")
    counted = Counted(score)
    torch.manual_seed(seed)
    x, _ = sampler(counted)
    return x.reshape(z.shape[0], -1), counted.calls


def reference_main(inp_path: str, out_path: str) -> None:
    """--side reference: every (seed, steps) of one mixture and SDE, samples written to out_path."""
    torch.set_num_threads(1)
    inp = np.load(inp_path)
    score = oracle_score(inp)
    sys.path.insert(0, REF_DIR)
    import sampling  # the reference's sampling.py (imports its sde_lib and models.utils)
    import sde_lib as ref_sde_lib
    sampling.mutils.get_score_fn = lambda sde, model, train=False, continuous=False: model  # model = score
    out = {}
    for seed, z in zip(inp["seeds"].tolist(), inp["z"]):
        z = torch.from_numpy(z)[..., None, None]
        for steps in inp["steps"].tolist():
            x, calls = ref_sample(sampling, ref_sde_lib, inp, score, z, steps, seed)
            out[f"{seed}|{steps}"], out[f"{seed}|{steps}|nfe"] = x.numpy(), np.array(calls)
    np.savez(out_path, **out)


# --- our side and the comparison --------------------------------------------------------------------

def run_reference(gm, kind: str, sigma_max: float, zs: dict, steps) -> dict:
    """{(seed, steps): (samples, nfe)} from the reference sampler, through REF_PYTHON."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, weights=gm.weights.numpy(), means=gm.means.numpy(), covs=gm.covs.numpy(), sde=kind,
                 sigma_max=sigma_max, seeds=np.array(list(zs)), steps=np.array(steps),
                 z=np.stack([z.numpy() for z in zs.values()]))
        subprocess.run([REF_PYTHON, "-W", "ignore", __file__, "--side", "reference", str(inp), str(outp)],
                       check=True)
        d = np.load(outp)
        return {(s, k): (torch.from_numpy(d[f"{s}|{k}"]), int(d[f"{s}|{k}|nfe"])) for s in zs for k in steps}


def run_ours(gm, sde, z: torch.Tensor, steps: int, seed: int, options: dict):
    from samplers import sample
    res = sample("pc", gm.score_fn(sde), sde, tuple(z.shape), x_T=z, steps=steps, corrector="langevin",
                 generator=torch.Generator().manual_seed(seed), **options)
    return res.samples, res.nfe


def sw(x: torch.Tensor, y: torch.Tensor) -> float:
    from samplers.quality import sliced_wasserstein
    if not bool(torch.isfinite(x).all()):
        return math.inf
    return sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1234))


def floor_sw(gm, n: int, pairs: int) -> float:
    """Mean SW between two independent exact sample sets of size n."""
    g = torch.Generator().manual_seed(50_000)
    return statistics.mean(sw(gm.sample(n, g), gm.sample(n, g)) for _ in range(pairs))


def bench_cell(name: str, kind: str, seeds, steps, n: int, pairs: int) -> dict:
    """Per-seed SW {(label, steps): [sw per seed]}, the NFEs seen and the floor, for one mixture x SDE."""
    gm, sigma_max = make_mixture(name), SIGMA_MAX[name]
    sde = make_sde(kind, sigma_max)
    zs = {s: torch.randn(n, gm.D, generator=torch.Generator().manual_seed(s)) * sde.prior_std() for s in seeds}
    exact = {s: gm.sample(n, torch.Generator().manual_seed(10_000 + s)) for s in seeds}
    got = {(REF, s, k): v for (s, k), v in run_reference(gm, kind, sigma_max, zs, steps).items()}
    for label, options in OURS.items():
        got.update({(label, s, k): run_ours(gm, sde, zs[s], k, s, options) for s in seeds for k in steps})
    rows, nfe = {}, {}
    for (label, s, k), (x, calls) in got.items():
        rows.setdefault((label, k), []).append(sw(x, exact[s]))
        nfe.setdefault((label, k), set()).add(calls)
    print(f"  {name} {kind} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return {"rows": rows, "nfe": nfe, "floor": floor_sw(gm, n, pairs), "sigma_max": sigma_max}


def mean_se(v: list[float]) -> tuple[float, float]:
    if not all(math.isfinite(a) for a in v):
        return math.inf, math.nan
    return statistics.mean(v), statistics.stdev(v) / math.sqrt(len(v))


def fmt(pair) -> str:
    return "inf" if not math.isfinite(pair[0]) else f"{pair[0]:.4f} ±{pair[1]:.4f}"


def cell_lines(name: str, kind: str, res: dict, steps) -> list[str]:
    """Table rows for one mixture x SDE: per NFE, each side's SW, ratio, limit and verdict (ours rd)."""
    rows, floor, out = res["rows"], res["floor"], []
    for k in steps:
        ref, rd, anc = (mean_se(rows[(lab, k)]) for lab in (REF, "ours rd", "ours ancestral"))
        limit = 1.25 * ref[0] + 0.25 * floor
        nfes = "/".join(str(sorted(res["nfe"][(lab, k)])[0]) for lab in (REF, "ours rd", "ours ancestral"))
        out.append(f"| {name} | {kind} | {2 * k} ({nfes}) | {floor:.4f} | {fmt(ref)} | {fmt(rd)} | {fmt(anc)} | "
                   f"{rd[0] / ref[0]:.2f} / {anc[0] / ref[0]:.2f} | {limit:.4f} | "
                   f"{'MET' if rd[0] <= limit else 'NOT MET'} / {'MET' if anc[0] <= limit else 'NOT MET'} |")
    return out


def monotone_lines(name: str, kind: str, res: dict, lo: int, hi: int) -> list[str]:
    """SW(NFE 2 hi) - SW(NFE 2 lo), paired over seeds, per sampler; 'worse' if above 2 s.e."""
    out = []
    for lab in ("ours rd", "ours ancestral", REF):
        d = mean_se([b - a for a, b in zip(res["rows"][(lab, lo)], res["rows"][(lab, hi)])])
        verdict = "worse" if d[0] > 2 * d[1] else ("better" if d[0] < -2 * d[1] else "same within noise")
        out.append(f"| {name} | {kind} | {lab} | {d[0]:+.4f} ±{d[1]:.4f} | {verdict} |")
    return out


HEAD = ["| mixture | SDE | NFE (ref/rd/anc NFE) | floor | score_sde_pytorch | ours rd | ours ancestral | "
        "ratio rd / anc | limit 1.25 ref + 0.25 floor | rd / anc |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
MONO_HEAD = ["| mixture | SDE | sampler | SW(NFE {hi}) - SW(NFE {lo}), paired | verdict |",
             "| --- | --- | --- | ---: | --- |"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=["ours", "reference"], default="ours")
    p.add_argument("files", nargs="*", help="--side reference: in.npz out.npz")
    p.add_argument("--mixtures", nargs="+", default=["ring", "r16"], choices=list(SIGMA_MAX))
    p.add_argument("--sdes", nargs="+", default=["vp", "ve"], choices=["vp", "ve"])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 500], help="NFE = 2 x steps")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--floor-pairs", type=int, default=32)
    p.add_argument("--json", help="also write the per-seed distances here")
    return p.parse_args()


def main() -> None:
    args = parse()
    if args.side == "reference":
        return reference_main(*args.files)
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()}; n {args.n}; seeds 0-{args.seeds - 1}; torch threads 1")
    lo, hi = args.steps[-2], args.steps[-1]
    table, mono, raw = list(HEAD), [MONO_HEAD[0].format(lo=2 * lo, hi=2 * hi), MONO_HEAD[1]], {}
    for name in args.mixtures:
        for kind in args.sdes:
            res = bench_cell(name, kind, list(range(args.seeds)), args.steps, args.n, args.floor_pairs)
            table += cell_lines(name, kind, res, args.steps)
            mono += monotone_lines(name, kind, res, lo, hi)
            raw[f"{name}|{kind}"] = {"floor": res["floor"], "sigma_max": res["sigma_max"],
                                     "rows": {f"{lab}|{k}": v for (lab, k), v in res["rows"].items()}}
    print("\n" + "\n".join(table) + "\n\n" + "\n".join(mono))
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
