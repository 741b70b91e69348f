"""sub-VP SDE with the DDPM network (score_sde's subvp/cifar10_ddpm_continuous, 3.05 bits/dim)."""
from configs.cifar10_ddpm_cont import get_config as ddpm_cont_config


def get_config():
    config = ddpm_cont_config()
    config.sde.name = "subvpsde"
    return config
