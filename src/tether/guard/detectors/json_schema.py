"""Output format: the answer must be JSON that a JSON Schema accepts (``jsonschema``, the schema's own draft).

A fenced block (```json ... ```) is read as the JSON; anything else must parse as a whole. Flags (score 1)
an answer that is not JSON or that the schema rejects, with the first error and where it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, Sample, register

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n?```", re.DOTALL | re.IGNORECASE)


class JsonSchemaOptions(Options):
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    """The JSON Schema, inline (YAML mapping)."""
    schema_file: Path | None = None
    """Or a JSON file holding it."""

    model_config = ConfigDict(**Options.model_config, populate_by_name=True)  # type: ignore[typeddict-item]

    @model_validator(mode="after")
    def _one_schema(self) -> JsonSchemaOptions:
        import jsonschema

        if (self.schema_ is None) == (self.schema_file is None):
            raise ValueError("give exactly one of schema and schema_file")
        schema = self.load()
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as err:
            raise ValueError(f"not a valid JSON Schema: {err.message}") from None
        return self

    def load(self) -> dict[str, Any]:
        if self.schema_ is not None:
            return self.schema_
        assert self.schema_file is not None
        try:
            schema = json.loads(self.schema_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read the schema {self.schema_file}: {err}") from None
        if not isinstance(schema, dict):
            raise ValueError(f"{self.schema_file}: a JSON Schema is an object")
        return schema


@register
class JsonSchema(Detector):
    name: ClassVar[str] = "json_schema"
    summary: ClassVar[str] = "the answer must be JSON valid against a JSON Schema"
    sides: ClassVar[tuple[Any, ...]] = ("output",)
    Options = JsonSchemaOptions

    def __init__(self, options: JsonSchemaOptions | None = None, *, threshold: float | None = None) -> None:
        import jsonschema

        super().__init__(options, threshold=threshold)
        opts: JsonSchemaOptions = self.options  # type: ignore[assignment]
        schema = opts.load()
        self._validator = jsonschema.validators.validator_for(schema)(schema)

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        fenced = _FENCE.search(sample.text)
        body = fenced.group(1) if fenced else sample.text.strip()
        try:
            value = json.loads(body)
        except ValueError as err:
            return 1.0, f"not JSON: {err}", "text", ()
        error = next(iter(sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if error is None:
            return 0.0, "valid against the schema", "text", ()
        where = "/".join(str(p) for p in error.path) or "(root)"
        return 1.0, f"schema error at {where}: {error.message}", "text", ()
