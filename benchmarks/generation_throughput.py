"""Batched generation (tether's engine) against a one-prompt-at-a-time ``generate`` loop.

Run::

    .venv/bin/python benchmarks/generation_throughput.py [--prompts 36] [--max-new-tokens 64]

Both answer the demo's held-out prompts with the embedded SmolLM2-135M-Instruct, greedy, in fp32 on this
machine. Throughput = generated tokens (up to and including the first EOS) / wall time. Greedy decoding
makes the two produce the same tokens, which the script checks, so the ratio compares equal work.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from tether.demo.dataset import load_demo_prompts
from tether.generation import GenerationEngine, SamplingParams
from tether.models.loading import load_model, load_tokenizer


def timed(engine: GenerationEngine, prompts: list[str], params: SamplingParams) -> tuple[list[list[int]], float]:
    started = time.perf_counter()
    ids = engine.generate_ids(prompts, params)
    return ids, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=36)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    tokenizer, model = load_tokenizer(args.model), load_model(args.model)
    prompts = [p.prompt for p in load_demo_prompts("heldout")][: args.prompts]
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    GenerationEngine(model, tokenizer, batch_size=1).generate_ids(prompts[:1], params)  # warm-up

    batched_ids, batched_s = timed(GenerationEngine(model, tokenizer, batch_size=args.batch_size), prompts, params)
    single_ids, single_s = timed(GenerationEngine(model, tokenizer, batch_size=1), prompts, params)
    tokens = sum(len(t) for t in batched_ids)
    same = sum(a == b for a, b in zip(batched_ids, single_ids, strict=True))

    print(
        f"$ python benchmarks/generation_throughput.py --prompts {args.prompts} "
        f"--max-new-tokens {args.max_new_tokens} --batch-size {args.batch_size}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}"
    )
    print(f"{len(prompts)} prompts, greedy, {tokens} generated tokens; identical outputs: {same}/{len(prompts)}\n")
    print("| engine | wall s | generated tokens/s | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    single_tokens = sum(len(t) for t in single_ids)
    print(f"| one prompt at a time (HF generate) | {single_s:.1f} | {single_tokens / single_s:.1f} | 1.00x |")
    print(
        f"| tether GenerationEngine, batch {args.batch_size} | {batched_s:.1f} | {tokens / batched_s:.1f} | "
        f"{single_s / batched_s:.2f}x |"
    )


if __name__ == "__main__":
    main()
