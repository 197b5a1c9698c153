"""Files ``tether guard train`` writes and detectors load: tensors in safetensors, the rest in its metadata.

Each artifact has ``kind`` (``jailbreak-index`` or ``linear-probe``), the features it was built on,
its calibrated ``threshold`` and how it was calibrated (``calibration``: the target false-positive rate, the
validation set sizes and the measured rates), stored as JSON strings in the safetensors header.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tether.atomic import atomic_path
from tether.errors import ConfigError

FORMAT_VERSION = 1


def save_artifact(path: str | Path, kind: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": kind, "format_version": str(FORMAT_VERSION), "meta": json.dumps(meta, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
    return path


def load_artifact(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a ``kind`` artifact; a ConfigError names the file and the command that makes it."""
    from safetensors import safe_open

    path = Path(path)
    make = "tether guard train --output DIR"
    if not path.is_file():
        raise ConfigError(f"no such file: {path} (a {kind} artifact; make one with `{make}`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise ConfigError(f"{path}: not a readable safetensors file ({err})") from None
    if header.get("kind") != kind:
        raise ConfigError(f"{path}: a {header.get('kind') or 'unknown'} file, not a {kind} (made by `{make}`)")
    return tensors, json.loads(header.get("meta", "{}"))
