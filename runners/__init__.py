"""The config-aware glue behind each `main.py --mode`, and `load_pretrained` for Python users.

    from runners import load_pretrained
    pre = load_pretrained("runs/vp")                         # a workdir, or one of our checkpoints
    pre = load_pretrained("checkpoint_24.pth", config="cifar10_ncsnpp_cont")  # score_sde_pytorch's
    samples = samplers.sample("pc", pre.score_fn, pre.sde, (16, 3, 32, 32)).samples
"""


def __getattr__(name):
    # Imported on first use, so that importing `runners` (or one runner) loads nothing else.
    if name in ("load_pretrained", "Pretrained"):
        from runners import pretrained
        return getattr(pretrained, name)
    raise AttributeError(f"module 'runners' has no attribute {name!r}")


__all__ = ["load_pretrained", "Pretrained"]
