"""`main.py --mode eval`: bits/dim and/or FID of the latest (or config.eval.checkpoint) EMA weights."""
import ml_collections

from runners.validate import ConfigError, validate_config


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *, overridden=None) -> dict:
    """Run the evaluations enabled in config.eval on one load of the checkpoint; returns their summaries by name.

    `overridden`: see `runners.sample.run`.
    """
    from runners.common import get_device, load_eval_model

    validate_config(config)
    if not (config.eval.enable_bpd or config.eval.enable_fid):
        raise ConfigError("config.eval.enable_bpd and config.eval.enable_fid are both False: nothing to evaluate")
    from runners import eval_bpd, eval_fid

    for enabled, module in ((config.eval.enable_bpd, eval_bpd), (config.eval.enable_fid, eval_fid)):
        if enabled:
            module.check_images(config)  # a toy set fails before any checkpoint is read
    loaded = load_eval_model(config, workdir, overridden=overridden, device=get_device(config))
    results = {}
    if config.eval.enable_bpd:
        results["bpd"] = eval_bpd.run(config, workdir, eval_folder, loaded=loaded)
    if config.eval.enable_fid:
        results["fid"] = eval_fid.run(config, workdir, eval_folder, loaded=loaded)
    return results
