"""`main.py --mode stats`: compute and cache the FID reference statistics of the configured data set."""
import ml_collections

from runners.common import get_device
from runners.validate import ConfigError
from runners.eval_fid import reference_statistics


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", **_) -> dict:
    """Statistics of eval.stats_split; a cached file is reused. workdir is not used. One process only.

    The data set is config.data's: no checkpoint is read, so no stored config applies.
    """
    from sde_runtime import distributed

    if distributed.world_size() > 1:
        raise ConfigError("--mode stats runs in one process; launch it with python, not torchrun")
    stats = reference_statistics(config, get_device(config))
    print(f"FID statistics of {config.data.dataset}/{config.eval.stats_split} "
          f"({stats['meta']['num_images']} images): {stats['path']}")
    return stats
