"""Configs, the training loop, checkpoints and resume; a finished run loaded for inference."""

from hpn.training.config import RunConfig, apply_overrides, from_dict
from hpn.training.inference import TopK, TrainedModel, load_run
from hpn.training.run import train
from hpn.training.trainer import Network, build_head, evaluate

__all__ = [
    "Network",
    "RunConfig",
    "TopK",
    "TrainedModel",
    "apply_overrides",
    "build_head",
    "evaluate",
    "from_dict",
    "load_run",
    "train",
]
