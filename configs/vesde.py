"""VE SDE (SMLD / NCSN in the limit) on the embedded 8x8 digits, CPU-sized.

sigma_max follows the paper's rule of thumb: the largest pairwise distance of the training data
(9.6 for the 8x8 digits in [-1, 1]; 50 is the library default for generic use). With
--config.sampling.method=pc, the PC options below are the reference VE recipe.
"""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.sde.name = "vesde"
    config.sde.sigma_max = 10.0
    config.model.time_input = "log_sigma"
    config.sampling.pc.predictor = "reverse_diffusion"
    config.sampling.pc.corrector = "langevin"
    return config
