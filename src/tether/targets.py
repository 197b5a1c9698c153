"""What gets evaluated or attacked: a model tether loads, an OpenAI-compatible endpoint, or a script.

A target answers chats (lists of :class:`~tether.data.records.Message`) in batches. A failed request
is a :class:`Reply` with ``error`` set, which judges score as ``unscored``, never as a refusal or a pass.
Nothing leaves the machine unless the user configures an HTTP target.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tether.data.records import Message
from tether.errors import ConfigError
from tether.generation import SamplingParams
from tether.generation.factory import Backend

Chat = Sequence[Message]


@dataclass(frozen=True)
class Reply:
    text: str
    error: str | None = None


class Target(Protocol):
    name: str

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Reply]: ...


def openai_client(base_url: str, api_key: str | None, *, timeout: float, retries: int = 2) -> Any:
    """The official client for an OpenAI-compatible endpoint (local servers accept any key). ``retries``: the
    client's own retries with exponential backoff, of connection errors, timeouts and HTTP 408/409/429/5xx."""
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=retries)


def as_chat(prompt: str | Sequence[Message]) -> list[Message]:
    return [Message(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)


class LocalTarget:
    """A model tether can load (embedded name, folder, hub id, or a LoRA adapter folder) on this machine."""

    def __init__(
        self,
        spec: str,
        *,
        backend: Backend = "auto",
        batch_size: int | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        progress: bool = False,
    ) -> None:
        from tether.models.loading import check_weights

        check_weights(spec)  # a missing folder or pickle weights fail now, before any output is written
        self.spec = spec
        self.name = spec
        self.backend = backend
        self.batch_size = batch_size
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.progress = progress
        self._engine: Any = None
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded once; a LoRA adapter is merged so that it decodes as fast as the base."""
        if self._model is None:
            from tether.models.loading import load_model, load_tokenizer
            from tether.models.lora import is_peft

            model = load_model(self.spec, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
            self._model = model.merge_and_unload() if is_peft(model) else model
            self._tokenizer = load_tokenizer(self.spec, trust_remote_code=self.trust_remote_code)
        return self._model, self._tokenizer

    def engine(self) -> Any:
        if self._engine is None:
            from tether.generation import make_engine
            from tether.models.loading import resolve
            from tether.models.lora import is_peft

            model, tokenizer = self.load()
            path = None if is_peft(model) else resolve(self.spec)
            self._engine = make_engine(
                model,
                tokenizer,
                backend=self.backend,
                model_path=path,
                batch_size=self.batch_size,
                progress=self.progress,
            )
        return self._engine

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Reply]:
        texts = self.engine().generate([list(c) for c in chats], params)
        return [Reply(t) for t in texts]


class OpenAITarget:
    """Any OpenAI-compatible chat endpoint (vLLM, a hosted API, tether's own guard server)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "TETHER_TARGET_API_KEY",
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 2,
        client: Any = None,
    ) -> None:
        key = api_key or os.environ.get(api_key_env)
        self.client = client or openai_client(base_url, key, timeout=timeout, retries=retries)
        self.model = model
        self.name = f"{model}@{base_url}"
        self.concurrency = concurrency

    def _one(self, chat: Chat, params: SamplingParams) -> Reply:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in chat],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
        }
        if params.top_p < 1.0:
            kwargs["top_p"] = params.top_p
        if params.stop:
            kwargs["stop"] = list(params.stop)
        try:
            reply = self.client.chat.completions.create(**kwargs)
            return Reply(reply.choices[0].message.content or "")
        except Exception as err:  # transport, HTTP and API errors become an unscorable reply with its reason
            return Reply("", error=f"{type(err).__name__}: {err}"[:500])

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Reply]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda chat: self._one(chat, params), chats))


class ScriptedTarget:
    """A mock target for tests (after inspect_ai's ``mockllm``).

    ``script`` maps the last user message to the reply (a ``default`` answers the rest), or is a callable
    ``chat -> str``; a reply that is an ``Exception`` instance is returned as a failed request.
    """

    def __init__(
        self, script: Mapping[str, str | Exception] | Callable[[Chat], str], *, default: str | None = None
    ) -> None:
        self.script = script
        self.default = default
        self.name = "scripted"
        self.calls: list[list[Message]] = []

    def _answer(self, chat: Chat) -> str | Exception:
        if callable(self.script):
            return self.script(chat)
        last = next((m.content for m in reversed(chat) if m.role == "user"), "")
        if last in self.script:
            return self.script[last]
        if self.default is None:
            raise KeyError(f"the scripted target has no reply for {last!r}")
        return self.default

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Reply]:
        replies = []
        for chat in chats:
            self.calls.append(list(chat))
            answer = self._answer(chat)
            replies.append(Reply("", error=str(answer)) if isinstance(answer, Exception) else Reply(answer))
        return replies


class TargetSettings(Protocol):
    """What :func:`make_target` reads of a config (``TargetOptions`` and ``cai``'s ``GeneratorOptions`` have it)."""

    @property
    def endpoint(self) -> str | None: ...
    @property
    def endpoint_model(self) -> str | None: ...
    @property
    def endpoint_key_env(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def generation_backend(self) -> Literal["auto", "hf", "vllm"]: ...


def make_target(
    config: TargetSettings,
    *,
    model: str,
    dtype: str,
    trust_remote_code: bool,
    batch_size: int | None = None,
    progress: bool = False,
) -> Target:
    """An :class:`OpenAITarget` when ``--endpoint`` is set, else a :class:`LocalTarget` for ``model``."""
    if config.endpoint:
        if not config.endpoint_model:
            raise ConfigError("--endpoint needs --endpoint-model (the model name to request)")
        return OpenAITarget(
            config.endpoint,
            config.endpoint_model,
            api_key_env=config.endpoint_key_env,
            concurrency=config.concurrency,
            timeout=config.request_timeout,
            retries=config.retries,
        )
    return LocalTarget(
        model,
        backend=config.generation_backend,
        batch_size=batch_size,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        progress=progress,
    )
