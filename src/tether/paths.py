"""Where tether keeps its cache: ``$TETHER_HOME`` (default ``~/.cache/tether``)."""

from __future__ import annotations

import os
from pathlib import Path


def tether_home() -> Path:
    """The cache root; created on first use."""
    home = Path(os.environ.get("TETHER_HOME", Path.home() / ".cache" / "tether")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    path = tether_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
