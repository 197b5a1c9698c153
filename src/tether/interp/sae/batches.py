"""Training batches from an activation store: chunk by chunk through a shuffle buffer, never the whole store.

The stream is a pure function of the seed: chunks are read in a random order each epoch (a store shorter
than the run is read again in a new order), appended to a buffer of ``buffer_tokens`` tokens, and when the
buffer is full it is permuted, its first half is served as batches and the second half kept for mixing
with the next chunks (SAELens's mixing buffer works the same way). A resumed run replays the stream and
skips the batches already trained on, so it sees exactly the batches an unstopped run would have seen;
the replay only reads and permutes, it trains nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from tether.errors import DataError
from tether.interp.store import ActivationStore


def _chunk(store: ActivationStore, site: str, number: int) -> torch.Tensor:
    from safetensors import safe_open

    path = store.folder / store.index["chunks"][number]["file"]
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor(site).float()
    except (OSError, RuntimeError) as err:
        raise DataError(f"unreadable chunk ({err})", file=path) from None


def shuffled_batches(
    store: ActivationStore, site: str, batch_size: int, *, buffer_tokens: int, seed: int, skip: int = 0
) -> Iterator[torch.Tensor]:
    """Endless ``[batch_size, d_model]`` float32 batches of ``site`` (module docstring); the first ``skip``
    are dropped."""
    if site not in store.sites:
        raise DataError(f"has no site {site!r} (it holds {', '.join(store.sites)})", file=store.folder)
    if store.tokens < batch_size:
        raise DataError(
            f"holds {store.tokens} tokens, fewer than one batch ({batch_size}); capture more or lower --batch-size",
            file=store.folder,
        )
    generator = torch.Generator().manual_seed(seed)
    capacity = max(2 * batch_size, min(buffer_tokens, store.tokens))
    pending: list[torch.Tensor] = []
    held = 0
    served = 0
    while True:
        for number in torch.randperm(len(store.index["chunks"]), generator=generator).tolist():
            part = _chunk(store, site, number)
            pending.append(part)
            held += part.shape[0]
            while held >= capacity:
                buffer = torch.cat(pending) if len(pending) > 1 else pending[0]
                order = torch.randperm(buffer.shape[0], generator=generator)
                serve = (buffer.shape[0] // 2) // batch_size * batch_size
                for start in range(0, serve, batch_size):
                    if served >= skip:
                        yield buffer.index_select(0, order[start : start + batch_size])
                    served += 1
                pending = [buffer.index_select(0, order[serve:])]
                held = pending[0].shape[0]
