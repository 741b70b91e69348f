"""Sample-quality measures against exact samples, for oracle tests, benchmarks and comparisons."""
import torch


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, *, n_proj: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance between equal-size sample sets x, y [n, *D] (float64, host).

    Averages the squared 1-D W2 (sorted projections) over n_proj random unit directions.
    """
    x = x.reshape(x.shape[0], -1).double().cpu()
    y = y.reshape(y.shape[0], -1).double().cpu()
    if x.shape != y.shape:
        raise ValueError(f"need equal-size sample sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    dirs = torch.randn(x.shape[1], n_proj, dtype=torch.float64, generator=generator)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ dirs, dim=0)
    py, _ = torch.sort(y @ dirs, dim=0)
    return float(((px - py) ** 2).mean().sqrt())


def mean_cov_error(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """|mean(x) - mean| and the Frobenius norm of cov(x) - cov, x [n, D] (float64)."""
    x = x.reshape(x.shape[0], -1).double().cpu()
    return float((x.mean(0) - mean).norm()), float((torch.cov(x.T) - cov).norm())
