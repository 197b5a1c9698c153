"""WMDP four-option questions as lm-evaluation-harness's zero-shot ``wmdp_*`` tasks ask them."""

from __future__ import annotations

import re
from pathlib import Path

from tether.data.benchmarks.located import add_unique, located_rows, require_any
from tether.data.readers import HUB_PREFIX
from tether.data.samples import ChoiceSample
from tether.errors import DataError

WMDP_SUBJECTS = {"bio": "biology", "chem": "chemistry", "cyber": "cybersecurity"}
"""WMDP subset -> the subject named in lm-eval's task description (``lm_eval/tasks/wmdp/wmdp_*.yaml``)."""


_WMDP_LETTERS = ("A", "B", "C", "D")


def _wmdp_subject(source: str, config: str | None, subject: str | None) -> str:
    if subject is not None:
        return WMDP_SUBJECTS.get(subject, subject)
    path = Path(source.removeprefix(HUB_PREFIX))
    for name in (config or "", path.stem, path.parent.name):
        if match := re.search(r"(?<![a-z])(bio|chem|cyber)", name.lower()):
            return WMDP_SUBJECTS[match.group(1)]
    raise DataError(
        "cannot tell the WMDP subject from the name (no bio/chem/cyber in it); pass subject='bio', 'chem' or "
        "'cyber' (or config='wmdp-bio' ... for hub:cais/wmdp)",
        file=source,
    )


def read_wmdp(
    path_or_hub: str | Path,
    split: str = "test",
    *,
    config: str | None = None,
    subject: str | None = None,
) -> list[ChoiceSample]:
    """WMDP (``question``, ``choices`` of 4, ``answer`` index) as lm-eval's zero-shot ``wmdp_*`` tasks ask it.

    context = ``"The following are multiple choice questions (with answers) about {subject}.\\n\\n"`` (the
    task ``description``) + ``"{question.strip()}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:"`` (the
    ``doc_to_text`` of ``lm_eval/tasks/wmdp/_default_template_yaml``); choices = ``("A", "B", "C", "D")``,
    scored as ``" A"`` ... like lm-eval's ``doc_to_choice``; correct = ``(answer,)``.

    The subject (biology, chemistry, cybersecurity) comes from ``subject`` (``bio``/``chem``/``cyber`` or
    any text), else from ``config`` (``wmdp-bio`` for ``hub:cais/wmdp``), the file stem or its folder.
    category = ``bio``/``chem``/``cyber`` (or the subject); id = ``wmdp-<category>:<line>``; the option
    texts are in ``meta["options"]``.
    """
    source = str(path_or_hub)
    subject_text = _wmdp_subject(source, config, subject)
    category = next((key for key, text in WMDP_SUBJECTS.items() if text == subject_text), subject_text)
    samples: list[ChoiceSample] = []
    seen: dict[str, str] = {}
    for loc in located_rows(source, split=split, config=config):
        question = loc.text("question")
        options = loc.texts("choices")
        if len(options) != len(_WMDP_LETTERS):
            raise loc.error(f"expected 4 choices, got {len(options)}", "choices")
        answer = loc.index("answer", len(options))
        lines = "".join(f"\n{letter}. {text}" for letter, text in zip(_WMDP_LETTERS, options, strict=True))
        header = f"The following are multiple choice questions (with answers) about {subject_text}.\n\n"
        sample = ChoiceSample(
            id=f"wmdp-{category}:{loc.line}",
            context=f"{header}{question.strip()}{lines}\nAnswer:",
            choices=_WMDP_LETTERS,
            correct=(answer,),
            category=category,
            source=loc.source,
            meta={"subject": subject_text, "options": options},
        )
        add_unique(samples, loc, sample, seen, "id")
    return require_any(samples, path_or_hub, "questions")
