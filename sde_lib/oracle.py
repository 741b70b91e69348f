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

    # --- the components as classes (MATH §6; classifier guidance) -----------------------------

    def log_responsibilities_t(self, sde: SDE, x: torch.Tensor, t) -> torch.Tensor:
        """The exact noise-conditional classifier log p_t(k | x) [B, K] of the components (differentiable in x).

        log p_t(k | x) = log w_k N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I) - log p_t(x): the
        responsibilities of the noised mixture, in x's dtype.
        """
        flat, alpha, sigma = self._at(sde, x, t)
        log_joint, _, _, _ = self._components(flat, alpha, sigma)
        return torch.log_softmax(log_joint, dim=1).to(x.dtype)

    def classifier(self, sde: SDE):
        """log_responsibilities_t as a plain log_prob_fn(x [B, *D], t [B]) -> [B, K]."""
        return lambda x, t: self.log_responsibilities_t(sde, x, t)

    def component(self, k: int) -> "GaussianMixture":
        """Component k alone, a one-component mixture (the law of class k)."""
        if not 0 <= k < self.K:
            raise ValueError(f"component index {k} is out of range for a mixture of K={self.K}")
        return GaussianMixture(torch.ones(1, dtype=torch.float64), self.means[k:k + 1], self.covs[k:k + 1])

    def condition(self, mask: torch.Tensor, y: torch.Tensor) -> "ConditionalMixture":
        """The exact law p_0(x | x[mask] = y[mask]) per row; mask [D] / [*D] / [B, *D] bool (True =
        observed), y [*D] or [B, *D] (rows broadcast); see ConditionalMixture."""
        return ConditionalMixture(self, mask, y)


def _condition_rows(D: int, mask, y) -> tuple[torch.Tensor, torch.Tensor]:
    """mask (bool) and y (float64) as [B, D], a shared mask or y broadcast over the rows."""
    y = torch.as_tensor(y).detach().to(dtype=torch.float64, device="cpu")
    mask = torch.as_tensor(mask).to(device="cpu")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor (True = observed), got dtype {mask.dtype}")
    if y.numel() % D or mask.numel() % D:
        raise ValueError(f"mask {tuple(mask.shape)} and y {tuple(y.shape)} must hold D={D} entries per row")
    y, mask = y.reshape(-1, D), mask.reshape(-1, D)
    if y.shape[0] != mask.shape[0] and 1 not in (y.shape[0], mask.shape[0]):
        raise ValueError(f"mask has {mask.shape[0]} rows and y has {y.shape[0]}; expected equal counts or 1")
    B = max(y.shape[0], mask.shape[0])
    return mask.expand(B, D).contiguous(), y.expand(B, D).contiguous()


def _condition_components(gm: GaussianMixture, mask: torch.Tensor, y: torch.Tensor):
    """log w'_k [B, K], m_k [B, K, D], S_k [B, K, D, D] and log p_0,o(y) [B] of the conditional law.

    With P = diag(mask), A = P Sigma P + (I - P) is block diagonal (Sigma_oo, I): one Cholesky
    factor of A applies Sigma_oo^-1 to P-masked vectors and gives log det Sigma_oo, without index
    sets, so every row may have its own mask.
    """
    P = mask.to(torch.float64)[:, None, :]                                        # [B, 1, D]
    cov, mu = gm.covs[None], gm.means[None]                                       # [1, K, D, D], [1, K, D]
    L = torch.linalg.cholesky(P[..., :, None] * cov * P[..., None, :] + torch.diag_embed(1 - P))
    r = P * (y[:, None, :] - mu)                                                  # P (y - mu_k)
    u = torch.cholesky_solve(r[..., None], L)[..., 0]                             # Sigma_oo^-1 (y - mu_k)_o
    log_det = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)          # log det Sigma_k,oo
    n_obs = mask.sum(1, keepdim=True).to(torch.float64)
    log_n = -0.5 * ((r * u).sum(-1) + log_det + n_obs * math.log(2 * math.pi))  # log N(y_o; mu_k,o, Sigma_k,oo)
    log_joint = torch.log(gm.weights)[None] + log_n
    means = torch.where(mask[:, None, :], y[:, None, :], mu + (cov @ u[..., None])[..., 0])  # m_o = y exactly
    rows = P[..., :, None] * cov                                                  # P Sigma: the rows on o
    S = cov - rows.transpose(-1, -2) @ torch.cholesky_solve(rows, L)              # Sigma - Sigma_.o Sigma_oo^-1 Sigma_o.
    H = 1 - P
    S = 0.5 * (S + S.transpose(-1, -2)) * H[..., :, None] * H[..., None, :]       # observed block exactly 0
    return torch.log_softmax(log_joint, dim=1), means, S, torch.logsumexp(log_joint, dim=1)


class ConditionalMixture:
    """The exact law p_0(x | x_o = y) of a Gaussian mixture given observed coordinates, per row (MATH §6).

    p_0(x_h | x_o = y) = sum_k w'_k N(m_k, S_k) with w'_k ∝ w_k N(y; mu_k,o, Sigma_k,oo),
    m_k = mu_k,h + Sigma_k,ho Sigma_k,oo^-1 (y - mu_k,o), S_k = Sigma_k,hh - Sigma_k,ho Sigma_k,oo^-1 Sigma_k,oh.
    Each row b stays in all D dimensions with its observed part pinned (m_o = y_b, zero observed
    rows and columns of S), so masks and y may differ per row: log_w [B, K], means [B, K, D],
    covs [B, K, D, D]. Under an SDE, x_t given x_0,o = y is sum_k w'_k N(alpha m_k, alpha^2 S_k + sigma^2 I),
    whose covariance is block diagonal: `score_t` is the exact conditional score
    grad_h log p_t(x_h | y) on the hidden part and -(x_o - alpha y)/sigma^2 on the observed part.
    """

    def __init__(self, gm: GaussianMixture, mask, y):
        self.mask, self.y = _condition_rows(gm.D, mask, y)
        self.log_w, self.means, self.covs, self.log_evidence = _condition_components(gm, self.mask, self.y)
        lam, U = torch.linalg.eigh(self.covs)
        self._params = {"log_w": self.log_w, "mu": self.means, "lam": lam.clamp_min(0), "U": U}
        self._on_device: dict = {}
        self.B, self.K, self.D = self.mask.shape[0], gm.K, gm.D

    @property
    def weights(self) -> torch.Tensor:
        """The conditional component weights w'_k [B, K] (float64)."""
        return self.log_w.exp()

    def sample(self, n: int | None = None, generator=None, *, dtype=torch.float32, device=None) -> torch.Tensor:
        """Exact samples, observed entries = y bit for bit: n of them [n, D] (needs B = 1), or
        one per row [B, D] (n None; `generator` one torch.Generator or a list of B, row b then
        depends only on generator b). Drawn on the CPU in float64, then moved."""
        if n is not None:
            if self.B != 1:
                raise ValueError(f"sample(n) needs one conditioning row, this law has B={self.B}; use sample()")
            x = self._draw(torch.zeros(n, dtype=torch.long), generator)
        elif isinstance(generator, (list, tuple)):
            if len(generator) != self.B:
                raise ValueError(f"got {len(generator)} generators for B={self.B} rows; pass one per row or one")
            x = torch.cat([self._draw(torch.tensor([b]), g) for b, g in enumerate(generator)])
        else:
            x = self._draw(torch.arange(self.B), generator)
        return x.to(device=device, dtype=dtype)

    def _draw(self, rows: torch.Tensor, generator) -> torch.Tensor:
        """One exact draw per entry of `rows` (row indices), float64 on the CPU."""
        k = torch.multinomial(self.weights[rows], 1, generator=generator)[:, 0]
        z = torch.randn(len(rows), self.D, dtype=torch.float64, generator=generator)
        p = self._params
        x = self.means[rows, k] + (p["U"][rows, k] @ (z * p["lam"][rows, k].sqrt())[..., None])[..., 0]
        return torch.where(self.mask[rows], self.y[rows], x)

    def _p(self, like: torch.Tensor) -> dict:
        key = str(like.device)
        if key not in self._on_device:
            self._on_device[key] = {k: v.to(like.device) for k, v in self._params.items()}
        return self._on_device[key]

    def score_t(self, sde: SDE, x: torch.Tensor, t) -> torch.Tensor:
        """Exact grad_x log p_t(x | x_0,o = y) [B, *D] (module docstring), in x's dtype."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.D or self.B not in (1, flat.shape[0]):
            raise ValueError(f"x must be [B, *D] with B={self.B} (any B when 1) and D={self.D}, got {tuple(x.shape)}")
        alpha, sigma = sde.alpha_sigma(as_time(t, flat))
        p = self._p(flat)
        d = flat[:, None, :] - alpha[:, None, None] * p["mu"]                      # [B, K, D]
        yv = (d[..., None, :] @ p["U"])[..., 0, :]                                 # U^T d
        e = alpha[:, None, None] ** 2 * p["lam"] + sigma[:, None, None] ** 2       # eigenvalues of C_k
        log_joint = p["log_w"] - 0.5 * ((yv * yv / e).sum(-1) + torch.log(e).sum(-1))
        Pd = (p["U"] @ (yv / e)[..., None])[..., 0]                                # C_k^-1 (x - alpha m_k)
        r = torch.softmax(log_joint, dim=1)
        return (-(r[:, :, None] * Pd).sum(1)).reshape(x.shape).to(x.dtype)

    def score_fn(self, sde: SDE) -> ScoreFn:
        """score_t as a plain score_fn(x, t)."""
        return lambda x, t: self.score_t(sde, x, t)

    def hidden_mixture(self, row: int = 0) -> GaussianMixture:
        """Row `row`'s law of its hidden coordinates alone, as a plain GaussianMixture."""
        h = ~self.mask[row]
        return GaussianMixture(self.weights[row], self.means[row][:, h], self.covs[row][:, h][:, :, h])
