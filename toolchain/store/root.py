"""Where the store lives: `--models DIR` > `$MFC_MODELS` > `$OLLAMA_MODELS` > `~/.ollama/models`."""

from __future__ import annotations

import os
from pathlib import Path


def env_value(name: str) -> str:
    """An environment value the way the reference reads it: whitespace, then quotes, trimmed."""
    return os.environ.get(name, "").strip().strip("\"'")


def store_root(models: str | os.PathLike[str] | None = None) -> Path:
    """The store root for a command: the `--models` option wins, then the environment."""
    if models is not None and str(models) != "":
        return Path(models).expanduser().absolute()
    for var in ("MFC_MODELS", "OLLAMA_MODELS"):
        value = env_value(var)
        if value:
            return Path(value).expanduser().absolute()
    return Path.home() / ".ollama" / "models"
