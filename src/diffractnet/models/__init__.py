"""The model zoo behind one registry, and self-describing safetensors checkpoints."""

from diffractnet.models.checkpoint import load_model, read_model_metadata, save_model
from diffractnet.models.registry import TASKS, create_model, list_models

__all__ = ["TASKS", "create_model", "list_models", "load_model", "read_model_metadata", "save_model"]
