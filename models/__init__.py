"""Score networks, EMA, and the one converter from a network to a score function."""
from models.ema import EMA
from models.registry import MODELS, build_model, count_parameters
from models.score_fn import PREDICTIONS, TIME_INPUTS, get_score_fn

__all__ = ["get_score_fn", "PREDICTIONS", "TIME_INPUTS", "EMA", "MODELS", "build_model", "count_parameters"]
