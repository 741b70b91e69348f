"""VP SDE with DDPM++ cont. deep (8 residual blocks per level, 106.6M parameters)."""
from configs.cifar10_ddpmpp_cont import get_config as ddpmpp_config


def get_config():
    config = ddpmpp_config()
    config.model.num_res_blocks = 8
    config.training.n_iters = 950_001
    return config
