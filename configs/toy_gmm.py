"""VP SDE on the 2-D Gaussian-mixture toy with an MLP: the exact score is known (MATH.md §6)."""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.data.dataset = "gaussian_mixture"
    config.data.dim = 2
    config.model.name = "mlp"
    config.model.time_scale = 1.0
    config.training.batch_size = 256
    config.training.n_iters = 3000
    config.training.grid_size = 2000
    config.sampling.batch_size = 2000
    return config
