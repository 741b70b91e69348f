"""VP SDE (DDPM in the limit) on the embedded 8x8 digits, CPU-sized: the Quickstart config."""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.sde.name = "vpsde"
    return config
