"""`main.py --mode colorize`: runners/condition.py with task "colorize" (RGB data)."""
from runners import condition


def run(config, workdir: str, eval_folder: str = "eval", *, overridden=None):
    """Colorize the grey levels of config.condition.num_images test images; returns the output folder."""
    return condition.run(config, workdir, eval_folder, task="colorize", overridden=overridden)
