"""Load a causal LM and its tokenizer from an embedded name, a local folder or a hub id.

Resolution order for ``spec``: an embedded default (``tether models``), an existing local folder
(a full checkpoint, a peft adapter folder whose base model is loaded first, or a tether run folder,
meaning its ``model/``), else a hub id passed
to ``from_pretrained`` (needs network access). ``trust_remote_code`` stays off unless asked for. Weights
are read from safetensors only (:mod:`tether.models.weights`); a folder of pickle weights is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether.errors import ModelError
from tether.models import embedded
from tether.models.weights import SAFE_LOAD, hub_pickle_refused, is_missing_safetensors, require_safetensors

DTYPES = ("float32", "bfloat16", "float16")


def resolve(spec: str, *, tokenizer_only: bool = False) -> str:
    """Map a model spec to something ``from_pretrained`` accepts (a folder path or a hub id).

    With ``tokenizer_only`` a folder holding just a tokenizer is accepted too.
    """
    if spec in embedded.EMBEDDED:
        return str(embedded.ensure_converted(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path} is a file; pass the model folder (with config.json) instead")
        if not _is_model_dir(path) and _is_model_dir(path / "model"):
            path = path / "model"  # a tether run folder: its final model
        if tokenizer_only and (path / "tokenizer_config.json").is_file():
            return str(path)
        if not _is_model_dir(path):
            raise ModelError(
                f"{path} has neither config.json nor adapter_config.json: not a Hugging Face model "
                "folder. Use an embedded name (`tether models`), a model folder, or a hub id."
            )
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model folder {spec!r} does not exist")
    return spec  # a hub id


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def adapter_base(path: str) -> str | None:
    """The base model named by a peft adapter folder, or None if ``path`` is not one."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{config} names no base_model_name_or_path")
    return base


def hub_error(spec: str, err: Exception) -> ModelError:
    if is_missing_safetensors(err):
        return hub_pickle_refused(spec)
    return ModelError(
        f"could not load {spec!r}: {err}. If this is a hub id, this machine needs network access to the "
        "hub (or a local copy: pass its folder). Embedded models: `tether models`."
    )


def load_tokenizer(spec: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer for ``spec``, with a pad token (the EOS token when the model defines none)."""
    from transformers import AutoTokenizer

    source = resolve(spec, tokenizer_only=True)
    base = adapter_base(source)
    if base is not None and not (Path(source) / "tokenizer_config.json").is_file():
        source = resolve(base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise hub_error(spec, err) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of {spec!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def inner_model(model: Any) -> Any:
    """The transformers model under DDP/accelerate and peft wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def load_kwargs(dtype: str, trust_remote_code: bool) -> dict[str, Any]:
    """``from_pretrained`` keywords for a dtype name (checked), the remote-code switch and safetensors only."""
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code, **SAFE_LOAD}


def resolve_weights(spec: str) -> tuple[str, str | None]:
    """``(source, base)`` for loading weights: the resolved folder or hub id and, for a peft adapter
    folder, its resolved base; every local folder is checked to hold safetensors, not pickles."""
    source = resolve(spec)
    require_safetensors(source)
    base = adapter_base(source)
    if base is not None:
        base = resolve(base)
        require_safetensors(base)
    return source, base


def check_weights(spec: str) -> None:
    """Refuse a missing folder or pickle weights before any work: cheap (no weights read, an embedded
    model is not converted); :func:`load_model` checks again."""
    if spec not in embedded.EMBEDDED:
        resolve_weights(spec)


def load_model(
    spec: str,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = "sdpa",
    trainable_adapter: bool = False,
) -> Any:
    """Load a causal LM. An adapter folder loads its base, then the peft adapter on top of it."""
    from transformers import AutoModelForCausalLM

    source, base = resolve_weights(spec)
    kwargs = load_kwargs(dtype, trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        if base is None:
            return AutoModelForCausalLM.from_pretrained(source, revision=revision, **kwargs)
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        return PeftModel.from_pretrained(model, source, is_trainable=trainable_adapter)
    except (OSError, ValueError) as err:
        raise hub_error(spec, err) from err
