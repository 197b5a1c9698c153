"""Readers from the common public safety-eval formats to :mod:`tether.data.samples`.

Each reader returns a list of samples or raises :class:`~tether.errors.DataError` naming the file, the line
(or row) and the field, e.g. ``harmbench.csv:7: field 'SemanticCategory': missing``; none returns partial
data. Files are read with :func:`tether.data.readers.iter_rows` (JSONL/JSON/CSV/Parquet, ``hub:NAME``), so
line numbers follow its rules: physical lines for JSONL and CSV (the header is line 1), the line an object
starts on for JSON, the 1-based row for Parquet and hub datasets. Every sample's ``source`` is that
``file:line`` and its ``id`` is unique within the returned list.

Multiple-choice contexts follow lm-evaluation-harness where it has the task (TruthfulQA, WMDP) so that
accuracies are comparable; the scorer appends ``" " + choice`` to the context, as lm-eval's default
``target_delimiter`` does.
"""

from tether.data.benchmarks.bbq import (
    BBQ_TEMPLATE,
    LM_EVAL_BBQ_TEMPLATE,
    LM_EVAL_UNKNOWN_RESPONSES,
    lm_eval_bbq,
    read_bbq,
)
from tether.data.benchmarks.harmful import read_harmful_prompts, read_xstest
from tether.data.benchmarks.located import UNCATEGORISED
from tether.data.benchmarks.qa import read_facts_qa, read_qa
from tether.data.benchmarks.toxicity import read_toxicity_prompts
from tether.data.benchmarks.truthfulqa import TRUTHFULQA_PREAMBLE, read_truthfulqa
from tether.data.benchmarks.wmdp import WMDP_SUBJECTS, read_wmdp

__all__ = [
    "BBQ_TEMPLATE",
    "LM_EVAL_BBQ_TEMPLATE",
    "LM_EVAL_UNKNOWN_RESPONSES",
    "TRUTHFULQA_PREAMBLE",
    "UNCATEGORISED",
    "WMDP_SUBJECTS",
    "lm_eval_bbq",
    "read_bbq",
    "read_facts_qa",
    "read_harmful_prompts",
    "read_qa",
    "read_toxicity_prompts",
    "read_truthfulqa",
    "read_wmdp",
    "read_xstest",
]
