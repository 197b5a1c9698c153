"""Chat-template encoding: exact boundaries, assistant-only labels, BOS/EOS, truncation."""

from __future__ import annotations

import pytest

from tether.data.records import Conversation, Message
from tether.data.tokenization import IGNORE_INDEX, ChatEncoder, encode_conversations
from tether.errors import DataError


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _conv(*pairs: tuple[str, str]) -> Conversation:
    return Conversation(messages=[Message(role=r, content=c) for r, c in pairs])


def test_labels_cover_exactly_the_assistant_turns(tokenizer):
    conv = _conv(("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "See you."))
    example = ChatEncoder(tokenizer).encode(conv)
    trained = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    text = tokenizer.decode(trained)
    assert text == "Hello!<|im_end|>\nSee you.<|im_end|>\n"
    full = tokenizer.decode(example.input_ids)
    assert full == tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in conv.messages], tokenize=False
    )


def test_prompt_with_generation_prompt_is_a_prefix(tokenizer):
    encoder = ChatEncoder(tokenizer)
    conv = _conv(("user", "What is 2+2?"), ("assistant", "4"))
    prompt = encoder.prompt_ids(conv.messages[:1])
    full = encoder.encode(conv).input_ids
    assert full[: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")


def test_no_duplicated_bos_or_eos(tokenizer):
    example = ChatEncoder(tokenizer).encode(_conv(("user", "a"), ("assistant", "b")))
    ids = example.input_ids
    assert ids.count(tokenizer.bos_token_id) == 3  # one <|im_start|> per turn (system, user, assistant)
    assert ids[:2] != [tokenizer.bos_token_id] * 2
    assert ids.count(tokenizer.eos_token_id) == 3  # one <|im_end|> per turn


def test_truncation_keeps_the_start_and_drops_examples_without_labels(tokenizer):
    long = _conv(("user", "word " * 50), ("assistant", "answer " * 50))
    prompt_len = len(ChatEncoder(tokenizer).prompt_ids(long.messages[:1]))
    encoder = ChatEncoder(tokenizer, max_length=prompt_len + 10)
    example = encoder.encode(long)
    assert example is not None and len(example) == prompt_len + 10 and example.num_trained == 10
    assert example.input_ids == ChatEncoder(tokenizer).encode(long).input_ids[: prompt_len + 10]
    tight = ChatEncoder(tokenizer, max_length=prompt_len)
    assert tight.encode(long) is None
    examples, report = encode_conversations(tight, [long, _conv(("user", "a"), ("assistant", "b"))])
    assert report.dropped_truncated == 1 and report.kept == 1 and len(examples) == 1


class _RewritingTemplate:
    """Wraps a tokenizer so that the rendered prompt is not a prefix of the full conversation."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.chat_template = "x"
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text.replace("<|im_start|>assistant\n", "<|im_start|>ASSISTANT\n") if add_generation_prompt else text


def test_prompt_that_is_not_a_prefix_is_a_data_error(tokenizer):
    encoder = ChatEncoder(_RewritingTemplate(tokenizer))
    with pytest.raises(DataError, match="not a prefix") as err:
        encode_conversations(encoder, [_conv(("user", "Hi"), ("assistant", "Hello"))], source="x.jsonl")
    assert err.value.field == "messages[1]" and err.value.file == "x.jsonl" and err.value.line == 1


def test_tokenizer_without_chat_template_joins_prompt_and_completion(tokenizer):
    from copy import deepcopy

    plain = deepcopy(tokenizer)
    plain.chat_template = None
    example = ChatEncoder(plain).encode(_conv(("user", "Question"), ("assistant", "Answer")))
    assert example.input_ids[-1] == plain.eos_token_id
    assert (
        plain.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab != IGNORE_INDEX])
        == "Answer<|im_end|>"
    )
    with pytest.raises(DataError, match="no chat template"):
        ChatEncoder(plain).encode(_conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")))
