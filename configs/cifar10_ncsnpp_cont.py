"""VE SDE with NCSN++ (continuous time), the paper's CIFAR-10 config (62.8M parameters)."""
from configs.cifar10 import get_config as cifar10_config


def get_config():
    config = cifar10_config()
    config.sde.name = "vesde"
    config.sde.sigma_max = 348.0
    config.model.name = "ncsnpp"
    config.model.num_res_blocks = 4
    config.model.fir = True
    config.model.progressive_input = "residual"
    config.model.embedding_type = "fourier"
    config.model.ema_rate = 0.999
    # The reference network is fed log sigma and divides its output by sigma: an eps-type output.
    config.model.time_input = "log_sigma"
    config.model.prediction = "eps"
    config.training.reduce_mean = False
    config.data.centered = False
    config.sampling.pc.predictor = "reverse_diffusion"
    config.sampling.pc.corrector = "langevin"
    config.sampling.pc.snr = 0.16
    return config
