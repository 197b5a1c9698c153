"""Read and edit activations at named sites with PyTorch hooks on the model's own modules.

Reading hooks never change what the model computes (the logits equal plain transformers', tested); an edit
is a function ``f(activation [batch, positions, d]) -> activation`` applied at a site. Every hook is removed
when its ``with`` block ends, also on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from tether.interp.sites import Site, site_module

Edit = Callable[[torch.Tensor], torch.Tensor]


def _tensor_of(value: Any) -> torch.Tensor:
    """The activation in a module's input or output (a tensor, or the first element of a tuple)."""
    return value[0] if isinstance(value, tuple | list) else value


def _with_tensor(value: Any, tensor: torch.Tensor) -> Any:
    if isinstance(value, tuple):
        return (tensor, *value[1:])
    if isinstance(value, list):
        return [tensor, *value[1:]]
    return tensor


def _register(model: Any, site: Site, on_activation: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
    """One hook at ``site``; ``on_activation`` returns a replacement activation or None."""
    module, where = site_module(model, site)
    if where == "output":

        def after(_module: Any, _args: Any, output: Any) -> Any:
            new = on_activation(_tensor_of(output))
            return None if new is None else _with_tensor(output, new)

        return module.register_forward_hook(after)

    def before(_module: Any, args: tuple, kwargs: dict) -> Any:
        if args:
            new = on_activation(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = on_activation(kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return module.register_forward_pre_hook(before, with_kwargs=True)


@contextmanager
def hooked(model: Any, hooks: Sequence[tuple[Site, Callable[[torch.Tensor], torch.Tensor | None]]]) -> Iterator[None]:
    """Attach ``(site, on_activation)`` hooks for the ``with`` block."""
    handles = []
    try:
        for site, fn in hooks:
            handles.append(_register(model, site, fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recording(
    model: Any, sites: Sequence[Site], *, to: str | torch.device = "cpu"
) -> Iterator[dict[Site, torch.Tensor]]:
    """Record each site's activation ``[batch, positions, d]`` (detached, on ``to``) during forward passes in
    the block; a later pass at the same site overwrites the record."""
    records: dict[Site, torch.Tensor] = {}

    def keeper(site: Site) -> Callable[[torch.Tensor], None]:
        def keep(activation: torch.Tensor) -> None:
            records[site] = activation.detach().to(to)

        return keep

    with hooked(model, [(site, keeper(site)) for site in sites]):
        yield records


@contextmanager
def editing(model: Any, edits: Sequence[tuple[Site, Edit]]) -> Iterator[None]:
    """Replace each site's activation by ``edit(activation)`` during forward passes in the block."""
    with hooked(model, list(edits)):
        yield
