"""What the guard protects: a model tether loads on this machine, or any OpenAI-compatible endpoint.

``complete(messages, params)`` returns the whole answer; ``stream(messages, params)`` yields it in pieces
(tokens for a local model, the endpoint's chunks otherwise). A failure is an :class:`UpstreamError` with the
HTTP status the guard answers: 504 when the upstream timed out, 502 when it failed or answered garbage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.generation import SamplingParams


class UpstreamError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Upstream(Protocol):
    name: str

    def complete(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Completion: ...

    def stream(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Iterator[str]: ...

    def warm_up(self) -> None: ...


class LocalUpstream:
    """A model tether loads (the embedded default, a folder, a hub id); one generation at a time."""

    def __init__(self, spec: str, *, dtype: str = "float32", trust_remote_code: bool = False) -> None:
        from tether.targets import LocalTarget

        self.name = spec
        self.target = LocalTarget(spec, backend="hf", dtype=dtype, trust_remote_code=trust_remote_code)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.target.engine()

    def _encode(self, messages: Sequence[dict[str, str]]) -> list[int]:
        from tether.data.records import Message

        chat = [Message(role=m["role"], content=m["content"]) for m in messages]  # type: ignore[arg-type]
        return list(self.target.engine().prompt_ids(chat))

    def complete(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Completion:
        engine = self.target.engine()
        ids = self._encode(messages)
        with self._lock:
            out = engine.generate_from_ids([ids], params)[0]
        from tether.generation.engine import decode_completions

        text = decode_completions(engine.tokenizer, [out], params.stop)[0]
        finish = "length" if len(out) >= params.max_new_tokens else "stop"
        return Completion(text, finish, len(ids), len(out))

    def stream(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Iterator[str]:
        """The answer as it is generated: the same text :meth:`complete` gives (stripped, cut at the first
        stop string), in pieces. Generation stops when a stop string appears or the caller stops reading."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        engine = self.target.engine()
        model, tokenizer = engine.model, engine.tokenizer
        ids = torch.tensor([self._encode(messages)])
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        cancel = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": params.max_new_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        }
        if params.temperature > 0:
            torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False)
        errors: list[BaseException] = []

        def run() -> None:
            with self._lock, torch.no_grad():
                try:
                    model.generate(**kwargs)
                except BaseException as err:  # re-raised in the caller's thread
                    errors.append(err)
                    streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        longest = max((len(s) for s in params.stop), default=0)
        text, sent = "", 0
        try:
            for piece in streamer:
                text += piece
                cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    break
                # Hold back what could still become a stop string, and trailing whitespace (stripped at the end).
                safe = len(text.rstrip()) - max(longest - 1, 0)
                start = len(text) - len(text.lstrip()) if sent == 0 else sent
                if safe > start:
                    yield text[start:safe]
                    sent = safe
        finally:
            cancel.set()
            thread.join()
        if errors:
            raise UpstreamError(502, f"the local model failed: {errors[0]}")
        rest = text.strip()
        done = text[len(text) - len(text.lstrip()) : sent] if sent else ""
        if len(rest) > len(done):
            yield rest[len(done) :]


class EndpointUpstream:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the official client."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None, timeout: float, retries: int) -> None:
        from tether.targets import openai_client

        self.name = model
        self.model = model
        self.client = openai_client(base_url, api_key, timeout=timeout, retries=retries)

    def warm_up(self) -> None:
        pass

    def _call(self, messages: Sequence[dict[str, str]], params: SamplingParams, *, stream: bool) -> Any:
        import openai

        try:
            return self.client.chat.completions.create(
                model=self.model,
                messages=list(messages),
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=list(params.stop) or None,
                stream=stream,
            )
        except openai.APITimeoutError as err:
            raise UpstreamError(504, f"the upstream model timed out ({err})") from None
        except openai.APIStatusError as err:
            raise UpstreamError(502, f"the upstream model answered HTTP {err.status_code}: {err.message}") from None
        except (openai.APIError, ValueError) as err:
            raise UpstreamError(502, f"the upstream model failed: {err}") from None

    def complete(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Completion:
        response = self._call(messages, params, stream=False)
        try:
            choice = response.choices[0]
            text = choice.message.content
            if not isinstance(text, str):
                raise TypeError("no text content")
        except (AttributeError, IndexError, TypeError) as err:
            raise UpstreamError(502, f"the upstream model's answer is not a chat completion ({err})") from None
        usage = getattr(response, "usage", None)
        return Completion(
            text,
            choice.finish_reason or "stop",
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )

    def stream(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> Iterator[str]:
        import openai

        chunks = self._call(messages, params, stream=True)
        seen = 0
        try:
            for chunk in chunks:
                seen += 1
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.APITimeoutError as err:
            raise UpstreamError(504, f"the upstream model timed out while streaming ({err})") from None
        except (openai.APIError, ValueError, AttributeError) as err:
            raise UpstreamError(502, f"the upstream model's stream failed: {err}") from None
        if not seen:
            raise UpstreamError(502, "the upstream model's stream carried no chunks (not an OpenAI-compatible stream?)")
