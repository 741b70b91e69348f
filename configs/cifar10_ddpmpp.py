"""DDPM++ trained on DDPM's discrete VP chain (score_sde's vp/cifar10_ddpmpp, FID 2.78): labels t (N-1)."""
from configs.cifar10_ddpmpp_cont import get_config as ddpmpp_config


def get_config():
    config = ddpmpp_config()
    config.model.time_input = "index"
    config.model.discrete_schedule = True
    config.training.loss = "ddpm"
    config.sampling.method = "ddpm"
    config.sampling.ddpm.variance = "beta"  # the reference samples it with ancestral sampling, sigma_i^2 = beta_i
    return config
