"""Batched text generation shared by the demo, evaluations and red-teaming."""

from tether.generation.engine import GenerationEngine, SamplingParams
from tether.generation.factory import make_engine, vllm_problem
from tether.generation.vllm_backend import VLLMEngine

__all__ = ["GenerationEngine", "SamplingParams", "VLLMEngine", "make_engine", "vllm_problem"]
