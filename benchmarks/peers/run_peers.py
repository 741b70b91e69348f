"""Baseline samplers of diffusers and k-diffusion on the Gaussian-mixture oracle (peers venv only).

Run by benchmarks/bench_samplers.py through the peers venv's python (diffusers / k-diffusion are
not project dependencies):

    /work/venvs/peers/bin/python benchmarks/peers/run_peers.py IN.npz OUT.npz

IN.npz holds the mixture (weights [K], means [K, D], covs [K, D, D]), the VP SDE (beta_min,
beta_max, eps), and the run: n, seeds, nfe budgets, method names. Every peer is driven by the
exact score of `sde_lib.oracle.GaussianMixture` (imported from this repository, so both sides
evaluate the very same function), expressed in the peer's own model interface:

- diffusers: an eps-prediction network eps(x, timestep) on DDPM's 1000 linear betas. A timestep
  names a noise level through the scheduler's own table (sigma_tilde = sqrt((1-abar)/abar),
  linearly interpolated at fractional timesteps as the Euler/Heun schedulers do); the network
  returns the exact eps of the data at that noise level, eps = -sigma s(x, t) with t the VP time
  of the same log-SNR. So the peer solves the exact probability flow of the same data.
- k-diffusion: a denoiser D(x_tilde, sigma_tilde) = E[x0 | x] for x = alpha x_tilde, on Karras'
  rho = 7 grid between the VP SDE's sigma_tilde(eps) and sigma_tilde(T) (then 0).

The time inside the model wrapper (conversion included, to the peers' benefit) is summed per
run; OUT.npz gets, per "method|budget|seed": samples [n, D], nfe, wall and inside seconds.

With `free=1` in IN.npz (benchmarks/bench_sampler_overhead.py) the models are replaced by a
one-kernel stand-in (eps = 0.1 x, D(x) = 0.5 x): the samples mean nothing, and the wall time
outside the model is the sampler's own cost per call.
"""
import importlib.util
import math
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from sde_lib import VPSDE  # noqa: E402
from sde_lib.oracle import GaussianMixture  # noqa: E402


def load_k_sampling():
    """k_diffusion.sampling loaded by its file: the package's __init__ imports torchvision (for
    image utilities), whose PyPI build does not import beside torch 2.13.0+cpu. sampling.py needs
    only utils.append_dims from the package, which we provide."""
    spec = importlib.util.find_spec("k_diffusion")
    pkg_dir = Path(spec.submodule_search_locations[0])
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(pkg_dir)]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg.utils = utils
    sys.modules.update({"k_diffusion": pkg, "k_diffusion.utils": utils})
    s = importlib.util.spec_from_file_location("k_diffusion.sampling", pkg_dir / "sampling.py")
    mod = importlib.util.module_from_spec(s)
    sys.modules["k_diffusion.sampling"] = mod
    s.loader.exec_module(mod)
    return mod


class Timed:
    """Counts calls of fn and the seconds spent inside them."""

    def __init__(self, fn):
        self.fn, self.calls, self.inside = fn, 0, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.inside += time.perf_counter() - start
        self.calls += 1
        return out


def t_of_sigma_tilde(sde, sigma_tilde: torch.Tensor) -> torch.Tensor:
    """VP time with sigma/alpha = sigma_tilde (float64)."""
    return sde.t_from_log_snr(-2 * torch.log(sigma_tilde.to(torch.float64)))


# ---------------------------------------------------------------- diffusers
def diffusers_eps_model(gm, sde, table_sigma: np.ndarray):
    """eps(x, timestep) of the exact data at the noise level the scheduler's table gives timestep."""
    grid = np.arange(len(table_sigma))

    def model(x, timestep):
        st = float(np.interp(float(timestep), grid, table_sigma))
        t = t_of_sigma_tilde(sde, torch.tensor([st]))
        sigma = st / math.sqrt(1 + st * st)
        return -sigma * gm.score_t(sde, x, t.expand(x.shape[0]))
    return model


DIFFUSERS = {  # name -> (scheduler class name, kwargs, nfe(steps))
    "diffusers_dpmpp2m": ("DPMSolverMultistepScheduler", {"solver_order": 2}, lambda s: s),
    "diffusers_dpmpp3m": ("DPMSolverMultistepScheduler", {"solver_order": 3}, lambda s: s),
    "diffusers_dpmpp2m_karras": ("DPMSolverMultistepScheduler", {"solver_order": 2, "use_karras_sigmas": True}, lambda s: s),
    "diffusers_unipc2": ("UniPCMultistepScheduler", {"solver_order": 2}, lambda s: s),
    "diffusers_unipc3": ("UniPCMultistepScheduler", {"solver_order": 3}, lambda s: s),
    "diffusers_ddim": ("DDIMScheduler", {"timestep_spacing": "trailing", "set_alpha_to_one": True}, lambda s: s),
    "diffusers_euler": ("EulerDiscreteScheduler", {}, lambda s: s),
    "diffusers_heun": ("HeunDiscreteScheduler", {}, lambda s: 2 * s - 1),
}


def free_eps_model(x, timestep):
    return x * 0.1


def free_denoiser(x_tilde, sigma_tilde):
    return x_tilde * 0.5


def run_diffusers(name, gm, sde, z, budget, free=False):
    import diffusers

    cls, kw, cost = DIFFUSERS[name]
    steps = max_steps(cost, budget)
    if steps is None:
        return None
    sched = getattr(diffusers, cls)(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                    beta_schedule="linear", prediction_type="epsilon", **kw)
    abar = sched.alphas_cumprod.double().numpy()
    model = Timed(free_eps_model if free else diffusers_eps_model(gm, sde, np.sqrt((1 - abar) / abar)))
    start = time.perf_counter()
    sched.set_timesteps(steps)
    x = z * sched.init_noise_sigma
    for t in sched.timesteps:
        eps = model(sched.scale_model_input(x, t), t)
        x = sched.step(eps, t, x).prev_sample
    return x, model, time.perf_counter() - start


# ---------------------------------------------------------------- k-diffusion
def k_denoiser(gm, sde):
    """D(x_tilde, sigma_tilde [B]) = (x + sigma^2 s(x, t)) / alpha with x = alpha x_tilde."""
    def model(x_tilde, sigma_tilde):
        t = t_of_sigma_tilde(sde, sigma_tilde)
        alpha, sigma = (v.to(x_tilde.dtype)[:, None] for v in sde.alpha_sigma(t))
        x = alpha * x_tilde
        return (x + sigma ** 2 * gm.score_t(sde, x, t)) / alpha
    return model


K_FIXED = {  # name -> (function name, nfe(steps))
    "k_dpmpp_2m": ("sample_dpmpp_2m", lambda s: s),
    "k_dpmpp_3m_sde": ("sample_dpmpp_3m_sde", lambda s: s),
    "k_heun": ("sample_heun", lambda s: 2 * s - 1),
    "k_lms": ("sample_lms", lambda s: s),
    "k_euler": ("sample_euler", lambda s: s),
}
K_ADAPTIVE_RTOL = {"k_dpm_adaptive_r0.05": 0.05, "k_dpm_adaptive_r0.01": 0.01, "k_dpm_adaptive_r0.001": 0.001}


def run_k(name, ks, gm, sde, z, budget, seed, free=False):
    lo, hi = _k_range(sde)
    model = Timed(free_denoiser if free else k_denoiser(gm, sde))
    alpha_T = math.exp(float(sde.log_alpha(torch.tensor(sde.T, dtype=torch.float64))))
    torch.manual_seed(seed)  # the SDE samplers' noise
    start = time.perf_counter()
    if name in K_ADAPTIVE_RTOL:
        x = ks.sample_dpm_adaptive(model, z / alpha_T, lo, hi, rtol=K_ADAPTIVE_RTOL[name], atol=1e-4, disable=True)
    else:
        fn, cost = K_FIXED[name]
        steps = max_steps(cost, budget)
        if steps is None:
            return None
        sigmas = ks.get_sigmas_karras(steps, lo, hi, rho=7.0).to(torch.float32)
        x = getattr(ks, fn)(model, z / alpha_T, sigmas, disable=True)
    return x, model, time.perf_counter() - start


def _k_range(sde):
    """sigma_tilde = sigma/alpha at eps and at T (the rho-grid ends)."""
    t = torch.tensor([sde.eps_bench, sde.T], dtype=torch.float64)
    st = torch.exp(-0.5 * sde.log_snr(t))
    return float(st[0]), float(st[1])


def max_steps(cost, budget: int):
    """The largest steps with cost(steps) <= budget (None if even 1 step is over)."""
    steps = None
    for s in range(1, budget + 1):
        if cost(s) <= budget:
            steps = s
    return steps


def _median_run(runs) -> tuple[float, float]:
    """(wall, inside) of the run with the median time outside the model."""
    wall, model = sorted(((w, m) for _, m, w in runs), key=lambda r: r[0] - r[1].inside)[len(runs) // 2]
    return wall, model.inside


def main(inp: str, out: str) -> None:
    torch.set_num_threads(1)
    d = np.load(inp, allow_pickle=False)
    gm = GaussianMixture(torch.from_numpy(d["weights"]), torch.from_numpy(d["means"]), torch.from_numpy(d["covs"]))
    sde = VPSDE(beta_min=float(d["beta_min"]), beta_max=float(d["beta_max"]))
    sde.eps_bench = float(d["eps"])
    n, D = int(d["n"]), gm.D
    free = bool(d["free"]) if "free" in d.files else False
    repeats = int(d["repeats"]) if "repeats" in d.files else 1
    ks = load_k_sampling()
    results = {}
    for seed in d["seeds"].tolist():
        z = torch.randn(n, D, generator=torch.Generator().manual_seed(int(seed)))
        for name in d["methods"].tolist():
            budgets = [0] if name in K_ADAPTIVE_RTOL else d["budgets"].tolist()
            for budget in budgets:
                key = f"{name}|{budget}|{seed}"
                try:
                    runs = []
                    for _ in range(repeats):  # repeats > 1: the overhead benchmark takes the median
                        with torch.no_grad():
                            if name.startswith("diffusers"):
                                got = run_diffusers(name, gm, sde, z, int(budget), free)
                            else:
                                got = run_k(name, ks, gm, sde, z, int(budget), int(seed), free)
                        if got is None:
                            break
                        runs.append(got)
                except Exception as e:  # a peer that fails at some budget is reported, not fatal
                    results[key + "|error"] = np.array(f"{type(e).__name__}: {e}"[:300])
                    continue
                if not runs:
                    continue
                x, model, _ = runs[-1]
                results[key + "|samples"] = x.to(torch.float32).numpy()
                results[key + "|stats"] = np.array([model.calls, *_median_run(runs)])
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
