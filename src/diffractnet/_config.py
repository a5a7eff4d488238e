"""Shared YAML + pydantic plumbing for every config file: one-line ``ConfigError`` messages."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from diffractnet.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section that rejects unknown keys (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid")


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"field '{where}': {err['msg']}{more}"


def validate(model: type[ModelT], data, where: str) -> ModelT:
    """``model`` validated from ``data`` (a mapping); ``ConfigError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_one_line(exc)}") from None


def read_yaml(path: str | Path, what: str):
    """The parsed YAML of ``path``; ``ConfigError`` if it is missing or not valid YAML (with the line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} '{path}' is not valid YAML{line}") from None
