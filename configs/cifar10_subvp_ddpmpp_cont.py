"""sub-VP SDE with DDPM++ cont. (4 residual blocks per level), as score_sde's subvp/cifar10_ddpmpp_continuous."""
from configs.cifar10_ddpmpp_cont import get_config as ddpmpp_config


def get_config():
    config = ddpmpp_config()
    config.sde.name = "subvpsde"
    return config
