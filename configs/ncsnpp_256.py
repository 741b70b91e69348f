"""NCSN++ cont. at 256x256 on the VE SDE: score_sde's LSUN / CelebA-HQ / FFHQ-256 recipe, shared by the *256 configs.

The reference trains on TFRecords we have no loader for: point --config.data.root at a folder of
images (data.dataset = "image_folder"). Needs a large GPU; on a CPU use it only to import and sample.
"""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.data.dataset = "image_folder"
    config.data.image_size = 256
    config.data.num_channels = 3
    config.data.random_flip = True
    config.data.centered = False  # data in [0, 1]; the network maps it to 2 x - 1 itself
    config.training.batch_size = 64
    config.training.n_iters = 2_400_001
    config.training.snapshot_freq = 50_000
    config.training.sample_freq = 50_000
    config.training.log_freq = 50
    config.training.reduce_mean = False
    config.optim.lr = 2e-4
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 378.0  # LSUN default (bedroom); each data set's config sets its own
    config.sde.num_scales = 2000
    config.model.name = "ncsnpp"
    config.model.nf = 128
    config.model.ch_mult = (1, 1, 2, 2, 2, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attn_resolutions = (16,)
    config.model.dropout = 0.0
    config.model.fir = True
    config.model.progressive = "output_skip"
    config.model.progressive_input = "input_skip"
    config.model.progressive_combine = "sum"
    config.model.embedding_type = "fourier"
    config.model.fourier_scale = 16.0
    config.model.ema_rate = 0.999
    # The reference network embeds log sigma and outputs h / sigma = +score; ours predicts eps = -sigma score
    # (models.score_sde_import negates the output layers of an imported VE checkpoint).
    config.model.time_input = "log_sigma"
    config.model.prediction = "eps"
    config.sampling.method = "pc"
    config.sampling.steps = None  # sde.N = 2000 steps
    config.sampling.pc.predictor = "reverse_diffusion"
    config.sampling.pc.corrector = "langevin"
    config.sampling.pc.snr = 0.075
    config.sampling.batch_size = 16
    config.sampling.num_samples = 64
    config.eval.enable_bpd = False  # as the reference; the probability-flow ODE at 256 px takes GPU-hours
    return config
