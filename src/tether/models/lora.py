"""LoRA adapters through peft (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

W' = W + (alpha / r) * B A, with A in R^{r x d_in}, B in R^{d_out x r}, B initialised to zero.
Adapters are saved in peft's own format and load with plain ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Any


def apply_lora(
    model: Any,
    *,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    task_type: str = "CAUSAL_LM",
) -> Any:
    """Wrap ``model`` in a trainable peft LoRA model; only the adapter weights require grad.

    ``task_type="SEQ_CLS"`` (reward and value models) also trains the new scalar head in full.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, config)


def is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)
