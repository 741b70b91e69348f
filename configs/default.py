"""Every config field, defined once with its default (DESIGN.md: per-SDE files hold overrides only).

The defaults train a small U-Net on the embedded 8x8 `digits` data set on a CPU. Override any
field on the command line: `--config.training.n_iters=5000`.
"""
import ml_collections
from ml_collections.config_dict import placeholder


def _training() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.batch_size = 128            # images per step per process: the global batch is batch_size x world size
    c.n_iters = 2000              # total optimisation steps; a larger value continues a finished run
    c.loss = "dsm"                # "dsm" (continuous), "smld" (VE, discrete sigmas), "ddpm" (VP, discrete steps)
    c.reduce_mean = True          # average the loss over dimensions instead of summing (MATH §4)
    c.likelihood_weighting = False  # lambda(t) = g(t)^2 instead of sigma(t)^2
    c.importance_sampling = False   # with likelihood weighting: t ~ g^2/sigma^2 (lower variance)
    c.eps = 1e-5                  # smallest training time t
    c.log_freq = 25               # steps between TensorBoard scalars / progress-bar updates
    c.snapshot_freq = 500         # steps between checkpoints
    c.sample_freq = 1000          # steps between sample grids (PNG + TensorBoard); 0 = only at the end
    c.keep_checkpoints = 3        # newest checkpoints kept on disk (0 = all)
    c.grid_size = 64              # images in each sample grid
    c.max_nonfinite_steps = 10    # consecutive NaN/Inf losses or gradients (each skipped) before stopping
    c.label_dropout = 0.1         # class-conditional networks: probability of the null label per sample
                                  # (classifier-free guidance needs the unconditional score too)
    c.allow_config_change = False  # resume a checkpoint trained with other result-changing fields (else refused)
    # Performance options (GPU); the defaults keep CPU runs bitwise exact.
    c.mixed_precision = "no"      # "no" or "bf16": the network's forward under torch.autocast (training and sampling)
    c.compile = False             # torch.compile the network for training and sampling (first steps are slow)
    c.tf32 = True                 # CUDA only: TF32 matmuls / convolutions on Ampere and newer GPUs
    return c


def _sde() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "vpsde"              # "vpsde", "subvpsde" or "vesde"
    c.beta_min = 0.1              # VP / sub-VP
    c.beta_max = 20.0             # VP / sub-VP
    c.sigma_min = 0.01            # VE
    c.sigma_max = 50.0            # VE
    c.num_scales = 1000           # N, the number of discrete steps
    return c


def _model() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "unet_small"         # "unet_small", "mlp", "ncsnpp" (DDPM++ / NCSN++), "ddpm"
    c.prediction = "eps"          # what the network outputs: "eps", "x0", "v" or "score"
    c.time_input = "t"            # conditioning: "t" (times time_scale), "index", "sigma", "log_sigma"
    c.time_scale = 999.0          # multiplies t when time_input = "t" (reference VP configs use 999)
    c.discrete_schedule = False   # a network of the N-step chain (loss=ddpm on VP, smld on VE): convert with
                                  # the chain's alpha_i, sigma_i; ddpm / ddim then step on the chain
    c.ema_rate = 0.999            # EMA decay of the weights used for sampling and evaluation
    c.dropout = 0.0
    c.num_classes = 0             # classes of a class-conditional network (0: unconditional); unet_small, mlp
    # U-Nets (unet_small, ncsnpp, ddpm)
    c.nf = 32                     # base channel count
    c.ch_mult = (1, 2)            # channel multiplier per resolution level
    c.num_res_blocks = 1          # residual blocks per level
    c.attn_resolutions = ()       # resolutions with self-attention (the middle block always has one)
    # ncsnpp / ddpm only (the paper's CIFAR-10 architectures; see configs/cifar10_*.py)
    c.resamp_with_conv = True
    c.conditional = True
    c.fir = False                 # FIR up/down-sampling (NCSN++)
    c.fir_kernel = (1, 3, 3, 1)
    c.skip_rescale = True
    c.resblock_type = "biggan"    # "biggan" or "ddpm"
    c.progressive = "none"        # "none", "output_skip", "residual"
    c.progressive_input = "none"  # "none", "input_skip", "residual"
    c.progressive_combine = "sum"  # "sum" or "cat"
    c.attention_type = "ddpm"
    c.embedding_type = "positional"  # "positional" or "fourier"
    c.fourier_scale = 16.0
    c.init_scale = 0.0
    c.conv_size = 3
    c.nonlinearity = "swish"
    # mlp only
    c.width = 256
    c.depth = 3
    return c


def _optim() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.lr = 1e-3                   # peak learning rate (the paper's CIFAR-10 configs use 2e-4)
    c.beta1 = 0.9
    c.eps = 1e-8
    c.weight_decay = 0.0
    c.warmup = 100                # linear warm-up steps
    c.grad_clip = 1.0             # global gradient-norm clip (< 0: off)
    return c


def _data() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "digits"          # "digits", "mnist", "cifar10", "image_folder", or a toy set (see README)
    c.root = placeholder(str)     # directory of the files (mnist, cifar10, image_folder); None = default
    c.download = True             # fetch mnist / cifar10 from the canonical source when missing and online
    c.image_size = 8
    c.num_channels = 1
    c.centered = True             # scale data to [-1, 1] (False: [0, 1])
    c.random_flip = False         # random horizontal flips in training
    c.uniform_dequantization = False  # add U[0, 1)/256 noise to 8-bit training data
    c.n_samples = 10000           # toy data sets: number of points
    c.dim = 2                     # toy data sets: dimension (gaussian_mixture)
    return c


def _sampling() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.method = "dpm_solver"       # a name in samplers.METHODS (the paper's configs use "pc")
    # Steps on the method's time grid (None: the method's default, e.g. sde.N for pc).
    c.steps = ml_collections.FieldReference(20, field_type=int)
    c.batch_size = 256            # samples per batch in --mode sample / eval
    c.num_samples = 1024          # samples written by --mode sample
    c.seed = 0                    # sample k uses its own generator seeded with (seed, k)
    # Class-conditional networks (model.num_classes > 0) and classifier guidance (README, Controllable generation)
    c.classes = placeholder(tuple)  # the classes samples cycle through (None: sample k gets class k % num_classes)
    c.guidance_scale = 1.0        # classifier-free guidance: 1 = the conditional score, 0 = unconditional
    c.classifier_scale = 0.0      # classifier guidance with <workdir>/classifier (--mode train_classifier); 0 = off
    # One block of options per method, with the sampler's own defaults (see each sampler's
    # docstring); only the chosen method's block is passed to it: --config.sampling.pc.snr=0.1
    from samplers import METHODS, method_options

    for name in METHODS:
        c[name] = ml_collections.ConfigDict(method_options(name))
    return c


def _eval() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.checkpoint = placeholder(int)  # step of the checkpoint to sample from / evaluate (None: the latest)
    c.split = "test"              # data split for bits/dim (and FID reference statistics)
    c.batch_size = 256            # images per bits/dim batch
    c.enable_bpd = True           # --mode eval computes bits/dim through the probability-flow ODE
    c.enable_fid = False          # --mode eval computes FID / KID of generated samples (Inception weights needed)
    # bits/dim (MATH §6; likelihood.bits_per_dim)
    c.bpd_num_images = placeholder(int)  # images of the split to evaluate (None: all)
    c.bpd_divergence = "hutchinson"  # "hutchinson" (unbiased estimate) or "exact" (D VJPs; small images)
    c.bpd_noise = "rademacher"    # Hutchinson probe distribution: "rademacher" or "gaussian"
    c.bpd_n_probes = 1            # probes per image, sharing one trajectory (more: lower variance)
    c.bpd_solver = "dopri5"       # adaptive ODE solver on the device: "dopri5" or "bosh3"
    c.bpd_rtol = 1e-5
    c.bpd_atol = 1e-5
    c.bpd_eps = 1e-5              # the ODE starts at t = eps
    c.bpd_dequantization = "uniform"  # "uniform" (K draws averaged) or "importance" (K-sample bound)
    c.bpd_n_dequant = 1           # K
    c.bpd_seed = 0                # seeds dequantization noise and probes
    # FID / KID (evaluation/; README "Sample quality")
    c.fid_num_samples = 10000     # samples generated for FID (the paper: 50000); fewer than 2048 biases FID
    c.fid_batch_size = 50         # images per Inception batch
    c.inception_weights = ""      # path of pt_inception-2015-12-05-6726825d.pth ("": torch hub cache, else download)
    c.stats_dir = ""              # reference statistics cache ("": $SCORESDE_ASSETS/fid_stats)
    c.stats_split = "train"       # data split of the reference statistics
    c.stats_num_images = placeholder(int)  # reference images (None: the whole split)
    c.enable_kid = True           # also KID (stores the reference features: 8 KB per image)
    c.kid_subsets = 100
    c.kid_subset_size = 1000
    return c


def _classifier() -> ml_collections.ConfigDict:
    """config.classifier: the noise-conditional classifier and its training (runners/train_classifier.py)."""
    c = ml_collections.ConfigDict()
    c.name = "unet_encoder"       # models.classifier.CLASSIFIERS: "unet_encoder" (images) or "mlp" (flat data)
    c.num_classes = 10            # classes of the data's labels (digits, MNIST, CIFAR-10: 10)
    c.nf = 32                     # unet_encoder: base channels
    c.ch_mult = (1, 2)            # unet_encoder: channel multiplier per level
    c.num_res_blocks = 1          # unet_encoder: residual blocks per level
    c.width = 128                 # mlp: hidden width
    c.depth = 2                   # mlp: hidden layers
    c.dropout = 0.0
    c.time_scale = 999.0          # the network sees t x time_scale (as the score networks)
    c.eps = 1e-5                  # smallest training time t ~ U(eps, T)
    c.n_iters = 2000              # optimisation steps (a larger value continues a finished run)
    c.batch_size = 128
    c.lr = 1e-3
    c.warmup = 100
    c.grad_clip = 1.0
    c.ema_rate = 0.999
    c.log_freq = 25
    c.snapshot_freq = 500         # checkpoints under <workdir>/classifier/checkpoints/
    c.keep_checkpoints = 3
    c.eval_freq = 0               # steps between accuracy pictures (0: only at the end)
    return c


def _condition() -> ml_collections.ConfigDict:
    """config.condition: --mode inpaint / --mode colorize on the test images (runners/condition.py)."""
    c = ml_collections.ConfigDict()
    c.method = "smc"              # samplers.inpainting.METHODS: "smc" (particle filter) or "replacement" (the paper's)
    c.steps = 100                 # steps from T to eps
    c.smc = ml_collections.ConfigDict({"particles": 30, "ess_threshold": 0.5, "variance": "gaussian",
                                       "sigma_data": 0.5, "grid": "uniform", "eps": 1e-3,
                                       "max_batch": placeholder(int)})  # max_batch: rows per score call
    c.replacement = ml_collections.ConfigDict({"predictor": "reverse_diffusion", "corrector": "none", "snr": 0.16,
                                               "n_steps_each": 1, "replace_at": "next", "eps": 1e-3,
                                               "max_batch": placeholder(int)})
    c.mask = "right_half"         # inpaint: "right_half", "left_half", "bottom_half", "center" (middle half square),
                                  # "random" (each pixel hidden with probability 1 - observed_fraction)
    c.observed_fraction = 0.25    # mask="random" only
    c.num_images = 16             # test images to complete (the first ones of the split)
    c.batch_size = 16             # images per shard (samples are per-image seeded: results do not depend on it)
    c.split = "test"
    c.seed = 0                    # image k's sampler uses its own generator seeded with (seed, k)
    return c


def _distributed() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Used only under torchrun (main.py joins its process group); one process ignores them.
    c.backend = "auto"            # "auto" (nccl on CUDA, gloo on CPU), "nccl" or "gloo"
    c.timeout_seconds = 1800.0    # a collective waiting longer (dead or stuck peer) raises; must exceed the
                                  # longest rank-0-only work between steps (sample grids, checkpoint writes)
    return c


def get_config() -> ml_collections.ConfigDict:
    """The complete default config."""
    config = ml_collections.ConfigDict()
    config.seed = 42              # seeds weights, data order and training noise
    config.device = "auto"        # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    config.training = _training()
    config.sde = _sde()
    config.model = _model()
    config.optim = _optim()
    config.data = _data()
    config.sampling = _sampling()
    config.eval = _eval()
    config.classifier = _classifier()
    config.condition = _condition()
    config.distributed = _distributed()
    return config
