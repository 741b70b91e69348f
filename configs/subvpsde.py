"""sub-VP SDE on the embedded 8x8 digits, CPU-sized."""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.sde.name = "subvpsde"
    return config
