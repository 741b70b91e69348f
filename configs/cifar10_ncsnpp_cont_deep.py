"""VE SDE with NCSN++ cont. deep (8 residual blocks per level, 107.6M parameters), FID 2.20."""
from configs.cifar10_ncsnpp_cont import get_config as ncsnpp_config


def get_config():
    config = ncsnpp_config()
    config.model.num_res_blocks = 8
    config.training.n_iters = 950_001
    return config
