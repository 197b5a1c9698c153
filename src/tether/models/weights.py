"""Safetensors only: tether never unpickles model weights.

A pickle (``pytorch_model.bin``, ``adapter_model.bin``, ``*.pt``) can run any code when it is loaded; torch's
weights-only unpickler narrows that, but it is a filter, not a format. So every ``from_pretrained`` of
weights gets :data:`SAFE_LOAD` (``use_safetensors=True``: transformers then reads only ``*.safetensors``,
locally and from the hub), and before loading, :func:`require_safetensors` checks a local folder and
refuses one whose weights are pickles with the folder, the file and the command that converts it. A hub
repository without safetensors fails inside transformers; :func:`is_missing_safetensors` recognises that
error so the caller can say the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.errors import ModelError

SAFE_LOAD = {"use_safetensors": True}
"""``from_pretrained`` keywords of the policy: read safetensors, never a pickle."""

MODEL_FILES = ("model.safetensors", "model.safetensors.index.json")
ADAPTER_FILE = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _pickles(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(PICKLE_SUFFIXES))


def conversion_command(folder: Path, pickle_name: str) -> str:
    """A one-line command that writes the safetensors twin of a single pickle file (weights-only load)."""
    source = folder / pickle_name
    target = folder / ("adapter_model.safetensors" if pickle_name.startswith("adapter_model") else "model.safetensors")
    return (
        'python -c "import torch; from safetensors.torch import save_file; '
        f"state = torch.load('{source}', weights_only=True); "
        f"save_file({{k: v.contiguous().clone() for k, v in state.items()}}, '{target}', metadata={{'format': 'pt'}})\""
    )


def pickle_refused(folder: Path, pickles: list[str]) -> ModelError:
    """The error for a folder whose weights are pickles: what, why, and the conversion command."""
    shards = [name for name in pickles if name.endswith(".bin") and "-of-" in name]
    if shards or len(pickles) != 1:
        how = (
            "load it once with transformers in a Python you trust and save it again: "
            f"AutoModelForCausalLM.from_pretrained('{folder}', use_safetensors=False)"
            ".save_pretrained('NEW_FOLDER', safe_serialization=True)"
        )
    else:
        how = f"convert it: {conversion_command(folder, pickles[0])}"
    return ModelError(
        f"{folder} holds pickle weights ({', '.join(pickles[:3])}) and no safetensors; tether refuses pickle "
        f"weights because loading a pickle can run code. Only if you trust the file, {how}"
    )


def require_safetensors(folder: str | Path) -> None:
    """Refuse a local model or peft adapter folder whose weights are not safetensors. Reads no weights."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    if (folder / "adapter_config.json").is_file():
        if not (folder / ADAPTER_FILE).is_file():
            pickles = _pickles(folder)
            if pickles:
                raise pickle_refused(folder, pickles)
            raise ModelError(f"{folder} is a peft adapter folder without {ADAPTER_FILE}")
        return
    config = folder / "config.json"
    if config.is_file():
        try:
            named = json.loads(config.read_text(encoding="utf-8")).get("transformers_weights")
        except (ValueError, AttributeError):
            named = None
        if isinstance(named, str) and not named.endswith((".safetensors", ".safetensors.index.json")):
            raise ModelError(
                f"{config} names {named!r} as its weights; tether reads only safetensors (pickle weights can "
                "run code when loaded). Remove the transformers_weights entry and save the weights as safetensors."
            )
    if any((folder / name).is_file() for name in MODEL_FILES):
        return
    pickles = _pickles(folder)
    if pickles:
        raise pickle_refused(folder, pickles)
    if config.is_file():
        raise ModelError(f"{folder} has no model.safetensors (nor a sharded index); it holds no weights tether reads")


def is_missing_safetensors(err: Exception) -> bool:
    """True for transformers' error when a repository has no safetensors weights (with use_safetensors=True)."""
    text = str(err)
    return "safetensors" in text and ("does not appear to have" in text or "no file named" in text)


def hub_pickle_refused(spec: str) -> ModelError:
    return ModelError(
        f"{spec!r} has no safetensors weights on the hub; tether refuses pickle weights (pytorch_model.bin) because "
        "loading a pickle can run code. Use a revision or a copy with model.safetensors, or, only if you trust "
        "the repository, download it, convert it (AutoModel...from_pretrained(..., use_safetensors=False)"
        ".save_pretrained(FOLDER, safe_serialization=True)) and pass the folder."
    )
