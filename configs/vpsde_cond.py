"""Class-conditional VP SDE on the embedded 8x8 digits: classifier-free guidance and the
controllable-generation modes (README, Controllable generation). Every field is defined in
configs/default.py; this file holds the overrides.

  python main.py --mode train  --config vpsde_cond --workdir runs/cond
  python main.py --mode sample --config vpsde_cond --workdir runs/cond --config.sampling.classes="(3,)"
"""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.sde.name = "vpsde"
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    return config
