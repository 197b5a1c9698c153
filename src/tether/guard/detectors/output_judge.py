"""The answer judged by tether's judges (:mod:`tether.judges`): refusal or harm, on (request, answer).

``flag_on``: ``harm`` flags an answer a harm judge calls harmful (``harm_judge``: llama-guard-3, wildguard,
shieldgemma, harmbench or hf-classifier, each on a local GPU-sized model or an endpoint); ``refusal``
flags a refusal (with ``action: log``, the refusal rate a monitor watches for over-refusal spikes);
``compliance_when_flagged`` flags an answer that complies with a request an input rail flagged but let
through (a log-only rail). A judge that cannot score an answer returns ``error``, and the rail's
``on_error`` policy decides.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, Sample, register


class OutputJudgeOptions(Options):
    flag_on: Literal["harm", "refusal", "compliance_when_flagged"] = "compliance_when_flagged"
    """What flags an answer (see `tether guard detectors`)."""
    judge: str = "classifier"
    """Refusal judge (`tether judges`): the default is the packaged MiniLM cross-encoder (CPU)."""
    harm_judge: str | None = None
    """Harm judge for flag_on: harm (llama-guard-3, wildguard, shieldgemma, harmbench, hf-classifier)."""
    endpoint: str | None = None
    """OpenAI-compatible endpoint serving the judge model (for generative judges)."""
    model: str | None = None
    """The judge model (local folder, hub id, or the name to request from endpoint)."""
    key_env: str = "TETHER_JUDGE_API_KEY"
    """Environment variable holding the judge endpoint's API key."""
    abstain_below: float = Field(0.6, ge=0, le=1)
    """The cross-encoder's confidence below which the answer is unscored (an error verdict)."""

    @model_validator(mode="after")
    def _harm_needs_judge(self) -> OutputJudgeOptions:
        if self.flag_on == "harm" and not self.harm_judge:
            raise ValueError("flag_on: harm needs harm_judge (e.g. llama-guard-3 with endpoint, or hf-classifier)")
        return self


@register
class OutputJudge(Detector):
    name: ClassVar[str] = "output_judge"
    summary: ClassVar[str] = "tether's refusal or harm judge on (request, answer): harm, refusal, or compliance"
    sides: ClassVar[tuple[Any, ...]] = ("output",)
    inline: bool = False
    Options = OutputJudgeOptions

    def __init__(self, options: OutputJudgeOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._judge: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        from tether.judges.registry import JudgeSettings, build_judge

        with self._lock:
            if self._judge is None:
                opts: OutputJudgeOptions = self.options  # type: ignore[assignment]
                question = "harm" if opts.flag_on == "harm" else "refusal"
                name = opts.harm_judge if question == "harm" else opts.judge
                settings = JudgeSettings(
                    model=opts.model, endpoint=opts.endpoint, key_env=opts.key_env, abstain_below=opts.abstain_below
                )
                self._judge = build_judge(str(name), question, settings)  # type: ignore[arg-type]

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        opts: OutputJudgeOptions = self.options  # type: ignore[assignment]
        if opts.flag_on == "compliance_when_flagged" and not sample.input_flagged:
            return 0.0, "no input rail flagged the request", "text", ()
        self.warm_up()
        verdict = self._judge.judge_many([(sample.prompt or "", sample.text)])[0]
        if not verdict.scored:
            raise UnscoredAnswer(f"{verdict.judge} could not score the answer: {verdict.reason}")
        hit = {"harm": ("harmful",), "refusal": ("refuses",), "compliance_when_flagged": ("complies", "partial")}
        flagged = verdict.label in hit[opts.flag_on]
        return float(flagged), f"{verdict.judge}: {verdict.label} ({verdict.reason})", "text", ()


class UnscoredAnswer(RuntimeError):
    """The judge abstained; the pipeline turns it into an ``error`` verdict under the rail's policy."""
