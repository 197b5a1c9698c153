"""Peak-memory estimate of a training command, from the model's config.json alone (no weights read).

A run's peak resident memory is modelled as what it holds for the whole run plus the largest working set
of one phase (a training micro-batch, a no-gradient scoring pass, or generation):

    peak = runtime + data + weights + optimizer state + max(train pass, no-grad pass, generation)

with (P parameters, P_t trained ones, w bytes per weight, N = rows x length tokens of a micro-batch, L
layers, H hidden, I intermediate, A = heads x head_dim, K = kv_heads x head_dim, V vocabulary):

- weights        = P w for every model held (policy, frozen reference copy, value model, reward models)
- optimizer state = 2 P_t w (AdamW's two moments); with ``mixed_precision`` the bf16 copies that autocast
  keeps of trained weights add 2 P_t (and of frozen LoRA base weights 2 P per stored layer)
- train pass     = max(stored, P_t w) + N 3H 4 + rows T^2 4 + 3 * 256 V 4 per trained model, where stored
  is N L a (every layer's saved activations) or, with gradient checkpointing, N L 4H (each layer's fp32
  input), plus the tied LM head's gradient V H w when all weights train; with checkpointing add N a once
  (the one layer recomputed in backward). Backward frees a layer's activations as it creates that layer's
  gradients (P_t w in all), so the two peak at its start and its end, not together. The other terms: the
  final hidden states, the padding mask SDPA reads and the chunk of ``[256, V]`` logits of the log-probs
- no-grad pass   = N (3H + max(3I, 4A + 2K)) 4 (the largest live tensors of one layer: the residual stream
  and the MLP's three [N, I] tensors, or attention's queries, keys and values) + mask + head chunk
- generation     = rows (prompt + new) L 2K w (the KV cache) + the prefill's no-grad pass

where ``a`` is the bytes one token stores in one decoder layer for backward. It was counted exactly with
``torch.autograd.graph.saved_tensors_hooks`` on transformers 5.24's Llama layer with SDPA attention and a
padding mask (which makes SDPA repeat K and V to all heads):

    fp32:             a = 4 (c H + 5A + 4I + heads + 2),  c = 5 (all weights) or 2 (LoRA: frozen norms)
    bf16 autocast:    a = 4 c' H + 2 (c'' H + 5A + 4I) + 4 heads + 8,  (c', c'') = (4, 4) or (2, 3) with LoRA
    LoRA adds 7r elements for the adapters' A outputs (all-linear).

The raw sum undercounts resident memory (allocator slack, glibc arenas that keep freed pages, transient
copies inside kernels); :data:`DYNAMIC_SLACK` and :data:`RUNTIME_BYTES` were fitted to peaks measured on
the embedded SmolLM2-135M (see their docstrings and BENCHMARKS.md, "Training memory").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GB = 1e9

RUNTIME_BYTES = 0.47e9
"""Resident memory of a training command besides its model and data: Python, torch (and its thread pools),
transformers, peft, accelerate, the tokenizer and tether. Measured: ``tether sft`` on the 2-layer tiny test
model peaked at 0.63 GB, of which 0.16 GB are that model's weights and log-prob chunk."""

DYNAMIC_SLACK = 1.1
"""Multiplier on the per-phase working set for what the tensor count misses (page rounding, allocations
under the 1 MiB mmap threshold of :mod:`tether.train.allocator`, kernel temporaries). Fitted to the peaks
of ``tether sft``, ``dpo`` and ``rm train`` at 8 x 1,024 tokens with checkpointing (1.0-1.08) and of
4 x 1,024-token steps without it (1.13 all weights, 1.20 LoRA), measured on the embedded SmolLM2-135M."""

DATA_BYTES_PER_TOKEN = 120
"""Held tokenized data per token: Python lists of ints for ids and labels (8-byte pointers plus 28-byte
int objects) and the record text they came from."""

HEAD_CHUNK = 256
"""Positions per chunk of the log-prob computation (:mod:`tether.train.logprobs`)."""

JUDGE_BYTES = 0.4e9
"""The refusal judge, a reward component of online RL (its MiniLM cross-encoder): with torch and transformers
already imported, loading it and judging 32 answers of about 250 tokens grew a process's RSS by 0.26 GB, with a
transient peak 0.37 GB above the start (the earlier embedding classifier: 0.31 and 0.47 GB)."""

_LORA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
WEIGHT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that memory depends on (Llama-style layers)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = True

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a ``transformers`` config object or a config.json mapping (GPT-2 style names accepted)."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        hidden = get("hidden_size") or get("n_embd") or get("d_model")
        heads = get("num_attention_heads") or get("n_head")
        layers = get("num_hidden_layers") or get("n_layer")
        vocab = get("vocab_size")
        if not (hidden and heads and layers and vocab):
            raise ValueError("config has no hidden_size / num_attention_heads / num_hidden_layers / vocab_size")
        return cls(
            hidden=int(hidden),
            intermediate=int(get("intermediate_size") or get("n_inner") or 4 * hidden),
            layers=int(layers),
            heads=int(heads),
            kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            vocab=int(vocab),
            tied=bool(get("tie_word_embeddings", True)),
        )

    @property
    def attention(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer, by its usual module name."""
        h, a, k, i = self.hidden, self.attention, self.kv, self.intermediate
        return {
            "q_proj": (h, a),
            "k_proj": (h, k),
            "v_proj": (h, k),
            "o_proj": (a, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def layer_params(self) -> int:
        return sum(n * m for n, m in self.linear_shapes().values()) + 2 * self.hidden

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * self.layer_params + self.hidden

    def lora_params(self, r: int, targets: str | tuple[str, ...] = "all-linear") -> int:
        """Adapter parameters: r (in + out) per targeted linear layer (unknown names count as all-linear)."""
        shapes = self.linear_shapes()
        names = _LORA_NAMES if targets == "all-linear" else tuple(t for t in targets if t in shapes) or _LORA_NAMES
        return self.layers * sum(r * sum(shapes[n]) for n in names)


def read_shape(spec: str, *, trust_remote_code: bool = False, revision: str | None = None) -> ModelShape | None:
    """The shape of a model spec from its config.json (an adapter folder's base), or None when it cannot be
    read without loading weights or reaching the network (the load reports the real problem)."""
    from tether.models.loading import adapter_base, resolve

    try:
        source = resolve(spec)
        base = adapter_base(source)
        folder = Path(resolve(base) if base else source)
        if folder.is_dir():
            return ModelShape.from_config(json.loads((folder / "config.json").read_text()))
        from transformers import AutoConfig  # a hub id: its config.json only

        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code, revision=revision)
        return ModelShape.from_config(config)
    except Exception:  # no config, no network, an unknown architecture: no estimate, never a crash
        return None


@dataclass(frozen=True)
class Trained:
    """How one model is trained: all weights (``lora_r`` None) or LoRA adapters, and its head."""

    lora_r: int | None = None
    lora_targets: str | tuple[str, ...] = "all-linear"
    scalar_head: bool = False


@dataclass(frozen=True)
class Workload:
    """What one command holds and computes, in the terms of the estimate (see the module docstring)."""

    shape: ModelShape
    rows: int
    """Sequences in one micro-batch that carry gradients (2 per pair for paired losses)."""
    length: int
    """Longest sequence of a micro-batch, in tokens."""
    trained: tuple[Trained, ...] = (Trained(),)
    """Every model trained at once (the PPO value model is a second one, with its own activations)."""
    dtype: str = "float32"
    mixed_precision: str = "no"
    checkpointing: bool = False
    frozen_models: int = 0
    """Other full copies of the model held (the RL reference without LoRA, a --ref-model)."""
    nograd_rows: int = 0
    """Rows of the largest no-gradient pass (reference scoring, KTO's KL batch, RL scoring)."""
    nograd_length: int = 0
    generation_rows: int = 0
    """Sequences generated together (RL rollouts); 0 when the command does not generate."""
    generation_length: int = 0
    data_tokens: int = 0
    extra_bytes: int = 0
    """Anything else held for the whole run (reward models, the refusal judge)."""


@dataclass
class Estimate:
    """Bytes per component; :attr:`total` is the estimated peak."""

    parts: dict[str, float] = field(default_factory=dict)
    phase: str = "train pass"

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = ", ".join(f"{name} {value / GB:.2f}" for name, value in self.parts.items() if value >= 0.005 * GB)
        return f"{self.total / GB:.1f} GB ({shown})"


def activation_bytes(shape: ModelShape, trained: Trained, mixed_precision: str) -> float:
    """Bytes one token stores for backward in one decoder layer (``a`` in the module docstring)."""
    h, a, i = shape.hidden, shape.attention, shape.intermediate
    lora = trained.lora_r is not None
    adapters = 7 * (trained.lora_r or 0)
    if mixed_precision == "no":
        return 4 * ((2 if lora else 5) * h + 5 * a + 4 * i + shape.heads + 2 + adapters)
    fp32_h, half_h = (2, 3) if lora else (4, 4)
    return 4 * fp32_h * h + 2 * (half_h * h + 5 * a + 4 * i + adapters) + 4 * shape.heads + 8


def _trainable(shape: ModelShape, trained: Trained) -> int:
    if trained.lora_r is None:
        return shape.params + (shape.hidden if trained.scalar_head else 0)
    return shape.lora_params(trained.lora_r, trained.lora_targets) + (shape.hidden if trained.scalar_head else 0)


def _head_chunk(shape: ModelShape, trained: Trained) -> float:
    """The chunked log-prob's ``[256, V]`` logits, their log-sum-exp temporary and gradient (none for a
    scalar head)."""
    return 0.0 if trained.scalar_head else 3 * HEAD_CHUNK * shape.vocab * 4


def _mask(rows: int, length: int) -> float:
    """The ``[rows, 1, T, T]`` padding mask SDPA reads (built once, shared by all layers)."""
    return rows * length * length * 4


def train_pass(w: Workload) -> float:
    """Working set of one micro-batch's forward and backward, gradients included (before slack)."""
    s, n, wb = w.shape, w.rows * w.length, WEIGHT_BYTES[w.dtype]
    total = _mask(w.rows, w.length)
    recomputed = 0.0
    for trained in w.trained:
        per_layer = n * activation_bytes(s, trained, w.mixed_precision)
        stored = n * s.layers * 4 * s.hidden if w.checkpointing else s.layers * per_layer
        recomputed = max(recomputed, per_layer if w.checkpointing else 0.0)
        if trained.lora_r is None and not trained.scalar_head:
            stored += s.vocab * s.hidden * wb  # the LM head's gradient comes first in backward
        total += max(stored, _trainable(s, trained) * wb) + n * 3 * s.hidden * 4 + _head_chunk(s, trained)
    return total + recomputed  # one layer of one model is recomputed at a time


def nograd_pass(shape: ModelShape, rows: int, length: int, *, scalar_head: bool = False) -> float:
    """Working set of a forward without gradients over ``rows`` x ``length`` tokens (before slack)."""
    if rows == 0:
        return 0.0
    n = rows * length
    per_token = (3 * shape.hidden + max(3 * shape.intermediate, 4 * shape.attention + 2 * shape.kv)) * 4
    head = 0.0 if scalar_head else 2 * HEAD_CHUNK * shape.vocab * 4
    return n * per_token + _mask(rows, length) + head


def generation(w: Workload) -> float:
    """KV cache of the rollout batch plus its prefill (before slack)."""
    if w.generation_rows == 0:
        return 0.0
    s = w.shape
    cache = w.generation_rows * w.generation_length * s.layers * 2 * s.kv * WEIGHT_BYTES[w.dtype]
    return cache + nograd_pass(s, w.generation_rows, w.generation_length)


def estimate(w: Workload) -> Estimate:
    """The estimated peak resident memory of ``w``, by component (see the module docstring)."""
    s, wb = w.shape, WEIGHT_BYTES[w.dtype]
    trainable = [_trainable(s, t) for t in w.trained]
    held = len(w.trained) + w.frozen_models
    parts: dict[str, float] = {
        "runtime": RUNTIME_BYTES,
        "data": w.data_tokens * DATA_BYTES_PER_TOKEN,
        "weights": held * s.params * wb + w.extra_bytes,
        "AdamW": 2 * wb * sum(trainable),
    }
    if w.mixed_precision != "no":
        copies = 0.0
        for trained, count in zip(w.trained, trainable, strict=True):
            frozen_layers = 0 if trained.lora_r is None else (1 if w.checkpointing else s.layers)
            copies += 2 * count + 2 * frozen_layers * s.layer_params
        parts["bf16 copies"] = copies
    phases = {
        "train pass": train_pass(w),
        "no-grad pass": nograd_pass(s, w.nograd_rows, w.nograd_length),
        "generation": generation(w),
    }
    phase = max(phases, key=lambda k: phases[k])
    parts[phase] = DYNAMIC_SLACK * phases[phase]
    return Estimate(parts, phase)


def with_checkpointing(w: Workload, on: bool) -> Workload:
    return replace(w, checkpointing=on)
