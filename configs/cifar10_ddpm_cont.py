"""The DDPM network trained on the continuous VP SDE (score_sde's vp/ddpm/cifar10_continuous): labels 999 t."""
from configs.cifar10_ddpm import get_config as ddpm_config


def get_config():
    config = ddpm_config()
    config.model.time_input = "t"
    config.model.time_scale = 999.0
    config.model.discrete_schedule = False
    config.training.loss = "dsm"
    config.sampling.method = "pc"
    config.sampling.pc.predictor = "euler_maruyama"
    config.sampling.pc.corrector = "none"
    return config
