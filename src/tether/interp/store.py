"""Captured activations on disk: safetensors chunks written within a memory budget, read back chunk by chunk.

A store is a folder::

    index.json                  format, model, sites, d_model, dtype, chunks, tokens, examples_done, complete
    chunk-000000.safetensors    one [tokens, d_model] tensor per site ("resid_post.3", ...), plus int64
                                "example", "position" and "token_id" columns of the same length

A chunk holds whole examples. It is written atomically and only then listed in ``index.json`` (also written
atomically), so a stopped capture leaves a consistent store that resumes after ``examples_done``; a chunk
file the index does not list is a leftover of an interrupted write and is ignored (and replaced).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tether.atomic import atomic_path, atomic_write_json
from tether.errors import DataError

FORMAT = "tether-activations/1"
COLUMNS = ("example", "position", "token_id")


def chunk_name(number: int) -> str:
    return f"chunk-{number:06d}.safetensors"


def read_index(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "index.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("not an activation store (no index.json)", file=folder) from None
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg})", file=path, line=err.lineno) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"expected format {FORMAT!r}", file=path, field="format")
    return index


@dataclass
class ActivationWriter:
    """Buffer whole examples' activations and write a chunk whenever the buffer passes ``budget_bytes``."""

    folder: Path
    sites: list[str]
    d_model: int
    dtype: torch.dtype = torch.float32
    budget_bytes: int = 256 * 2**20
    meta: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(init=False)
    _buffer: list[dict[str, torch.Tensor]] = field(init=False, default_factory=list)
    _buffered: int = field(init=False, default=0)
    _pending_examples: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if (self.folder / "index.json").exists():
            self.index = read_index(self.folder)
            if self.index["sites"] != self.sites or self.index["d_model"] != self.d_model:
                raise DataError(
                    f"holds sites {', '.join(self.index['sites'])} (d_model {self.index['d_model']}), not "
                    f"{', '.join(self.sites)} (d_model {self.d_model}); use another folder",
                    file=self.folder,
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.index = {
                "format": FORMAT,
                "sites": list(self.sites),
                "d_model": self.d_model,
                "dtype": str(self.dtype).removeprefix("torch."),
                "chunks": [],
                "tokens": 0,
                "examples_done": 0,
                "complete": False,
                **self.meta,
            }
            self._write_index()

    @property
    def examples_done(self) -> int:
        """Examples safely on disk (a resumed capture starts after them)."""
        return int(self.index["examples_done"])

    def add(self, columns: dict[str, torch.Tensor], activations: dict[str, torch.Tensor], examples: int) -> None:
        """Add the tokens of ``examples`` whole examples: ``columns`` (example, position, token_id) [n] and one
        [n, d_model] tensor per site."""
        if set(activations) != set(self.sites):
            raise ValueError(f"expected activations of {self.sites}, got {sorted(activations)}")
        part = {k: columns[k].to("cpu", torch.int64) for k in COLUMNS}
        part |= {k: v.detach().to("cpu", self.dtype).contiguous() for k, v in activations.items()}
        self._buffer.append(part)
        self._buffered += sum(t.numel() * t.element_size() for t in part.values())
        self._pending_examples += examples
        if self._buffered >= self.budget_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered examples as one chunk, then list it in the index."""
        if not self._buffer:
            return
        from safetensors.torch import save_file

        tensors = {k: torch.cat([p[k] for p in self._buffer]) for k in self._buffer[0]}
        name = chunk_name(len(self.index["chunks"]))
        with atomic_path(self.folder / name) as tmp:
            save_file(tensors, str(tmp))
        tokens = int(tensors["example"].numel())
        self.index["chunks"].append({"file": name, "tokens": tokens})
        self.index["tokens"] += tokens
        self.index["examples_done"] += self._pending_examples
        self._write_index()
        self._buffer, self._buffered, self._pending_examples = [], 0, 0

    def close(self, *, complete: bool = True) -> dict[str, Any]:
        self.flush()
        self.index["complete"] = complete
        self._write_index()
        return self.index

    def _write_index(self) -> None:
        atomic_write_json(self.folder / "index.json", self.index)


class ActivationStore:
    """Read a store chunk by chunk (a store larger than memory is never loaded whole)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.index = read_index(self.folder)

    @property
    def sites(self) -> list[str]:
        return list(self.index["sites"])

    @property
    def d_model(self) -> int:
        return int(self.index["d_model"])

    @property
    def tokens(self) -> int:
        return int(self.index["tokens"])

    @property
    def model(self) -> str | None:
        """The model the store was captured from (`tether interp capture` records it in ``identity``)."""
        model = self.index.get("model") or (self.index.get("identity") or {}).get("model")
        return str(model) if model else None

    def _check_site(self, site: str) -> None:
        if site not in self.sites:
            raise DataError(f"has no site {site!r} (it holds {', '.join(self.sites)})", file=self.folder)

    def chunks(self, site: str, columns: Sequence[str] = ()) -> Iterator[dict[str, torch.Tensor]]:
        """``{site: [n, d], column: [n], ...}`` per chunk, in capture order."""
        from safetensors import safe_open

        self._check_site(site)
        for chunk in self.index["chunks"]:
            path = self.folder / chunk["file"]
            try:
                with safe_open(str(path), framework="pt") as handle:
                    yield {name: handle.get_tensor(name) for name in (site, *columns)}
            except (OSError, RuntimeError) as err:
                raise DataError(f"unreadable chunk ({err})", file=path) from None

    def read(self, site: str, columns: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """The whole site in memory (for stores that fit)."""
        parts = list(self.chunks(site, columns))
        if not parts:
            return {
                name: torch.empty(0, self.d_model) if name == site else torch.empty(0, dtype=torch.int64)
                for name in (site, *columns)
            }
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
