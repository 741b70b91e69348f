"""CIFAR-10 data and the paper's training recipe (Song et al. 2021), shared by the cifar10_* configs.

Needs a GPU; on a CPU use it only for a few steps (e.g. --config.training.n_iters=2).
"""
from configs.default import get_config as default_config


def get_config():
    config = default_config()
    config.data.dataset = "cifar10"
    config.data.image_size = 32
    config.data.num_channels = 3
    config.data.random_flip = True
    config.training.n_iters = 1_300_001
    config.training.snapshot_freq = 50_000
    config.training.sample_freq = 50_000
    config.training.log_freq = 50
    config.optim.lr = 2e-4
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.model.dropout = 0.1
    config.model.nf = 128
    config.model.ch_mult = (1, 2, 2, 2)
    config.model.attn_resolutions = (16,)
    config.model.num_res_blocks = 4
    config.sampling.method = "pc"  # the reference recipes; each model config sets its predictor/corrector
    config.sampling.steps = None   # sde.N = 1000 steps
    config.sampling.batch_size = 128
    config.sampling.num_samples = 50_000
    config.eval.fid_num_samples = 50_000
    config.eval.enable_fid = True
    return config
