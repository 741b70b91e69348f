"""`main.py --mode eval`: bits/dim and/or FID of the latest (or config.eval.checkpoint) EMA weights."""
import ml_collections

from runners.validate import ConfigError, validate_config


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval") -> dict:
    """Run the evaluations enabled in config.eval; returns their summaries by name."""
    validate_config(config)
    if not (config.eval.enable_bpd or config.eval.enable_fid):
        raise ConfigError("config.eval.enable_bpd and config.eval.enable_fid are both False: nothing to evaluate")
    results = {}
    if config.eval.enable_bpd:
        from runners import eval_bpd

        results["bpd"] = eval_bpd.run(config, workdir, eval_folder)
    if config.eval.enable_fid:
        from runners import eval_fid

        results["fid"] = eval_fid.run(config, workdir, eval_folder)
    return results
