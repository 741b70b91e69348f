"""VE SDE with NCSN++ cont. on CelebA-HQ 256x256 (score_sde's ve/celebahq_256_ncsnpp_continuous, 65.6M parameters)."""
from configs.ncsnpp_256 import get_config as ncsnpp_256_config


def get_config():
    config = ncsnpp_256_config()
    config.sde.sigma_max = 348.0
    return config
