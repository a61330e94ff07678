"""Configs, the training loop, checkpoints and resume."""

from hpn.training.config import RunConfig, apply_overrides, from_dict
from hpn.training.run import train
from hpn.training.trainer import Network, build_head, evaluate

__all__ = [
    "Network",
    "RunConfig",
    "apply_overrides",
    "build_head",
    "evaluate",
    "from_dict",
    "train",
]
