"""The request bodies the guard's HTTP API accepts (OpenAI's chat-completions shape, and ``/v1/check``).

Unknown fields are ignored, as OpenAI-compatible servers do (clients send ``user``, ``stream_options`` ...);
wrong types and out-of-range values are HTTP 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Body):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    """Only one choice per request."""
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CheckRequest(_Body):
    """Check without generating: ``messages`` (or ``input`` text) through the input rails, ``output`` (with its
    ``prompt``) through the output rails; at least one of them."""

    messages: list[ChatMessage] | None = None
    input: str | None = None
    output: str | None = None
    prompt: str | None = None

    def has_something(self) -> bool:
        return bool(self.messages) or self.input is not None or self.output is not None


class ReviewRequest(_Body):
    label: Literal["fine", "harmful", "over_refusal", "corrected"]
    response: str | None = Field(None, max_length=100_000)
    """The corrected response (required for ``corrected``)."""
    note: str | None = Field(None, max_length=10_000)


class KeyRequest(_Body):
    name: str = Field(min_length=1, max_length=200)
    admin: bool = False


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}
