"""DDPM (Ho et al. 2020): discrete VP with the original network (35.2M), trained with the DDPM loss."""
from configs.cifar10 import get_config as cifar10_config


def get_config():
    config = cifar10_config()
    config.sde.name = "vpsde"
    config.model.name = "ddpm"
    config.model.num_res_blocks = 2
    config.model.ema_rate = 0.9999
    config.model.time_input = "index"
    config.model.discrete_schedule = True
    config.training.loss = "ddpm"
    config.training.reduce_mean = True
    config.data.centered = True
    config.sampling.method = "ddpm"
    config.sampling.ddpm.variance = "beta"  # Ho et al. sample CIFAR-10 with sigma_i^2 = beta_i
    return config
