"""The project's exceptions. Each carries the exit code the CLI returns for it."""

from __future__ import annotations

from pathlib import Path


class TetherError(Exception):
    """Base class for errors that tether reports to the user without a traceback."""

    exit_code = 1


class LocatedError(TetherError):
    """An error about one place in an input: ``file:line: field: message``."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


class DataError(LocatedError):
    """Malformed or invalid training/evaluation data (exit code 2)."""


class ConfigError(LocatedError):
    """An invalid configuration file or flag (exit code 2)."""


class UsageError(TetherError):
    """A command asked for something it must not do: an output path that holds another run or a file
    where a folder is needed, a run to resume that is not there (exit code 2)."""

    exit_code = 2


class ModelError(TetherError):
    """A model or tokenizer that cannot be loaded or used as asked (exit code 2)."""

    exit_code = 2


class MemoryBudgetError(TetherError):
    """A training run whose estimated peak memory exceeds the budget, refused before any weights load; the
    message names settings that would fit (exit code 2)."""

    exit_code = 2


class UnscoredError(TetherError):
    """An eval or red-team run with too many unscored answers (``--max-unscored``): its summary and report
    are written, then it fails so that a script never takes a table of unscored rows for a result (exit
    code 4)."""

    exit_code = 4


class TrainingDiverged(TetherError):
    """Loss or gradient became NaN/inf; the last good checkpoint is kept (exit code 3)."""

    exit_code = 3
