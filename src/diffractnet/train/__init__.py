"""Training: YAML config → Lightning fit, with checkpoints, resume, schedules, early stopping, DDP."""

from diffractnet.train.config import TrainConfig, load_train_config
from diffractnet.train.fit import train

__all__ = ["TrainConfig", "load_train_config", "train"]
