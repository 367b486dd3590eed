"""What one trial does: data, model, optimizer and the epoch loop, by name.

`fit`, `TRAINABLES` and `resolve_config` load on first use, so that importing the
torch-free parts (`trainables.errors`, `trainables.cli`, which the analysis uses)
does not import torch.
"""

from trainables.errors import ConfigError, DataError, UserError

__all__ = ["fit", "TRAINABLES", "resolve_config", "ConfigError", "DataError", "UserError"]


def __getattr__(name: str):
    if name == "fit":
        from trainables.loop import fit

        return fit
    if name in ("TRAINABLES", "resolve_config"):
        from trainables import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
