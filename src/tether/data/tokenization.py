"""Tokenization through the model's chat template with exact prompt/completion boundaries.

For every assistant turn ``i`` the template is rendered twice: the conversation before the turn with
the generation prompt (the *prompt*), and the conversation through the turn (the *full* text). The
prompt's tokens must be a prefix of the full tokens, otherwise the boundary between what the model
reads and what it is trained to write would be ambiguous and we raise a DataError. The tokens between
the two are the assistant's, and only those carry a loss.

Special tokens: the rendered text is tokenized with ``add_special_tokens=False``; a BOS token is
prepended only if the tokenizer normally adds one and the template did not already write it, so a
sequence never starts with two BOS tokens. The chat template writes its own end-of-turn token; without
a chat template, prompt and completion are joined and a single EOS is appended.

Truncation policy: sequences longer than ``max_length`` keep their first ``max_length`` tokens (the
prompt side is preserved, the end of the completion is cut); an example left with no trained token is
dropped and counted by the caller (``encode`` returns None).

Size cap: before a text is rendered and tokenized, any part of it that truncation could never keep is cut
(:meth:`ChatEncoder.char_cap`), so one huge record costs what ``max_length`` tokens cost, not its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tether.data.records import Conversation, Message, as_messages
from tether.errors import DataError

IGNORE_INDEX = -100
Keep = Literal["start", "end"]


def longest_token_chars(tokenizer: Any) -> int:
    """Characters the longest vocabulary entry can stand for (a byte-level entry's length counts its bytes,
    which is at least its characters); 64 when the tokenizer does not list its vocabulary."""
    try:
        return max(map(len, tokenizer.get_vocab()), default=64)
    except (AttributeError, NotImplementedError, TypeError):
        return 64


def cap_text(text: str, chars: int, keep: Keep) -> str:
    """``text`` cut to its first (``keep="start"``) or last (``"end"``) ``chars`` characters."""
    if len(text) <= chars:
        return text
    return text[:chars] if keep == "start" else text[-chars:]


def cap_messages(messages: list[Message], chars: int, keep: Keep) -> list[Message]:
    """Every message's content capped with :func:`cap_text` (messages within the cap are kept as they are)."""
    return [
        m if len(m.content) <= chars else Message(role=m.role, content=cap_text(m.content, chars, keep))
        for m in messages
    ]


@dataclass
class TokenizedExample:
    """Token ids of one example and its labels (``IGNORE_INDEX`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


def first_difference(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


class ChatEncoder:
    """Turns conversations into token ids and assistant-only labels for one tokenizer."""

    def __init__(self, tokenizer: Any, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        start = with_special.index(plain[0]) if plain and plain[0] in with_special else 0
        self._prefix_ids: list[int] = list(with_special[:start])
        self.token_chars = longest_token_chars(tokenizer)

    def char_cap(self, tokens: int) -> int:
        """Characters of one message that surely hold the ``tokens`` tokens truncation may keep of it.

        A token never spans more characters than the longest vocabulary entry (L, 81 for SmolLM2: a run of
        spaces), so the first (or last) n tokens of a text lie within its first (last) n L characters. The cap
        is twice that, so the word at the cut is far from every kept token and the kept tokens are exactly
        those of the uncut text (unless a single word is longer than n L characters). Records as long as
        the cap are rare; a 50 MB field is cut to 2 n L characters before the template and tokenizer see it.
        """
        return 2 * tokens * self.token_chars

    # -- rendering ---------------------------------------------------------------------------------
    def render_ids(self, messages: list[Message], *, add_generation_prompt: bool) -> list[int]:
        """Token ids of the chat-templated ``messages`` (with a single leading BOS where expected)."""
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(dicts, tokenize=False, add_generation_prompt=add_generation_prompt)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if self._prefix_ids and ids[: len(self._prefix_ids)] != self._prefix_ids:
            ids = self._prefix_ids + ids
        return ids

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """Ids the model reads before it answers: the conversation plus the generation prompt."""
        if self.has_template:
            return self.render_ids(messages, add_generation_prompt=True)
        return self._plain_prompt(messages)

    def _plain_prompt(self, messages: list[Message]) -> list[int]:
        if len(messages) != 1 or messages[0].role != "user":
            raise DataError(
                "this tokenizer has no chat template, so only single-turn prompt/completion data "
                "can be encoded; use a chat model or give plain prompt/completion records",
                field="messages",
            )
        return self._prefix_ids + list(self.tokenizer(messages[0].content, add_special_tokens=False)["input_ids"])

    # -- encoding ----------------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> TokenizedExample | None:
        """Ids and labels with the loss on every assistant turn; None if truncation leaves no label.

        With ``max_length`` every message is first capped to :meth:`char_cap` characters (its start kept,
        as truncation keeps the conversation's first tokens)."""
        if self.max_length is None:
            return self._truncate(self.encode_untruncated(conversation))
        messages = cap_messages(conversation.messages, self.char_cap(self.max_length), "start")
        encode = self._encode_chat if self.has_template else self._encode_plain
        return self._truncate(encode(messages))

    def encode_untruncated(self, conversation: Conversation) -> TokenizedExample:
        """Ids and labels before the truncation policy is applied."""
        if self.has_template:
            return self._encode_chat(conversation.messages)
        return self._encode_plain(conversation.messages)

    def _encode_chat(self, messages: list[Message]) -> TokenizedExample:
        full = self.render_ids(messages, add_generation_prompt=False)
        labels = [IGNORE_INDEX] * len(full)
        for i, message in enumerate(messages):
            if message.role != "assistant":
                continue
            prompt = self.render_ids(messages[:i], add_generation_prompt=True)
            through = self.render_ids(messages[: i + 1], add_generation_prompt=False)
            if through[: len(prompt)] != prompt:
                at = first_difference(prompt, through)
                raise DataError(
                    f"the chat template's prompt is not a prefix of the conversation through this turn "
                    f"(tokens differ at position {at}); the prompt/completion boundary is ambiguous",
                    field=f"messages[{i}]",
                )
            if full[: len(through)] != through:
                at = first_difference(through, full)
                raise DataError(
                    f"rendering this turn is not a prefix of the whole conversation (tokens differ at "
                    f"position {at}); the template rewrites earlier turns",
                    field=f"messages[{i}]",
                )
            labels[len(prompt) : len(through)] = full[len(prompt) : len(through)]
        return TokenizedExample(full, labels)

    def _encode_plain(self, messages: list[Message]) -> TokenizedExample:
        if len(messages) != 2 or messages[1].role != "assistant":
            raise DataError(
                "this tokenizer has no chat template: only a user message followed by one assistant "
                "message can be encoded",
                field="messages",
            )
        prompt = self._plain_prompt(messages[:1])
        completion = list(self.tokenizer(messages[1].content, add_special_tokens=False)["input_ids"])
        eos = self.tokenizer.eos_token_id
        if eos is not None and (not completion or completion[-1] != eos):
            completion.append(eos)
        return TokenizedExample(prompt + completion, [IGNORE_INDEX] * len(prompt) + completion)

    def _truncate(self, example: TokenizedExample) -> TokenizedExample | None:
        if self.max_length is not None and len(example) > self.max_length:
            example = TokenizedExample(example.input_ids[: self.max_length], example.labels[: self.max_length])
        return example if example.num_trained > 0 else None


@dataclass
class EncodeReport:
    """What happened to the records during encoding."""

    kept: int = 0
    dropped_truncated: int = 0
    truncated: int = 0


def encode_conversations(
    encoder: ChatEncoder,
    records: list[Conversation],
    *,
    source: str | None = None,
    lines: list[int] | None = None,
) -> tuple[list[TokenizedExample], EncodeReport]:
    """Encode every record; DataErrors gain the source and the record's line (``lines``, from the
    reader's report; else the 1-based record number)."""
    examples: list[TokenizedExample] = []
    report = EncodeReport()
    for number, record in enumerate(records, start=1):
        try:
            example = encoder.encode(record)
        except DataError as err:
            line = lines[number - 1] if lines else number
            raise DataError(err.message, file=source, line=line, field=err.field) from err
        if example is None:
            report.dropped_truncated += 1
            continue
        if encoder.max_length is not None and len(example) == encoder.max_length:
            report.truncated += 1
        examples.append(example)
    report.kept = len(examples)
    return examples, report


def token_lengths(encoder: ChatEncoder, records: list[Any], *, source: str | None = None) -> list[int]:
    """Untruncated token length of each record (for a preference pair, its longer side)."""
    whole = ChatEncoder(encoder.tokenizer)
    lengths = []
    for number, record in enumerate(records, start=1):
        try:
            if isinstance(record, Conversation):
                lengths.append(len(whole.encode_untruncated(record)))
                continue
            prompt = as_messages(record.prompt, "user")
            sides = [record.chosen, record.rejected] if hasattr(record, "chosen") else [record.completion]
            pairs = [Conversation(messages=prompt + as_messages(side, "assistant")) for side in sides]
            lengths.append(max(len(whole.encode_untruncated(pair)) for pair in pairs))
        except DataError as err:
            raise DataError(err.message, file=source, line=number, field=err.field) from err
    return lengths
