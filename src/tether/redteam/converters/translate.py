"""Translation into a low-resource language by a translator model (Yong et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from tether.errors import ConfigError, TetherError
from tether.redteam.converters.registry import Converter, register_converter


@runtime_checkable
class SupportsGenerate(Protocol):
    """A model wrapper with ``generate(prompts) -> completions`` (one completion per prompt, in order)."""

    def generate(self, prompts: list[str]) -> list[str]: ...


Translator = Callable[[list[str]], list[str]] | SupportsGenerate
TRANSLATE_INSTRUCTION = "Translate the following text into {language}. Reply with the translation only.\n\n{text}"
NO_TRANSLATOR = "the translate converter needs a translator: --translator-model or --translator-endpoint"


@register_converter("translate")
class Translate(Converter):
    """Translate the prompt into another language with a translator model (default Zulu, a low-resource language).

    Low-resource languages slip past safety training: Yong et al. 2023, "Low-Resource Languages Jailbreak
    GPT-4". ``translator`` is a function ``list[str] -> list[str]`` or an object with ``generate(prompts)``;
    bind any sampling settings first (e.g. ``lambda ps: engine.generate(ps, SamplingParams(max_new_tokens=512))``).
    All prompts of a batch go to the translator in one call.
    """

    requires = ("translator",)

    def __init__(self, *, translator: Translator | None = None, language: str = "Zulu") -> None:
        if translator is not None and not (isinstance(translator, SupportsGenerate) or callable(translator)):
            raise ConfigError(
                f"translator must be a function list[str] -> list[str] or have generate(prompts), got {translator!r}",
                field="translator",
            )
        if not language.strip():
            raise ConfigError("translate needs a target language", field="language")
        self.translator, self.language = translator, language

    def convert(self, text: str) -> str:
        return self.convert_batch([text])[0]

    def convert_batch(self, texts: Sequence[str]) -> list[str]:
        if self.translator is None:
            raise TetherError(NO_TRANSLATOR)
        if not texts:
            return []
        requests = [TRANSLATE_INSTRUCTION.format(language=self.language, text=text) for text in texts]
        if isinstance(self.translator, SupportsGenerate):
            replies = self.translator.generate(requests)
        else:
            replies = self.translator(requests)
        if not isinstance(replies, list) or len(replies) != len(requests):
            got = f"{len(replies)} replies" if isinstance(replies, list) else repr(type(replies).__name__)
            raise TetherError(f"the translator must return one string per prompt ({len(requests)}), got {got}")
        out = []
        for i, reply in enumerate(replies):
            if not isinstance(reply, str) or not reply.strip():
                raise TetherError(f"the translator returned no translation for prompt {i}: {reply!r}")
            out.append(reply.strip())
        return out
