"""Self-describing model files: weights in safetensors, everything else as JSON in its metadata.

A file never unpickles anything: ``load_model`` reads the JSON, builds the architecture from the
registry and copies tensors in. Metadata keys: ``format``, ``arch``, ``task``, ``in_chans``,
``num_outputs``, ``image_size``, ``model_kwargs`` and whatever the task adds (class labels, detector).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from diffractnet.errors import ConfigError, DataError

MODEL_FORMAT = "diffractnet-model/1"


def save_model(path: str | Path, model: nn.Module, metadata: dict) -> Path:
    """Write ``model``'s weights and ``metadata`` (JSON-serialisable; needs arch, task, in_chans,
    num_outputs, image_size) to a safetensors file, atomically."""
    from safetensors.torch import save_model as st_save

    missing = {"arch", "task", "in_chans", "num_outputs", "image_size"} - set(metadata)
    if missing:
        raise ConfigError(f"model metadata lacks {sorted(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    st_save(model, str(tmp), metadata={"diffractnet": json.dumps({"format": MODEL_FORMAT, **metadata})})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates the file 0600; a model is shared like any output
    os.replace(tmp, path)
    return path


def read_model_metadata(path: str | Path) -> dict:
    """The JSON metadata of a model file; ``DataError`` if it is missing, corrupt or not ours."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("diffractnet")
    except Exception as exc:  # safetensors raises its own error types on a damaged header
        raise DataError(f"model file '{path}' is not a readable safetensors file ({str(exc).splitlines()[0][:120]})") from None
    if raw is None:
        raise DataError(f"model file '{path}' has no diffractnet metadata; it was not written by diffractnet")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise DataError(f"model file '{path}' has damaged metadata") from None
    if meta.get("format") != MODEL_FORMAT:
        raise DataError(f"model file '{path}' has format {meta.get('format')!r}, expected {MODEL_FORMAT}")
    return meta


def load_model(path: str | Path, task: str | None = None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, metadata) from a model file; ``ConfigError`` if it was trained for another task."""
    from safetensors.torch import load_model as st_load

    from diffractnet.models.registry import create_model

    meta = read_model_metadata(path)
    if task is not None and meta["task"] != task:
        raise ConfigError(f"model file '{path}' is a {meta['task']} model, not a {task} model")
    model = create_model(meta["arch"], meta["task"], meta["in_chans"], meta["num_outputs"], None,
                         meta["image_size"], **meta.get("model_kwargs", {}))
    try:
        st_load(model, str(path), strict=True, device=device)
    except Exception as exc:
        raise DataError(f"model file '{path}': weights do not match its architecture "
                        f"({str(exc).splitlines()[0][:160]})") from None
    return model.eval(), meta


def load_backbone_weights(model: nn.Module, path: Path) -> list[str]:
    """Copy every tensor of a safetensors file whose name and shape match ``model``; returns the names
    skipped (e.g. a head of another size). ``ConfigError`` if nothing matches."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ConfigError(f"pretrained weights '{path}' do not exist")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise ConfigError(f"pretrained weights '{path}' are not a readable safetensors file ({exc})") from None
    own = model.state_dict()
    usable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"pretrained weights '{path}' share no tensor with this model")
    model.load_state_dict(usable, strict=False)
    return sorted(set(tensors) - set(usable))
