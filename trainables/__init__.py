"""What one trial does: data, model, optimizer and the epoch loop, by name.

`fit`, `TRAINABLES`, `resolve_config` and the plugin API (`register_dataset`,
`register_trainable`, `make_activation`, `Splits`: trainables.plugins) load on first
use, so that importing the torch-free parts (`trainables.keys`, which the analysis
uses for the config keys' roles) does not import torch.
"""

from common.errors import ConfigError, DataError, UserError

__all__ = ["fit", "TRAINABLES", "resolve_config", "register_dataset", "register_trainable", "make_activation",
           "Splits", "ConfigError", "DataError", "UserError"]


def __getattr__(name: str):
    if name == "fit":
        from trainables.loop import fit

        return fit
    if name in ("TRAINABLES", "resolve_config"):
        from trainables import registry

        return getattr(registry, name)
    if name in ("register_dataset", "register_trainable"):
        from trainables import plugins

        return getattr(plugins, name)
    if name == "make_activation":
        from trainables.activations import make_activation

        return make_activation
    if name == "Splits":
        from trainables.data import Splits

        return Splits
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
