"""VP SDE with DDPM++ (continuous time), the paper's CIFAR-10 config (61.8M parameters)."""
from configs.cifar10 import get_config as cifar10_config


def get_config():
    config = cifar10_config()
    config.sde.name = "vpsde"
    config.model.name = "ncsnpp"
    config.model.num_res_blocks = 4
    config.model.ema_rate = 0.9999
    config.model.time_input = "t"
    config.model.time_scale = 999.0
    config.training.reduce_mean = True
    config.data.centered = True
    config.sampling.pc.predictor = "euler_maruyama"
    config.sampling.pc.corrector = "none"
    return config
