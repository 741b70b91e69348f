"""sub-VP SDE with DDPM++ cont. deep, the paper's best-likelihood CIFAR-10 model (2.99 bits/dim)."""
from configs.cifar10_ddpmpp_cont_deep import get_config as deep_config


def get_config():
    config = deep_config()
    config.sde.name = "subvpsde"
    return config
