"""VP SDE on MNIST (28x28) with the small U-Net; fits a CPU for short runs. Other SDEs: --config.sde.name."""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.data.dataset = "mnist"
    config.data.image_size = 28
    config.model.nf = 32
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (7,)
    config.training.n_iters = 20_000
    config.training.snapshot_freq = 2000
    config.training.sample_freq = 5000
    config.optim.lr = 5e-4
    return config
