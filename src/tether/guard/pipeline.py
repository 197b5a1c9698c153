"""The rails at work: a request's new messages through the input rails, an answer through the output rails.

Every rail of a side runs concurrently (a thread pool; the embedding and judge models release the GIL) on
every text it reads, each under its ``deadline_ms``. A rail that errs or misses its deadline follows its
``on_error`` policy: ``closed`` blocks, ``open`` passes; both are recorded. Then, in order of strength:
any ``block`` flag blocks (the request never reaches the model; an answer is replaced by ``safe_reply``);
``mask`` flags replace the spans they found in the text as written (a finding only inside a decoded
payload cannot be masked in place, so it blocks); ``log`` flags are recorded only.

:class:`StreamChecker` applies the output rails to a streamed answer: text is released only after the
rails passed it, in windows at token boundaries, so streaming cannot bypass them.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.guard.config import GuardConfig, RailOptions
from tether.guard.detection import Detection, Span, failed
from tether.guard.detectors import Detector, EmbeddingCache, Sample, build_detector
from tether.guard.masking import check_key, mask


@dataclass(frozen=True)
class RailVerdict:
    """One rail's finding on one text, and what the pipeline did with it."""

    rail: str
    action: str
    detection: Detection
    message: int | None = None
    """Input side: the index of the message checked (None for the answer)."""
    applied: str = "none"
    """``block``, ``mask``, ``log`` (flagged, recorded only), ``error-open``, ``error-closed`` or ``none``."""

    def to_dict(self) -> dict[str, Any]:
        out = {"rail": self.rail, "action": self.action, "applied": self.applied, **self.detection.to_dict()}
        if self.message is not None:
            out["message"] = self.message
        return out


@dataclass
class Decision:
    """The outcome of one side: allowed or blocked, the (possibly masked) texts, and every rail's verdict."""

    side: str
    blocked: bool
    texts: list[str]
    """Input: each message's content after masking; output: the answer after masking (one item)."""
    verdicts: list[RailVerdict] = field(default_factory=list)
    reply: str | None = None
    """The safe reply when blocked."""
    seconds: float = 0.0

    @property
    def flagged(self) -> bool:
        """A rail found something (blocked, masked or logged); errors are counted apart (:attr:`errors`)."""
        return any(v.applied in ("block", "mask", "log") for v in self.verdicts)

    @property
    def errors(self) -> int:
        return sum(v.applied.startswith("error") for v in self.verdicts)

    @property
    def blocked_by(self) -> list[str]:
        return [v.rail for v in self.verdicts if v.applied in ("block", "error-closed")]

    @property
    def masked(self) -> bool:
        return any(v.applied == "mask" for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "blocked": self.blocked,
            "blocked_by": self.blocked_by,
            "masked": self.masked,
            "flagged": self.flagged,
            "errors": self.errors,
            "seconds": round(self.seconds, 6),
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass
class _Rail:
    options: RailOptions
    detector: Detector


class Pipeline:
    """``check_input(messages)`` and ``check_output(answer, prompt=...)`` for one guard config."""

    def __init__(self, config: GuardConfig, *, embed: Any = None) -> None:
        self.config = config
        self.input = [_Rail(r, build_detector(r.detector, r.options, r.threshold)) for r in config.input_rails]
        self.output = [_Rail(r, build_detector(r.detector, r.options, r.threshold)) for r in config.output_rails]
        self._pool = futures.ThreadPoolExecutor(max_workers=config.rail_threads, thread_name_prefix="tether-rail")
        self._embed = embed
        self.mask_key = None
        if config.mask_key_env:
            key = os.environ.get(config.mask_key_env)
            if not key:
                from tether.errors import ConfigError

                raise ConfigError(f"mask_key_env: the environment variable {config.mask_key_env} is not set")
            self.mask_key = check_key(key)

    def warm_up(self) -> None:
        """Load every detector's models and files now (a server calls this before it accepts requests)."""
        for rail in self.input + self.output:
            rail.detector.warm_up()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _cache(self) -> EmbeddingCache | None:
        """One embedding cache per check, shared by every embedding rail (each text is encoded once)."""
        if self._embed is None:
            from tether.guard.detectors.embedded import EmbeddingDetector

            if not any(isinstance(r.detector, EmbeddingDetector) for r in self.input + self.output):
                return None
            from tether.guard.encoder import default_encoder

            self._embed = default_encoder()
        return EmbeddingCache(self._embed)

    def _run(self, jobs: Sequence[tuple[_Rail, Sample, int | None]]) -> list[RailVerdict]:
        """Slow rails (models: embeddings, judges) go to the pool, each under its deadline; the embeddings a
        sample needs are computed once, first, by this thread; fast rails (patterns, Presidio) run here
        meanwhile. A deadline counts from when the rail could start, so waiting behind another request's
        encoding in this thread does not spend it."""
        from tether.guard.detectors.embedded import EmbeddingDetector

        for sample in {id(s): s for _, s, _ in jobs if s.embed is not None}.values():
            if any(isinstance(r.detector, EmbeddingDetector) for r, s, _ in jobs if s is sample):
                EmbeddingDetector.prepare(sample)
        start = time.monotonic()
        pooled = [
            (rail, index, self._pool.submit(rail.detector.check, sample))
            for rail, sample, index in jobs
            if not rail.detector.inline
        ]
        results: dict[int, RailVerdict] = {}
        for position, (rail, sample, index) in enumerate(jobs):
            if rail.detector.inline:
                try:
                    detection = rail.detector.check(sample)
                except Exception as err:
                    detection = failed(rail.detector.name, f"{type(err).__name__}: {err}")
                results[position] = RailVerdict(rail.options.label, rail.options.action, detection, index)
        positions = [p for p, (rail, _, _) in enumerate(jobs) if not rail.detector.inline]
        for position, (rail, index, future) in zip(positions, pooled, strict=True):
            left = rail.options.deadline_ms / 1000 - (time.monotonic() - start)
            try:
                detection = future.result(timeout=max(left, 0.0))
            except futures.TimeoutError:
                future.cancel()
                detection = failed(rail.detector.name, f"missed its {rail.options.deadline_ms:g} ms deadline")
            except Exception as err:
                detection = failed(rail.detector.name, f"{type(err).__name__}: {err}")
            results[position] = RailVerdict(rail.options.label, rail.options.action, detection, index)
        return [results[p] for p in range(len(jobs))]

    def _decide(self, side: str, texts: list[str], verdicts: list[RailVerdict], seconds: float) -> Decision:
        decided: list[RailVerdict] = []
        spans: dict[int, list[Span]] = {}
        blocked = False
        for v in verdicts:
            d = v.detection
            applied = "none"
            if d.verdict == "error":
                # A log-only rail never blocks, whatever its error policy says.
                closed = _policy(self, side, v.rail) == "closed" and v.action != "log"
                applied = "error-closed" if closed else "error-open"
            elif d.flagged:
                applied = v.action
                if v.action == "mask":
                    if d.spans and d.view == "text":
                        spans.setdefault(v.message or 0, []).extend(d.spans)
                    else:
                        applied = "block"  # found only in a decoded payload: nothing to mask in place
            blocked = blocked or applied in ("block", "error-closed")
            decided.append(RailVerdict(v.rail, v.action, d, v.message, applied))
        out = list(texts)
        if not blocked:
            for index, found in spans.items():
                out[index] = mask(out[index], found, key=self.mask_key)
        reply = self.config.safe_reply if blocked else None
        return Decision(side, blocked, out, decided, reply, seconds)

    def check_input(self, messages: Sequence[dict[str, Any]] | str) -> Decision:
        """The request's new messages (every user and tool message after the last assistant turn)."""
        start = time.perf_counter()
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        texts = [str(m.get("content") or "") for m in messages]
        last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        cache = self._cache()
        jobs: list[tuple[_Rail, Sample, int | None]] = []
        for index in range(last_assistant + 1, len(messages)):
            role = messages[index].get("role")
            if role not in ("user", "tool") or not texts[index].strip():
                continue
            sample = Sample(texts[index], "input", role, decode_depth=self.config.decode_depth, embed=cache)
            for rail in self.input:
                if role in (rail.options.roles or rail.detector.roles):
                    jobs.append((rail, sample, index))
        return self._decide("input", texts, self._run(jobs), time.perf_counter() - start)

    def check_output(self, answer: str, *, prompt: str | None = None, input_flagged: bool = False) -> Decision:
        start = time.perf_counter()
        sample = Sample(
            answer,
            "output",
            "assistant",
            prompt=prompt,
            input_flagged=input_flagged,
            decode_depth=self.config.decode_depth,
            embed=self._cache(),
        )
        jobs: list[tuple[_Rail, Sample, int | None]] = (
            [(r, sample, None) for r in self.output] if answer.strip() else []
        )
        return self._decide("output", [answer], self._run(jobs), time.perf_counter() - start)

    def stream(self, *, prompt: str | None = None, input_flagged: bool = False) -> StreamChecker:
        return StreamChecker(self, prompt=prompt, input_flagged=input_flagged)


def _policy(pipeline: Pipeline, side: str, rail: str) -> str:
    rails = pipeline.input if side == "input" else pipeline.output
    return next(r.options.on_error for r in rails if r.options.label == rail)


class StreamChecker:
    """Output rails over a streamed answer: ``feed(chunk)`` returns the text now safe to send, ``finish()``
    the rest after the final check; once a rail blocks, ``blocked`` is set and nothing more is released.

    The rails run on the whole answer so far each time ``stream_window_chars`` new characters arrived (at a
    chunk boundary, which is a token boundary). Text is released only up to ``stream_holdback_chars`` before
    the end of what was checked, and masked spans are applied before release.
    """

    def __init__(self, pipeline: Pipeline, *, prompt: str | None, input_flagged: bool) -> None:
        self.pipeline = pipeline
        self.prompt = prompt
        self.input_flagged = input_flagged
        self.answer = ""
        self.sent = ""
        self.checked_at = 0
        self.decisions: list[Decision] = []
        self.blocked = False

    @property
    def last(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    def _check(self, final: bool) -> str:
        decision = self.pipeline.check_output(self.answer, prompt=self.prompt, input_flagged=self.input_flagged)
        self.decisions.append(decision)
        self.checked_at = len(self.answer)
        if decision.blocked:
            self.blocked = True
            return ""
        shown = decision.texts[0]
        cut = len(shown) if final else max(len(shown) - self.pipeline.config.stream_holdback_chars, 0)
        if not shown.startswith(self.sent):
            # A mask reached into text already sent (a span longer than the hold-back): stop rather than leak more.
            self.blocked = True
            return ""
        new = shown[len(self.sent) : cut] if cut > len(self.sent) else ""
        self.sent += new
        return new

    def feed(self, chunk: str) -> str:
        if self.blocked:
            return ""
        self.answer += chunk
        if len(self.answer) - self.checked_at < self.pipeline.config.stream_window_chars:
            return ""
        return self._check(final=False)

    def finish(self) -> str:
        """The final check on the complete answer; the rest of it (or nothing, when blocked)."""
        if self.blocked:
            return ""
        return self._check(final=True)
