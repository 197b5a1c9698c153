"""``POST /v1/chat/completions`` behind the rails: input rails, the upstream, output rails, the store.

A blocked request or answer is an ordinary completion whose content is the safe reply and whose
``finish_reason`` is ``content_filter``. A stream releases only text the output rails passed
(:class:`~tether.guard.pipeline.StreamChecker`). Each interaction is committed to the store before its answer is
sent (for a stream: before ``[DONE]``), so an acknowledged request is never lost; an upstream that fails before
answering is recorded and answered 502 (504 when it timed out).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from tether.generation import SamplingParams
from tether.guard.api import ChatRequest
from tether.guard.pipeline import Decision
from tether.guard.service import Guard
from tether.guard.store import ApiKey
from tether.guard.upstream import Completion, UpstreamError


class _Request:
    """One chat request on its way through: who sent it, what, the input verdict, and the clock."""

    def __init__(self, guard: Guard, key: ApiKey, body: ChatRequest) -> None:
        self.guard, self.key = guard, key
        self.start = time.perf_counter()
        self.messages = body.plain_messages()
        if not any(m["role"] == "user" for m in self.messages):
            raise HTTPException(400, "messages: at least one user message is needed")
        self.inputs = guard.pipeline.check_input(self.messages)
        self.seconds = {"input_rails": self.inputs.seconds}
        self.prompt = next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")
        self.params: SamplingParams = guard.params(body)
        self.forwarded = [{**m, "content": t} for m, t in zip(self.messages, self.inputs.texts, strict=True)]
        self.interaction = str(uuid.uuid4())
        self.upstream_start = 0.0

    def save(self, answer: str | None, outcome: str, decisions: list[Decision]) -> str:
        if self.upstream_start:
            self.seconds.setdefault("upstream", time.perf_counter() - self.upstream_start)
        self.seconds["total"] = time.perf_counter() - self.start
        return self.guard.save(
            key=self.key,
            endpoint="chat",
            messages=self.messages,
            answer=answer,
            outcome=outcome,
            decisions=decisions,
            seconds=self.seconds,
            interaction=self.interaction,
        )

    def save_blocked_input(self) -> None:
        self.save(self.inputs.reply, "blocked_input", [self.inputs])

    def upstream_failed(self, err: UpstreamError) -> HTTPException:
        """Record the failed call (no answer) and return the 502/504 to raise."""
        self.save(None, "upstream_error", [self.inputs])
        return HTTPException(err.status, err.message)


def chat_completion(guard: Guard, key: ApiKey, body: ChatRequest) -> Any:
    """The completion body (or, for ``stream: true``, a server-sent event stream) for one request."""
    request = _Request(guard, key, body)
    if body.stream:
        return _stream(request)
    inputs = request.inputs
    if inputs.blocked:
        request.save_blocked_input()
        return _completion_body(request, inputs.reply or "", "content_filter", [inputs], None)
    request.upstream_start = time.perf_counter()
    try:
        completion = guard.upstream.complete(request.forwarded, request.params)
    except UpstreamError as err:
        raise request.upstream_failed(err) from None
    request.seconds["upstream"] = time.perf_counter() - request.upstream_start
    outputs = guard.pipeline.check_output(completion.text, prompt=request.prompt, input_flagged=inputs.flagged)
    request.seconds["output_rails"] = outputs.seconds
    text = (outputs.reply if outputs.blocked else outputs.texts[0]) or ""
    finish = "content_filter" if outputs.blocked else completion.finish_reason
    request.save(text, "blocked_output" if outputs.blocked else "ok", [inputs, outputs])
    return _completion_body(request, text, finish, [inputs, outputs], completion)


def _completion_body(
    request: _Request, text: str, finish: str, decisions: list[Decision], usage: Completion | None
) -> dict[str, Any]:
    prompt_tokens = usage.prompt_tokens if usage else 0
    completion_tokens = usage.completion_tokens if usage else 0
    return {
        "id": f"chatcmpl-{request.interaction}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.guard.upstream.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "tether": {"interaction_id": request.interaction, **{d.side: d.to_dict() for d in decisions}},
    }


def _chunk(
    request: _Request, *, content: str | None = None, finish: str | None = None, extra: dict[str, Any] | None = None
) -> str:
    delta = {"role": "assistant", "content": content} if content is not None else {}
    body: dict[str, Any] = {
        "id": f"chatcmpl-{request.interaction}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.guard.upstream.name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if extra:
        body["tether"] = extra
    return f"data: {json.dumps(body)}\n\n"


def _stream(request: _Request) -> StreamingResponse:
    guard, inputs = request.guard, request.inputs
    if inputs.blocked:
        request.save_blocked_input()

        def blocked() -> Iterator[str]:
            yield _chunk(request, content=inputs.reply)
            yield _chunk(request, finish="content_filter", extra={"input": inputs.to_dict()})
            yield "data: [DONE]\n\n"

        return StreamingResponse(blocked(), media_type="text/event-stream")
    request.upstream_start = time.perf_counter()
    pieces = guard.upstream.stream(request.forwarded, request.params)
    try:
        first = next(pieces, None)  # an upstream that fails before its first token gets a proper 502/504
    except UpstreamError as err:
        raise request.upstream_failed(err) from None
    checker = guard.pipeline.stream(prompt=request.prompt, input_flagged=inputs.flagged)

    def events() -> Iterator[str]:
        error = None
        try:
            for piece in itertools.chain([first] if first is not None else [], pieces):
                if checker.blocked:
                    break
                released = checker.feed(piece)
                if released:
                    yield _chunk(request, content=released)
        except UpstreamError as err:
            error = err.message
        request.seconds["upstream"] = time.perf_counter() - request.upstream_start
        rest = checker.finish() if error is None else ""
        if rest:
            yield _chunk(request, content=rest)
        final = checker.last
        if checker.blocked:
            yield _chunk(request, content=("\n\n" if checker.sent else "") + guard.config.safe_reply)
        request.seconds["output_rails"] = sum(d.seconds for d in checker.decisions)
        outcome = "blocked_output" if checker.blocked else ("upstream_error" if error else "ok")
        stored = checker.sent + ("\n\n" + guard.config.safe_reply if checker.blocked else "")
        request.save(stored, outcome, [inputs] + ([final] if final is not None else []))
        finish = "content_filter" if checker.blocked else ("error" if error else "stop")
        extra: dict[str, Any] = {"input": inputs.to_dict(), **({"output": final.to_dict()} if final else {})}
        if error:
            extra["error"] = error
        yield _chunk(request, finish=finish, extra=extra)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
