"""Baseline samplers of diffusers and k-diffusion on the Gaussian-mixture oracle (peers venv only).

Run by benchmarks/bench_samplers.py through the peers venv's python (diffusers / k-diffusion are
not project dependencies):

    /work/venvs/peers/bin/python benchmarks/peers/run_peers.py IN.npz OUT.npz
    /work/venvs/peers/bin/python benchmarks/peers/run_peers.py --list    # every candidate setting

IN.npz holds the mixture (weights [K], means [K, D], covs [K, D, D]), the VP SDE (beta_min,
beta_max, eps), and the run: n, seeds, nfe budgets, method names. Every peer is driven by the
exact score of `sde_lib.oracle.GaussianMixture` (imported from this repository, so both sides
evaluate the very same function), expressed in the peer's own model interface:

- diffusers, DDPM-type schedulers: an eps-prediction network eps(x, timestep) on DDPM's 1000
  linear betas. A timestep names a noise level through the scheduler's own table (sigma_tilde =
  sqrt((1-abar)/abar), linearly interpolated at fractional timesteps as the Euler/Heun schedulers
  do); the network returns the exact eps of the data at that noise level, eps = -sigma s(x, t)
  with t the VP time of the same log-SNR. So the peer solves the exact probability flow of the
  same data. DDIM / DDPM run with clip_sample=False: their default clips the x0 estimate to
  [-1, 1], which the oracle's data exceed. (Schedulers that round a continuous sigma to an integer timestep, e.g. diffusers'
  multistep solvers with use_karras_sigmas, evaluate the network at the rounded timestep, as they
  do with any discrete-time network.)
- diffusers, EDM schedulers (EDMDPMSolverMultistepScheduler, EDMEulerScheduler): a continuous
  network F(c_in x, c_noise) in EDM's preconditioning (denoised = c_skip x + c_out F), between
  sigma_tilde(t_end) and sigma_tilde(T).
- k-diffusion: a denoiser D(x_tilde, sigma_tilde) = E[x0 | x] for x = alpha x_tilde, on a sigma
  grid (Karras rho, exponential, polyexponential or k-diffusion's VP grid) between
  sigma_tilde(t_end) and sigma_tilde(T), then 0.

Methods are named by a spec "<lib>:<algorithm>:<key>=<value>,..." (`parse_spec`), e.g.
`diffusers:UniPCMultistepScheduler:solver_order=3,solver_type=bh1,use_karras_sigmas=True` (keys are
the scheduler's constructor arguments) or `k_diffusion:dpmpp_2m:sched=exponential,tend=auto` (keys:
sched, rho, tend, and the sampling function's own keyword arguments); the short names of
`ALIASES` (diffusers_dpmpp2m, k_lms, ...) stay valid. `t_end` / `tend` is the VP time of the
smallest nonzero noise level (default: IN's eps); `auto` = max(1e-3, 2 / NFE^2). At a budget of k
score calls a fixed-step method gets the largest number of steps whose NFE (every model call,
Heun-type stages included) is at most k; the model's calls are counted and reported, and a run
that spends more than its budget is an error. Adaptive methods (k-diffusion's dpm_adaptive) run
once per seed under budget 0 and report their own NFE. `GRID` lists every candidate setting.

The time inside the model wrapper (conversion included, to the peers' benefit) is summed per
run; OUT.npz gets, per "method|budget|seed": samples [n, D], stats (nfe, wall and inside seconds)
and steps.

With `free=1` in IN.npz (benchmarks/bench_sampler_overhead.py) the models are replaced by a
one-kernel stand-in (eps = 0.1 x, D(x) = 0.5 x): the samples mean nothing, and the wall time
outside the model is the sampler's own cost per call.
"""
import importlib.util
import inspect
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


class OverBudget(RuntimeError):
    """A run made more model calls than its budget allows (a wrong NFE formula)."""


# ---------------------------------------------------------------- method specs
ALIASES = {  # the short names bench_samplers.py / bench_sampler_overhead.py use
    "diffusers_dpmpp2m": "diffusers:DPMSolverMultistepScheduler:solver_order=2",
    "diffusers_dpmpp3m": "diffusers:DPMSolverMultistepScheduler:solver_order=3",
    "diffusers_dpmpp2m_karras": "diffusers:DPMSolverMultistepScheduler:solver_order=2,use_karras_sigmas=True",
    "diffusers_unipc2": "diffusers:UniPCMultistepScheduler:solver_order=2",
    "diffusers_unipc3": "diffusers:UniPCMultistepScheduler:solver_order=3",
    "diffusers_ddim": "diffusers:DDIMScheduler:timestep_spacing=trailing,set_alpha_to_one=True,clip_sample=False",
    "diffusers_euler": "diffusers:EulerDiscreteScheduler",
    "diffusers_heun": "diffusers:HeunDiscreteScheduler",
    "k_dpmpp_2m": "k_diffusion:dpmpp_2m",
    "k_dpmpp_3m_sde": "k_diffusion:dpmpp_3m_sde",
    "k_heun": "k_diffusion:heun",
    "k_lms": "k_diffusion:lms",
    "k_euler": "k_diffusion:euler",
    "k_dpm_adaptive_r0.05": "k_diffusion:dpm_adaptive:rtol=0.05,atol=0.0001",
    "k_dpm_adaptive_r0.01": "k_diffusion:dpm_adaptive:rtol=0.01,atol=0.0001",
    "k_dpm_adaptive_r0.001": "k_diffusion:dpm_adaptive:rtol=0.001,atol=0.0001",
}


def _value(text: str):
    """'True' / 'False' / an int / a float, else the string itself."""
    if text in ("True", "False"):
        return text == "True"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(name: str) -> tuple[str, str, dict]:
    """(lib, algorithm, options) of a method name: an alias or "<lib>:<algorithm>[:k=v,...]"."""
    parts = ALIASES.get(name, name).split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("diffusers", "k_diffusion"):
        raise ValueError(f"method {name!r}: expected an alias {sorted(ALIASES)} or 'diffusers|k_diffusion:<algo>[:k=v,...]'")
    opts = {}
    for item in (parts[2].split(",") if len(parts) == 3 and parts[2] else []):
        key, _, val = item.partition("=")
        opts[key] = _value(val)
    return parts[0], parts[1], opts


def is_adaptive(name: str) -> bool:
    lib, algo, _ = parse_spec(name)
    return lib == "k_diffusion" and algo == "dpm_adaptive"


def t_of_sigma_tilde(sde, sigma_tilde: torch.Tensor) -> torch.Tensor:
    """VP time with sigma/alpha = sigma_tilde (float64)."""
    return sde.t_from_log_snr(-2 * torch.log(sigma_tilde.to(torch.float64)))


def sigma_tilde_of_t(sde, t: float) -> float:
    """sigma/alpha at VP time t."""
    return float(torch.exp(-0.5 * sde.log_snr(torch.tensor([t], dtype=torch.float64)))[0])


def end_time(tend, nfe: int, default: float) -> float:
    """The smallest nonzero noise level's VP time: a number, 'auto' (max(1e-3, 2/NFE^2)) or the default."""
    if tend is None:
        return default
    if tend == "auto":
        return max(1e-3, 2.0 / nfe ** 2)
    return float(tend)


def exact_x0(gm, sde, x_tilde: torch.Tensor, sigma_tilde: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] for x = alpha x_tilde at the scaled noise level sigma_tilde [B]."""
    t = t_of_sigma_tilde(sde, sigma_tilde)
    alpha, sigma = (v.to(x_tilde.dtype)[:, None] for v in sde.alpha_sigma(t))
    x = alpha * x_tilde
    return (x + sigma ** 2 * gm.score_t(sde, x, t)) / alpha


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


def edm_model(gm, sde, sigma_data: float):
    """F(c_in x, c_noise) with c_skip x + c_out F = E[x0 | x] (EDM's preconditioning, 'epsilon')."""
    def model(x_in, c_noise):
        sigma = float(torch.exp(4 * torch.as_tensor(c_noise, dtype=torch.float64)).reshape(-1)[0])
        scale = math.sqrt(sigma ** 2 + sigma_data ** 2)
        x_tilde = x_in * scale
        den = exact_x0(gm, sde, x_tilde, torch.full((x_in.shape[0],), sigma, dtype=torch.float64))
        c_skip, c_out = sigma_data ** 2 / scale ** 2, sigma * sigma_data / scale
        return (den - c_skip * x_tilde) / c_out
    return model


def free_eps_model(x, timestep):
    return x * 0.1


def free_denoiser(x_tilde, sigma_tilde):
    return x_tilde * 0.5


EDM_SCHEDULERS = ("EDMDPMSolverMultistepScheduler", "EDMEulerScheduler")


def make_scheduler(cls: str, opts: dict, sde, nfe: int, default_eps: float):
    """A fresh diffusers scheduler: DDPM's 1000 linear betas (= the VP SDE's), or the EDM range."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # silence "Changing scheduler ... lower_order_final" notes
    kw = dict(opts)
    if "tau" in kw:  # SA-Solver: tau(t) = const (0: the probability flow ODE)
        tau = float(kw.pop("tau"))
        kw["tau_func"] = lambda t: tau
    if cls in EDM_SCHEDULERS:
        t_end = end_time(kw.pop("tend", None), nfe, default_eps)
        kw.update(sigma_min=sigma_tilde_of_t(sde, t_end), sigma_max=sigma_tilde_of_t(sde, sde.T),
                  prediction_type="epsilon")
        return getattr(diffusers, cls)(**kw)
    return getattr(diffusers, cls)(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                   beta_schedule="linear", prediction_type="epsilon", **kw)


_STEPS: dict = {}


def diffusers_steps(cls: str, opts: dict, sde, budget: int, default_eps: float):
    """The largest num_inference_steps whose model calls (= len(timesteps)) fit the budget (memoised)."""
    key = (cls, tuple(sorted(opts.items(), key=str)), sde.beta_min, sde.beta_max, sde.T, budget, default_eps)
    if key not in _STEPS:
        _STEPS[key] = _diffusers_steps(cls, opts, sde, budget, default_eps)
    return _STEPS[key]


def _diffusers_steps(cls: str, opts: dict, sde, budget: int, default_eps: float):
    for steps in range(budget, 0, -1):
        try:
            sched = make_scheduler(cls, opts, sde, steps, default_eps)
            sched.set_timesteps(steps)
        except Exception:  # some settings cannot make so few steps
            continue
        if len(sched.timesteps) <= budget:
            return steps
    return None


def run_diffusers(name, gm, sde, z, budget, seed, free=False, default_eps=1e-3):
    _, cls, opts = parse_spec(name)
    steps = diffusers_steps(cls, opts, sde, budget, default_eps)
    if steps is None:
        return None
    sched = make_scheduler(cls, opts, sde, steps, default_eps)
    if cls in EDM_SCHEDULERS:
        model = Timed(free_eps_model if free else edm_model(gm, sde, sched.config.sigma_data))
    else:
        abar = sched.alphas_cumprod.double().numpy()
        model = Timed(free_eps_model if free else diffusers_eps_model(gm, sde, np.sqrt((1 - abar) / abar)))
    gen = torch.Generator().manual_seed(seed)  # the stochastic schedulers' noise
    takes_gen = "generator" in inspect.signature(sched.step).parameters
    start = time.perf_counter()
    sched.set_timesteps(steps)
    x = z * sched.init_noise_sigma
    for t in sched.timesteps:
        eps = model(sched.scale_model_input(x, t), t)
        x = (sched.step(eps, t, x, generator=gen) if takes_gen else sched.step(eps, t, x)).prev_sample
    return x, model, time.perf_counter() - start, steps


# ---------------------------------------------------------------- k-diffusion
def k_denoiser(gm, sde):
    """D(x_tilde, sigma_tilde [B]) = (x + sigma^2 s(x, t)) / alpha with x = alpha x_tilde."""
    return lambda x_tilde, sigma_tilde: exact_x0(gm, sde, x_tilde, sigma_tilde)


K_COST = {  # sampling function -> NFE(number of nonzero sigmas); the last step, to sigma = 0, is one call
    "euler": lambda s: s, "lms": lambda s: s, "dpmpp_2m": lambda s: s, "dpmpp_2m_sde": lambda s: s,
    "dpmpp_3m_sde": lambda s: s, "euler_ancestral": lambda s: s,
    "heun": lambda s: 2 * s - 1, "dpm_2": lambda s: 2 * s - 1, "dpmpp_2s_ancestral": lambda s: 2 * s - 1,
    "dpmpp_sde": lambda s: 2 * s - 1, "dpm_2_ancestral": lambda s: 2 * s - 1,
}


def k_sigmas(ks, sde, opts: dict, steps: int, t_end: float) -> torch.Tensor:
    """`steps` nonzero noise levels from sigma_tilde(T) to sigma_tilde(t_end), then 0."""
    lo, hi = sigma_tilde_of_t(sde, t_end), sigma_tilde_of_t(sde, sde.T)
    sched = opts.get("sched", "karras")
    if sched == "karras":
        sig = ks.get_sigmas_karras(steps, lo, hi, rho=float(opts.get("rho", 7.0)))
    elif sched == "exponential":
        sig = ks.get_sigmas_exponential(steps, lo, hi)
    elif sched == "polyexponential":
        sig = ks.get_sigmas_polyexponential(steps, lo, hi, rho=float(opts.get("rho", 1.0)))
    elif sched == "vp":  # uniform in t on [t_end, T], VP SDE beta_d = beta_max - beta_min
        sig = ks.get_sigmas_vp(steps, beta_d=sde.beta_max - sde.beta_min, beta_min=sde.beta_min, eps_s=t_end)
    else:
        raise ValueError(f"sched must be karras / exponential / polyexponential / vp, got {sched!r}")
    return sig.to(torch.float32)


def run_k(name, ks, gm, sde, z, budget, seed, free=False, default_eps=1e-3):
    _, algo, opts = parse_spec(name)
    opts = dict(opts)
    kwargs = {k: v for k, v in opts.items() if k not in ("sched", "rho", "tend")}
    model = Timed(free_denoiser if free else k_denoiser(gm, sde))
    alpha_T = math.exp(float(sde.log_alpha(torch.tensor(sde.T, dtype=torch.float64))))
    torch.manual_seed(seed)  # the SDE samplers' noise
    hi = sigma_tilde_of_t(sde, sde.T)
    if algo == "dpm_adaptive":
        lo = sigma_tilde_of_t(sde, end_time(opts.get("tend"), 1, default_eps))
        start = time.perf_counter()
        x = ks.sample_dpm_adaptive(model, z / alpha_T, lo, hi, disable=True, **kwargs)
        return x, model, time.perf_counter() - start, 0
    if algo == "dpm_fast":  # DPM-Solver-fast: exactly n model calls
        steps = budget
        lo = sigma_tilde_of_t(sde, end_time(opts.get("tend"), budget, default_eps))
        start = time.perf_counter()
        x = ks.sample_dpm_fast(model, z / alpha_T, lo, hi, budget, disable=True, **kwargs)
        return x, model, time.perf_counter() - start, steps
    steps = max_steps(K_COST[algo], budget)
    if steps is None:
        return None
    sigmas = k_sigmas(ks, sde, opts, steps, end_time(opts.get("tend"), K_COST[algo](steps), default_eps))
    start = time.perf_counter()
    x = getattr(ks, "sample_" + algo)(model, z / alpha_T, sigmas, disable=True, **kwargs)
    return x, model, time.perf_counter() - start, steps


def max_steps(cost, budget: int):
    """The largest steps with cost(steps) <= budget (None if even 1 step is over)."""
    steps = None
    for s in range(1, budget + 1):
        if cost(s) <= budget:
            steps = s
    return steps


# ---------------------------------------------------------------- the candidate grid
def _spec(lib: str, algo: str, **opts) -> str:
    return f"{lib}:{algo}" + (":" + ",".join(f"{k}={v}" for k, v in opts.items()) if opts else "")


# diffusers' sigma choices: the table at linspace / trailing timesteps, or a continuous schedule
# (with which timestep_spacing has no effect).
_D_SIGMAS = [{"timestep_spacing": "linspace"}, {"timestep_spacing": "trailing"}, {"use_karras_sigmas": True},
             {"use_exponential_sigmas": True}]


def diffusers_grid() -> list[str]:
    """Every diffusers setting we try: each deterministic solver x its schedule / end / order options."""
    d = lambda cls, **kw: _spec("diffusers", cls, **kw)  # noqa: E731
    out = []
    for order in (2, 3):
        for sig in _D_SIGMAS + [{"use_lu_lambdas": True}]:
            for final in ("zero", "sigma_min"):
                for lof in (True, False):
                    out.append(d("DPMSolverMultistepScheduler", solver_order=order, **sig, final_sigmas_type=final,
                                 lower_order_final=lof))
        for sig in _D_SIGMAS[:2]:
            out.append(d("DPMSolverMultistepScheduler", solver_order=order, algorithm_type="dpmsolver", **sig))
        out.append(d("DPMSolverMultistepScheduler", solver_order=order, euler_at_final=True))
        for bh in ("bh1", "bh2"):
            for sig in _D_SIGMAS:
                for final, lof in (("zero", True), ("zero", False), ("sigma_min", True), ("sigma_min", False)):
                    if order == 3 and final == "zero" and not lof:
                        continue  # a singular solve in UniPC's last step (to sigma = 0) at any step count
                    out.append(d("UniPCMultistepScheduler", solver_order=order, solver_type=bh, **sig,
                                     final_sigmas_type=final, lower_order_final=lof))
            out.append(d("UniPCMultistepScheduler", solver_order=order, solver_type=bh, predict_x0=False))
        for sig in _D_SIGMAS:
            for lof in (True, False):
                out.append(d("DEISMultistepScheduler", solver_order=order, **sig, lower_order_final=lof))
        for sig in [{}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}]:
            for final, lof in (("zero", True), ("sigma_min", True), ("sigma_min", False)):
                out.append(d("DPMSolverSinglestepScheduler", solver_order=order, **sig, final_sigmas_type=final,
                             lower_order_final=lof))
        for sched in ("karras", "exponential"):
            for final in ("zero", "sigma_min"):
                for tend in (1e-3, "auto"):
                    out.append(d("EDMDPMSolverMultistepScheduler", solver_order=order, sigma_schedule=sched,
                                 final_sigmas_type=final, tend=tend))
    out.append(d("UniPCMultistepScheduler", solver_order=1, solver_type="bh2"))
    for p, c in ((2, 2), (3, 3), (3, 2), (2, 1)):
        for sig in _D_SIGMAS[:3]:
            out.append(d("SASolverScheduler", predictor_order=p, corrector_order=c, tau=0, **sig))
    for cls in ("LMSDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "EulerDiscreteScheduler"):
        out += [d(cls, **sig) for sig in _D_SIGMAS]
    for spacing in ("leading", "linspace", "trailing"):
        out.append(d("PNDMScheduler", skip_prk_steps=True, set_alpha_to_one=spacing != "leading", timestep_spacing=spacing))
        out.append(d("DDIMScheduler", set_alpha_to_one=spacing != "leading", timestep_spacing=spacing, clip_sample=False))
    for tend in (1e-3, "auto"):
        out.append(d("EDMEulerScheduler", sigma_schedule="karras", tend=tend))
    # stochastic
    out.append(d("EulerAncestralDiscreteScheduler", timestep_spacing="trailing"))
    out.append(d("DPMSolverMultistepScheduler", solver_order=2, algorithm_type="sde-dpmsolver++"))
    out.append(d("DPMSolverMultistepScheduler", solver_order=2, algorithm_type="sde-dpmsolver++", use_karras_sigmas=True))
    out.append(d("DDPMScheduler", timestep_spacing="trailing", clip_sample=False))
    return out


def k_grid() -> list[str]:
    """Every k-diffusion setting we try: each ODE sampler x sigma grid x end point, plus a few SDE ones."""
    k = lambda algo, **kw: _spec("k_diffusion", algo, **kw)  # noqa: E731
    scheds = [{"sched": "karras", "rho": 7.0}, {"sched": "exponential"}, {"sched": "vp"}]
    out = []
    for tend in (1e-3, "auto"):
        for algo, extra in (("euler", {}), ("heun", {}), ("dpm_2", {}), ("lms", {}), ("dpmpp_2m", {}),
                            ("dpmpp_2s_ancestral", {"eta": 0.0}), ("dpmpp_sde", {"eta": 0.0}),
                            ("dpmpp_2m_sde", {"eta": 0.0}), ("dpmpp_2m_sde", {"eta": 0.0, "solver_type": "heun"}),
                            ("dpmpp_3m_sde", {"eta": 0.0})):
            out += [k(algo, **s, tend=tend, **extra) for s in scheds]
        out += [k("lms", **s, tend=tend, order=3) for s in scheds[:2]]
        out.append(k("dpm_fast", tend=tend, eta=0.0))
    for order in (2, 3):
        for rtol in (0.05, 0.1, 0.2):
            out.append(k("dpm_adaptive", order=order, rtol=rtol, atol=0.0078))
    for algo in ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_sde"):  # stochastic, eta = 1
        out.append(k(algo, sched="karras", rho=7.0))
    return out


def GRID() -> list[str]:
    return diffusers_grid() + k_grid()


# ---------------------------------------------------------------- driver
def _median_run(runs) -> tuple[float, float]:
    """(wall, inside) of the run with the median time outside the model."""
    wall, model = sorted(((w, m) for _, m, w, _ in runs), key=lambda r: r[0] - r[1].inside)[len(runs) // 2]
    return wall, model.inside


def run_one(name, ks, gm, sde, z, budget, seed, *, free, default_eps):
    """One run of one method at one budget, or None if no number of steps fits the budget."""
    with torch.no_grad():
        if parse_spec(name)[0] == "diffusers":
            got = run_diffusers(name, gm, sde, z, budget, seed, free, default_eps)
        else:
            got = run_k(name, ks, gm, sde, z, budget, seed, free, default_eps)
    if got is not None and budget and got[1].calls > budget:
        raise OverBudget(f"{got[1].calls} model calls at budget {budget} (steps {got[3]})")
    return got


def main(inp: str, out: str) -> None:
    torch.set_num_threads(1)
    d = np.load(inp, allow_pickle=False)
    gm = GaussianMixture(torch.from_numpy(d["weights"]), torch.from_numpy(d["means"]), torch.from_numpy(d["covs"]))
    sde = VPSDE(beta_min=float(d["beta_min"]), beta_max=float(d["beta_max"]))
    eps = float(d["eps"])
    n, D = int(d["n"]), gm.D
    free = bool(d["free"]) if "free" in d.files else False
    repeats = int(d["repeats"]) if "repeats" in d.files else 1
    ks = load_k_sampling()
    results = {}
    for seed in d["seeds"].tolist():
        z = torch.randn(n, D, generator=torch.Generator().manual_seed(int(seed)))
        for name in d["methods"].tolist():
            for budget in ([0] if is_adaptive(name) else d["budgets"].tolist()):
                key = f"{name}|{budget}|{seed}"
                try:
                    runs = []
                    for _ in range(repeats):  # repeats > 1: the overhead benchmark takes the median
                        got = run_one(name, ks, gm, sde, z, int(budget), int(seed), free=free, default_eps=eps)
                        if got is None:
                            break
                        runs.append(got)
                except Exception as e:  # a peer that fails at some budget is reported, not fatal
                    results[key + "|error"] = np.array(f"{type(e).__name__}: {e}"[:300])
                    continue
                if not runs:
                    continue
                x, model, _, steps = runs[-1]
                results[key + "|samples"] = x.to(torch.float32).numpy()
                results[key + "|stats"] = np.array([model.calls, *_median_run(runs)])
                results[key + "|steps"] = np.array(steps)
    np.savez(out, **results)


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print("\n".join(GRID()))
    else:
        main(sys.argv[1], sys.argv[2])
