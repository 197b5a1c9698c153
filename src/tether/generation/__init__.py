"""Batched text generation shared by the demo, evaluations and red-teaming."""

from tether.generation.engine import GenerationEngine, SamplingParams

__all__ = ["GenerationEngine", "SamplingParams"]
