"""Sample quality: FID / KID with the FID Inception-v3, streamed data-set statistics and their cache.

Public names are imported lazily (on first attribute access), so `import evaluation` loads
neither the network nor its weights.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "inception_statistics": "evaluation.feature_stats",
    "extract_features": "evaluation.feature_stats",
    "RunningMoments": "evaluation.feature_stats",
    "frechet_distance": "evaluation.fid",
    "kernel_inception_distance": "evaluation.fid",
    "FIDInceptionV3": "evaluation.inception",
    "load_inception": "evaluation.inception_weights",
    "resolve_weights": "evaluation.inception_weights",
    "InceptionWeightsError": "evaluation.inception_weights",
    "cached_statistics": "evaluation.stats_cache",
    "fid_kid_against_reference": "evaluation.stats_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
