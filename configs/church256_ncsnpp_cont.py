"""VE SDE with NCSN++ cont. on LSUN church_outdoor 256x256 (score_sde's ve/church_ncsnpp_continuous, 65.6M)."""
from configs.ncsnpp_256 import get_config as ncsnpp_256_config


def get_config():
    config = ncsnpp_256_config()
    config.sde.sigma_max = 380.0
    return config
