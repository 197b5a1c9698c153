"""Progress of long work: a rich bar on a terminal, and a plain line every tenth of the way in a log file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Steps:
    def __init__(self, console: Any, label: str, total: int, bar: Any, task: Any) -> None:
        self.console, self.label, self.total, self.bar, self.task = console, label, total, bar, task
        self.done = 0
        self._next_line = max(1, total // 10)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        elif self.console is not None and (self.done >= self._next_line or self.done == self.total):
            self.console.print(f"{self.label}: {self.done}/{self.total}", highlight=False)
            self._next_line = self.done + max(1, self.total // 10)


@contextmanager
def steps(console: Any, label: str, total: int, *, enabled: bool = True) -> Iterator[Steps]:
    """``with steps(console, "embed", n) as s: ... s.advance(k)``; silent when ``enabled`` is false."""
    if not enabled:
        yield Steps(None, label, total, None, None)
        return
    if not console.is_terminal:
        yield Steps(console, label, total, None, None)
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield Steps(console, label, total, bar, task)


def track(items: Sequence[T], label: str, *, enabled: bool = True, console: Any = None) -> Iterator[T]:
    """Iterate over ``items`` (e.g. batches) with :func:`steps` progress, one step per item."""
    if console is None:
        from rich.console import Console

        console = Console()
    with steps(console, label, len(items), enabled=enabled) as progress:
        for item in items:
            yield item
            progress.advance()
