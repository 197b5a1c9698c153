"""Model loading: the embedded default, local folders, hub ids, tiny test models, LoRA."""

from tether.models.embedded import DEFAULT_MODEL, EMBEDDED, ensure_converted, ensure_tokenizer
from tether.models.loading import load_model, load_tokenizer, resolve
from tether.models.lora import apply_lora, is_peft
from tether.models.tiny import build_tiny_model

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "apply_lora",
    "build_tiny_model",
    "ensure_converted",
    "ensure_tokenizer",
    "is_peft",
    "load_model",
    "load_tokenizer",
    "resolve",
]
