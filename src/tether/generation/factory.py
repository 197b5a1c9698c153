"""Pick a generation backend: vLLM where it can run, otherwise Hugging Face ``generate``.

``"auto"`` chooses vLLM only when it is installed, a CUDA GPU is visible and ``model_path`` names a saved
model folder holding the same weights as ``model``; asking for ``"vllm"`` when one of these is missing
raises a TetherError that says how to fix it, before anything is loaded.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from tether.errors import TetherError
from tether.generation.engine import GenerationEngine
from tether.generation.vllm_backend import VLLMEngine

Backend = Literal["auto", "hf", "vllm"]
HF_BATCH_SIZE = 64


def make_engine(
    model: Any,
    tokenizer: Any,
    *,
    backend: Backend = "auto",
    model_path: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    **vllm_kwargs: Any,
) -> GenerationEngine | VLLMEngine:
    """A generation engine for ``model``; ``batch_size`` None means each backend's default.

    ``vllm_kwargs`` (``gpu_memory_utilization``, ``max_model_len`` ...) go to ``vllm.LLM`` only.
    """
    if backend not in ("auto", "hf", "vllm"):
        raise TetherError(f"generation backend must be 'auto', 'hf' or 'vllm', not {backend!r}")
    if backend != "hf":
        problem = vllm_problem(model_path)
        if problem and backend == "vllm":
            raise TetherError(f"cannot generate with vLLM: {problem}; or use backend='hf'")
        if problem is None and model_path is not None:
            return VLLMEngine(model_path, tokenizer, batch_size=batch_size, progress=progress, **vllm_kwargs)
    return GenerationEngine(model, tokenizer, batch_size=batch_size or HF_BATCH_SIZE, progress=progress)


def vllm_problem(model_path: str | None) -> str | None:
    """Why vLLM cannot serve ``model_path`` here, with the fix; None when it can."""
    if find_spec("vllm") is None:
        return "vLLM is not installed; `pip install vllm` on a machine with a CUDA GPU"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible; run on a CUDA machine with `pip install vllm`"
    if model_path is None:
        return "vLLM loads weights from a folder; pass model_path=DIR after model.save_pretrained(DIR)"
    if (Path(model_path) / "adapter_config.json").is_file():
        return (
            f"{model_path} is a peft adapter and vLLM needs merged weights; save "
            "model.merge_and_unload() and the tokenizer with save_pretrained(DIR) and pass model_path=DIR"
        )
    if not (Path(model_path) / "config.json").is_file():
        return f"{model_path} has no config.json; pass a folder written by save_pretrained"
    return None
