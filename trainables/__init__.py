"""What one trial does: data, model, optimizer and the epoch loop, by name."""

from trainables.errors import ConfigError, DataError, UserError
from trainables.loop import fit
from trainables.registry import TRAINABLES, resolve_config

__all__ = ["fit", "TRAINABLES", "resolve_config", "ConfigError", "DataError", "UserError"]
