"""Networks by name; each entry imports its module only when that network is built."""
import importlib

from torch import nn

# name -> (module, class). Imported lazily so that importing `models` builds nothing.
MODELS = {
    "mlp": ("models.mlp", "MLP"),
    "unet_small": ("models.unet", "SmallUNet"),
    "ncsnpp": ("models.ncsnpp", "NCSNpp"),  # DDPM++ and NCSN++ (one class, different options)
    "ddpm": ("models.ddpm", "DDPM"),
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate the network `name` with plain keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    module, cls = MODELS[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not), as the reference code reports it."""
    return sum(p.numel() for p in model.parameters())
