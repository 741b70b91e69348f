"""Gaussian-mixture data: exact score, log-density and samples at every t (MATH.md §6).

If p_0 = sum_k w_k N(mu_k, Sigma_k), then under any SDE here
p_t = sum_k w_k N(alpha(t) mu_k, alpha(t)^2 Sigma_k + sigma(t)^2 I). Each Sigma_k is
eigendecomposed once (Sigma_k = U_k diag(lam_k) U_k^T), so that at any t the covariance is
U_k diag(alpha^2 lam_k + sigma^2) U_k^T and every quantity costs O(B K D^2) per call.
"""
import math

import torch

from sde_lib.base import SDE
from sde_lib.utils import ScoreFn, as_time


class GaussianMixture:
    """A mixture of K full-covariance Gaussians in D dimensions (float64 internally)."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
        weights, means, covs = (torch.as_tensor(a, dtype=torch.float64).cpu() for a in (weights, means, covs))
        K, D = means.shape
        if weights.shape != (K,) or covs.shape != (K, D, D):
            raise ValueError(f"shapes must be weights [K], means [K, D], covs [K, D, D]; got "
                             f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}")
        if (weights < 0).any() or not math.isclose(float(weights.sum()), 1.0, rel_tol=1e-5):
            raise ValueError(f"weights must be non-negative and sum to 1, got {weights.tolist()}")
        weights = weights / weights.sum()  # float32 inputs sum to 1 only to ~1e-7
        lam, U = torch.linalg.eigh(0.5 * (covs + covs.transpose(-1, -2)))
        if (lam < -1e-12).any():
            raise ValueError("every covariance must be positive semi-definite")
        self.weights, self.means, self.covs = weights, means, covs
        self._params = {"log_w": torch.log(weights), "mu": means, "lam": lam.clamp_min(0), "U": U}
        self._on_device: dict = {}
        self.K, self.D = K, D

    @classmethod
    def random(cls, dim: int, n_components: int = 3, seed: int = 0) -> "GaussianMixture":
        """K well-separated random full-covariance components in `dim` dimensions (tests, benchmarks)."""
        g = torch.Generator().manual_seed(seed)
        means = 2.0 * torch.randn(n_components, dim, generator=g, dtype=torch.float64)
        A = torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64) / dim ** 0.5
        covs = 0.3 * A @ A.transpose(1, 2) + 0.05 * torch.eye(dim, dtype=torch.float64)
        w = torch.rand(n_components, generator=g, dtype=torch.float64) + 0.5
        return cls(w / w.sum(), means, covs)

    @classmethod
    def ring(cls, n_modes: int = 8, radius: float = 2.0, std: float = 0.2) -> "GaussianMixture":
        """n_modes equal-weight isotropic 2-D Gaussians on a circle (the classic 8-mode toy)."""
        angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
        means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        covs = std ** 2 * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2).clone()
        return cls(torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64), means, covs)

    def _p(self, like: torch.Tensor) -> dict:
        """The decomposed parameters on like's device (float64), moved once per device."""
        key = str(like.device)
        if key not in self._on_device:
            self._on_device[key] = {k: v.to(like.device) for k, v in self._params.items()}
        return self._on_device[key]

    def _components(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
        """Per-component quantities at x [B, D] for per-sample alpha, sigma [B] (float64)."""
        p = self._p(x)
        d = x[:, None, :] - alpha[:, None, None] * p["mu"][None]          # x - alpha mu_k   [B, K, D]
        y = torch.einsum("kde,bkd->bke", p["U"], d)                       # rotated into eigenbasis
        e = alpha[:, None, None] ** 2 * p["lam"][None] + sigma[:, None, None] ** 2  # eigenvalues of C_k
        log_n = -0.5 * ((y * y / e).sum(-1) + torch.log(e).sum(-1) + self.D * math.log(2 * math.pi))
        log_joint = p["log_w"][None] + log_n                              # log w_k N_k(x)   [B, K]
        Pd = torch.einsum("kde,bke->bkd", p["U"], y / e)                  # C_k^{-1} (x - alpha mu_k)
        return log_joint, Pd, y, e

    def _at(self, sde: SDE | None, x: torch.Tensor, t):
        """Flatten x to [B, D] float64 and get alpha, sigma at t (identity at t = None)."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.D:
            raise ValueError(f"x has {flat.shape[1]} dimensions per sample, the mixture has D={self.D}")
        if sde is None:
            ones = torch.ones(flat.shape[0], dtype=torch.float64, device=x.device)
            return flat, ones, torch.zeros_like(ones)
        alpha, sigma = sde.alpha_sigma(as_time(t, flat))
        return flat, alpha, sigma

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_0(x) [B] for x [B, *D] (returned in x's dtype)."""
        return self.log_prob_t(None, x, None)

    def log_prob_t(self, sde: SDE | None, x: torch.Tensor, t) -> torch.Tensor:
        """Exact log p_t(x) [B] under sde at times t [B] (MATH §6)."""
        flat, alpha, sigma = self._at(sde, x, t)
        log_joint, _, _, _ = self._components(flat, alpha, sigma)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def score_t(self, sde: SDE, x: torch.Tensor, t) -> torch.Tensor:
        """Exact score grad_x log p_t(x) [B, *D] (MATH §6)."""
        flat, alpha, sigma = self._at(sde, x, t)
        log_joint, Pd, _, _ = self._components(flat, alpha, sigma)
        r = torch.softmax(log_joint, dim=1)                               # responsibilities
        return (-(r[:, :, None] * Pd).sum(1)).reshape(x.shape).to(x.dtype)

    def score_divergence_t(self, sde: SDE, x: torch.Tensor, t) -> torch.Tensor:
        """Exact divergence of the score (Laplacian of log p_t) at x [B, *D] -> [B]."""
        flat, alpha, sigma = self._at(sde, x, t)
        log_joint, Pd, _, e = self._components(flat, alpha, sigma)
        r = torch.softmax(log_joint, dim=1)
        score = -(r[:, :, None] * Pd).sum(1)
        # Laplacian of log sum_k w_k N_k = sum_k r_k (|C_k^{-1} d_k|^2 - tr C_k^{-1}) - |score|^2.
        per_k = (Pd * Pd).sum(-1) - (1.0 / e).sum(-1)
        return ((r * per_k).sum(1) - (score * score).sum(1)).to(x.dtype)

    def score_fn(self, sde: SDE) -> ScoreFn:
        """The exact score of p_t under sde as a plain score_fn(x, t)."""
        return lambda x, t: self.score_t(sde, x, t)

    def marginal(self, sde: SDE, t: float) -> "GaussianMixture":
        """The exact mixture p_t at one time t (MATH §6)."""
        alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor([float(t)], dtype=torch.float64)))
        eye = torch.eye(self.D, dtype=torch.float64)
        return GaussianMixture(self.weights, alpha * self.means, alpha ** 2 * self.covs + sigma ** 2 * eye)

    def sample(self, n: int, generator: torch.Generator | None = None, *, dtype=torch.float32,
               device=None) -> torch.Tensor:
        """n exact samples [n, D] (drawn on the CPU in float64 for reproducibility, then moved)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.D, dtype=torch.float64, generator=generator)
        p = self._params
        x = self.means[k] + torch.einsum("nde,ne->nd", p["U"][k], z * p["lam"][k].sqrt())
        return x.to(device=device, dtype=dtype)

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Overall mean [D] and covariance [D, D] of the mixture (float64)."""
        mean = self.weights @ self.means
        centred = self.means - mean
        cov = torch.einsum("k,kde->de", self.weights, self.covs + centred[:, :, None] * centred[:, None, :])
        return mean, cov
