"""`main.py --mode inpaint`: runners/condition.py with task "inpaint"."""
from runners import condition


def run(config, workdir: str, eval_folder: str = "eval", *, overridden=None):
    """Inpaint config.condition.num_images test images; returns the output folder."""
    return condition.run(config, workdir, eval_folder, task="inpaint", overridden=overridden)
