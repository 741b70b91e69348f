"""Errors a user can cause; main.py prints them as one line instead of a traceback."""
from sde_data.download import DatasetNotFoundError
from evaluation.inception_weights import InceptionWeightsError
from runners.validate import ConfigError
from training.checkpoint import CheckpointError
from training.loop import NonFiniteLossError

USER_ERRORS = (ConfigError, CheckpointError, DatasetNotFoundError, FileNotFoundError, ValueError,
               NonFiniteLossError, InceptionWeightsError)
