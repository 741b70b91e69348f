"""VE SDE with NCSN++ (continuous time), the paper's CIFAR-10 config (62.8M parameters)."""
from configs.cifar10 import get_config as cifar10_config


def get_config():
    config = cifar10_config()
    config.sde.name = "vesde"
    config.sde.sigma_max = 50.0  # the reference CIFAR-10 value (default_cifar10_configs); 348 is the 256-px one
    config.model.name = "ncsnpp"
    config.model.num_res_blocks = 4
    config.model.fir = True
    config.model.progressive_input = "residual"
    config.model.embedding_type = "fourier"
    config.model.ema_rate = 0.999
    # The reference network embeds log sigma and outputs h / sigma = +score; ours predicts eps = -sigma score
    # (models.score_sde_import negates the output layers of an imported VE checkpoint).
    config.model.time_input = "log_sigma"
    config.model.prediction = "eps"
    config.training.reduce_mean = False
    config.data.centered = False  # data in [0, 1]; the network maps it to 2 x - 1 itself
    config.sampling.pc.predictor = "reverse_diffusion"
    config.sampling.pc.corrector = "langevin"
    config.sampling.pc.snr = 0.16
    return config
