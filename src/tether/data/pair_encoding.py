"""Tokenize preference pairs: one prompt, two completions, exact boundaries.

``prompt_ids`` is the chat-templated prompt with the generation prompt. Each completion's ids are what
follows those prompt ids in the templated prompt + completion; the prompt ids must be a prefix of it,
otherwise the pair is rejected with a DataError (the boundary would be ambiguous). Without a chat
template, standard-form pairs are plain text: prompt, then completion and one EOS.

Truncation policy (:func:`truncate_pair`): the prompt keeps its *last* ``max_prompt_length`` tokens (the
end of a conversation is what the answer responds to), then each completion is cut at the end so that
prompt + completion fits in ``max_length``. A pair left with an empty completion is dropped (None).
Before anything is rendered, :func:`cap_record` cuts every field to what that policy could keep (the
prompt's end, the completions' start; see :meth:`ChatEncoder.char_cap`), so a 50 MB field costs what
``max_length`` tokens cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

from tether.data.records import Message, Preference, Unpaired, as_messages
from tether.data.tokenization import (
    IGNORE_INDEX,
    ChatEncoder,
    Keep,
    TokenizedExample,
    cap_messages,
    cap_text,
    first_difference,
)
from tether.errors import DataError


@dataclass
class PairExample:
    """Token ids of a preference pair; completions exclude the prompt. ``p_chosen``: the record's soft label
    (None when it has none), carried to the loss by the preference and reward recipes."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    p_chosen: float | None = None

    def sequences(self) -> tuple[TokenizedExample, TokenizedExample]:
        """(prompt + chosen, prompt + rejected) with labels on the completion tokens only."""
        return completion_example(self.prompt_ids, self.chosen_ids), completion_example(
            self.prompt_ids, self.rejected_ids
        )

    def __len__(self) -> int:
        """Length of the longer side (what a padded batch must hold)."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass
class UnpairedExample:
    """Token ids of an unpaired example (KTO) and its label."""

    prompt_ids: list[int]
    completion_ids: list[int]
    label: bool

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class PairReport:
    """What encoding did to the records: kept, truncated (still usable) and dropped (no completion left)."""

    kept: int = 0
    truncated: int = 0
    dropped: int = 0


def completion_example(prompt_ids: list[int], completion_ids: list[int]) -> TokenizedExample:
    """``prompt + completion`` with labels on the completion tokens only."""
    return TokenizedExample(prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids)


def _completion_ids(encoder: ChatEncoder, prompt: list[Message], prompt_ids: list[int], side, field: str):
    if not encoder.has_template:
        if not isinstance(side, str):
            raise DataError("this tokenizer has no chat template; give standard (string) pairs", field=field)
        ids = list(encoder.tokenizer(side, add_special_tokens=False)["input_ids"])
        eos = encoder.tokenizer.eos_token_id
        return ids + ([eos] if eos is not None and (not ids or ids[-1] != eos) else [])
    full = encoder.render_ids(prompt + as_messages(side, "assistant"), add_generation_prompt=False)
    if full[: len(prompt_ids)] != prompt_ids:
        at = first_difference(prompt_ids, full)
        raise DataError(
            f"the templated prompt is not a prefix of the templated prompt + {field} (tokens differ at "
            f"position {at}); the completion is not a continuation of the prompt",
            field=field,
        )
    return full[len(prompt_ids) :]


def encode_completion(
    encoder: ChatEncoder, prompt: str | list[Message], completion: str | list[Message]
) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of one prompt and completion, e.g. a sampled answer to score.

    Unlike records, the completion may be empty (a model can answer with EOS at once).
    """
    messages = as_messages(prompt, "user")
    prompt_ids = encoder.prompt_ids(messages)
    return prompt_ids, _completion_ids(encoder, messages, prompt_ids, completion, "completion")


def _capped(value: str | list[Message], chars: int, keep: Keep) -> str | list[Message]:
    return cap_text(value, chars, keep) if isinstance(value, str) else cap_messages(value, chars, keep)


def cap_record(encoder: ChatEncoder, record: Preference | Unpaired, max_length: int, max_prompt_length: int):
    """``record`` with its prompt cut to the characters that can hold its last ``max_prompt_length`` tokens
    and each completion to those that can hold its first ``max_length`` (the truncation policy keeps no
    more)."""
    prompt_chars, completion_chars = encoder.char_cap(max_prompt_length), encoder.char_cap(max_length)
    names = ("chosen", "rejected") if isinstance(record, Preference) else ("completion",)
    update: dict[str, Any] = {"prompt": _capped(record.prompt, prompt_chars, "end")}
    update.update({name: _capped(getattr(record, name), completion_chars, "start") for name in names})
    return record.model_copy(update=update)


def encode_pair(encoder: ChatEncoder, pair: Preference) -> PairExample:
    """Prompt ids and the two completions' ids of ``pair`` (untruncated)."""
    prompt = as_messages(pair.prompt, "user")
    prompt_ids = encoder.prompt_ids(prompt)
    return PairExample(
        prompt_ids,
        _completion_ids(encoder, prompt, prompt_ids, pair.chosen, "chosen"),
        _completion_ids(encoder, prompt, prompt_ids, pair.rejected, "rejected"),
        pair.p_chosen,
    )


def truncate_pair(example: PairExample, max_length: int, max_prompt_length: int) -> PairExample | None:
    """Apply the module's truncation policy; None when a completion would be left empty."""
    if max_prompt_length >= max_length:
        raise ValueError(f"max_prompt_length ({max_prompt_length}) must be below max_length ({max_length})")
    prompt = example.prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt)
    chosen, rejected = example.chosen_ids[:room], example.rejected_ids[:room]
    if not chosen or not rejected:
        return None
    return PairExample(prompt, chosen, rejected, example.p_chosen)


def truncate_unpaired(example: UnpairedExample, max_length: int, max_prompt_length: int) -> UnpairedExample | None:
    """The pair policy for one completion: keep the prompt's end, cut the completion's end."""
    cut = truncate_pair(
        PairExample(example.prompt_ids, example.completion_ids, example.completion_ids), max_length, max_prompt_length
    )
    return None if cut is None else UnpairedExample(cut.prompt_ids, cut.chosen_ids, example.label)


def encode_unpaired(encoder: ChatEncoder, record: Unpaired) -> UnpairedExample:
    """Prompt ids and completion ids of an unpaired record (untruncated)."""
    prompt = as_messages(record.prompt, "user")
    prompt_ids = encoder.prompt_ids(prompt)
    completion = _completion_ids(encoder, prompt, prompt_ids, record.completion, "completion")
    return UnpairedExample(prompt_ids, completion, record.label)


@overload
def encode_records(
    encoder: ChatEncoder,
    records: Sequence[Preference],
    *,
    max_length: int,
    max_prompt_length: int,
    source: str | None = None,
    lines: Sequence[int] | None = None,
) -> tuple[list[PairExample], PairReport]: ...


@overload
def encode_records(
    encoder: ChatEncoder,
    records: Sequence[Unpaired],
    *,
    max_length: int,
    max_prompt_length: int,
    source: str | None = None,
    lines: Sequence[int] | None = None,
) -> tuple[list[UnpairedExample], PairReport]: ...


def encode_records(
    encoder: ChatEncoder,
    records: Sequence[Preference | Unpaired],
    *,
    max_length: int,
    max_prompt_length: int,
    source: str | None = None,
    lines: Sequence[int] | None = None,
) -> tuple[list[Any], PairReport]:
    """Encode and truncate preference or unpaired records; a DataError names the source file and line."""
    examples: list[PairExample | UnpairedExample] = []
    report = PairReport()
    prompt_length = min(max_prompt_length, max_length - 1)
    for number, record in enumerate(records, start=1):
        record = cap_record(encoder, record, max_length, prompt_length)
        try:
            whole = encode_pair(encoder, record) if isinstance(record, Preference) else encode_unpaired(encoder, record)
        except DataError as err:
            raise DataError(
                err.message, file=source, line=lines[number - 1] if lines else number, field=err.field
            ) from err
        cut: PairExample | UnpairedExample | None
        if isinstance(whole, PairExample):
            cut = truncate_pair(whole, max_length, prompt_length)
        else:
            cut = truncate_unpaired(whole, max_length, prompt_length)
        if cut is None:
            report.dropped += 1
            continue
        report.truncated += len(cut) < len(whole)
        examples.append(cut)
    report.kept = len(examples)
    return examples, report
