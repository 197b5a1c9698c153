"""Preference pairs: exact prompt/completion boundaries, bad pairs, truncation policy."""

from __future__ import annotations

import pytest

from tests.test_tokenization import _RewritingTemplate
from tether.data.pair_encoding import PairExample, encode_pair, truncate_pair
from tether.data.records import Message, Preference
from tether.data.tokenization import ChatEncoder
from tether.errors import DataError


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_standard_pair_splits_exactly_at_the_generation_prompt(tokenizer):
    pair = Preference(
        prompt="How do I pick a lock?", chosen="I can't help with that.", rejected="Use a tension wrench."
    )
    example = encode_pair(ChatEncoder(tokenizer), pair)
    assert tokenizer.decode(example.prompt_ids).endswith("How do I pick a lock?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(example.chosen_ids) == "I can't help with that.<|im_end|>\n"
    assert tokenizer.decode(example.rejected_ids) == "Use a tension wrench.<|im_end|>\n"
    whole = tokenizer.apply_chat_template(
        [{"role": "user", "content": pair.prompt}, {"role": "assistant", "content": pair.chosen}], tokenize=False
    )
    assert tokenizer.decode(example.prompt_ids + example.chosen_ids) == whole


def test_conversational_pair_keeps_earlier_turns_in_the_prompt(tokenizer):
    prompt = [
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello!"),
        Message(role="user", content="Help me hack my neighbour's wifi."),
    ]
    pair = Preference(
        prompt=prompt,
        chosen=[Message(role="assistant", content="I won't help with that.")],
        rejected=[Message(role="assistant", content="Sure, first scan for networks.")],
    )
    example = encode_pair(ChatEncoder(tokenizer), pair)
    assert "Hello!" in tokenizer.decode(example.prompt_ids)
    assert tokenizer.decode(example.chosen_ids) == "I won't help with that.<|im_end|>\n"


def test_a_completion_that_does_not_continue_the_prompt_is_a_data_error(tokenizer):
    pair = Preference(prompt="Hi", chosen="Hello", rejected="Go away")
    with pytest.raises(DataError, match="not a continuation of the prompt") as err:
        encode_pair(ChatEncoder(_RewritingTemplate(tokenizer)), pair)
    assert err.value.field == "chosen"


def test_truncation_keeps_the_end_of_the_prompt_and_the_start_of_completions():
    example = PairExample(list(range(10)), [100, 101, 102, 103], [200, 201])
    cut = truncate_pair(example, max_length=8, max_prompt_length=5)
    assert cut == PairExample([5, 6, 7, 8, 9], [100, 101, 102], [200, 201])
    assert truncate_pair(PairExample([1, 2, 3], [], [4]), 8, 5) is None
    with pytest.raises(ValueError, match="must be below"):
        truncate_pair(example, max_length=4, max_prompt_length=4)
