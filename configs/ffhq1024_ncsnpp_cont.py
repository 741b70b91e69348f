"""VE SDE with NCSN++ cont. on FFHQ 1024x1024 (score_sde's ve/ffhq_ncsnpp_continuous, 105.8M parameters)."""
from configs.ncsnpp_256 import get_config as ncsnpp_256_config


def get_config():
    config = ncsnpp_256_config()
    config.data.image_size = 1024
    config.training.batch_size = 8
    config.training.reduce_mean = True
    config.sde.sigma_max = 1348.0
    config.model.nf = 16
    config.model.ch_mult = (1, 2, 4, 8, 16, 32, 32, 32)
    config.model.num_res_blocks = 1
    config.model.ema_rate = 0.9999
    config.sampling.pc.snr = 0.15
    config.sampling.batch_size = 2
    config.sampling.num_samples = 8
    return config
