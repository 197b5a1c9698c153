"""The guard's YAML file (``command: guard``): input rails, output rails, and what happens when one fires.

It lives beside the detectors rather than in :mod:`tether.config` because each rail's ``options:`` is
checked against its detector's own options model, which the detector registry owns. ``tether validate``
checks a guard file like any other config; each ``tether guard`` command reads the same file and adds its
own flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tether.config.evaluation import endpoint_url
from tether.config.options import Options
from tether.guard.detectors import DETECTORS, check_options
from tether.models.embedded import DEFAULT_MODEL

Action = Literal["block", "mask", "log"]
FailPolicy = Literal["open", "closed"]


class RailOptions(Options):
    detector: str
    """A detector from `tether guard detectors`."""
    name: str | None = None
    """The rail's name in verdicts, logs and metrics (default: the detector's name)."""
    action: Action = "block"
    """block: refuse with safe_reply; mask: replace the found spans (detectors that find spans: pii, secrets,
    blocklist); log: only record the verdict."""
    threshold: float | None = Field(None, ge=0, le=1)
    """Score at which the detector flags (default: its own, or the one `tether guard train` calibrated)."""
    deadline_ms: float = Field(250.0, gt=0)
    """Longest the detector may take; past it the rail counts as an error."""
    on_error: FailPolicy = "closed"
    """When the detector errs or misses its deadline: closed blocks the request (safe), open lets it pass
    (available); either way the error is recorded."""
    roles: list[Literal["user", "tool"]] | None = None
    """Input rails: whose new messages it reads (default: the detector's own; tool covers retrieved documents)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """The detector's options (`tether guard detectors --options NAME` lists them)."""

    @field_validator("detector")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {name!r}; registered: {', '.join(DETECTORS.names())}")
        return name

    @field_validator("options")
    @classmethod
    def _detector_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("detector") in DETECTORS:
            check_options(info.data["detector"], options)
        return options

    @model_validator(mode="after")
    def _fits_detector(self) -> RailOptions:
        if self.action == "mask" and not DETECTORS.get(self.detector).finds_spans:
            spans = ", ".join(n for n in DETECTORS.names() if DETECTORS.get(n).finds_spans)
            raise ValueError(f"action mask needs a detector that finds spans ({spans}); {self.detector} does not")
        return self

    @property
    def label(self) -> str:
        return self.name or self.detector


class MonitorOptions(Options):
    """Alerting thresholds of the server's monitor (:mod:`tether.guard.monitor` explains each)."""

    window_seconds: float = Field(300.0, gt=0)
    """The recent window whose block and refusal rates are tested."""
    baseline_seconds: float = Field(3600.0, gt=0)
    """The period before it that gives the baseline rates."""
    check_seconds: float = Field(30.0, gt=0)
    """How often the rates are tested."""
    min_requests: int = Field(20, ge=1)
    """Fewest requests in the window for a rate test."""
    z: float = Field(3.0, gt=0)
    """z score of the one-sided two-proportion test that counts as a spike."""
    min_increase: float = Field(0.1, ge=0, le=1)
    """Smallest absolute rise of a rate that can alert."""
    probe_blocks: int = Field(10, ge=1)
    """Blocked requests of one key within probe_seconds that mark it as probing."""
    probe_seconds: float = Field(300.0, gt=0)
    """The probing window (and how long a probing key stays rate-limited)."""
    rate_limit: bool = True
    """Answer a probing key with HTTP 429 until its window passes."""
    burst_size: int = Field(5, ge=2)
    """Near-duplicate blocked prompts within burst_seconds that alert."""
    burst_seconds: float = Field(600.0, gt=0)
    """The near-duplicate window."""
    burst_similarity: float = Field(0.8, gt=0, le=1)
    """Word 3-gram Jaccard similarity at which two prompts are near-duplicates."""
    webhook: str | None = None
    """A URL to POST each alert to as JSON (e.g. a Slack or PagerDuty bridge)."""

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return endpoint_url(value)


class GuardConfig(Options):
    """Rails around a model: checked before the request reaches it and before its answer reaches the user."""

    command: ClassVar[str] = "guard"
    file_only: ClassVar[frozenset[str]] = frozenset({"input_rails", "output_rails", "monitor"})

    input_rails: list[RailOptions] = Field(default_factory=list)
    """Rails on the request (each new user message, and tool results for rails that read them)."""
    output_rails: list[RailOptions] = Field(default_factory=list)
    """Rails on the answer, streamed answers included (checked in windows before any text is sent)."""
    safe_reply: str = "I can't help with that request."
    """What a blocked request or answer gets instead."""
    decode_depth: int = Field(2, ge=0, le=4)
    """How many layers of encoding (base64 inside ROT13 ...) detectors look through."""
    mask_key_env: str | None = None
    """Environment variable with a 16/24/32-byte key: masked spans are then encrypted (reversible with
    `tether guard unmask`) instead of replaced by <ENTITY>."""
    stream_window_chars: int = Field(160, ge=16)
    """Streaming: output rails re-check the answer each time this many new characters arrived."""
    stream_holdback_chars: int = Field(48, ge=0)
    """Streaming: the newest characters kept back until the next check, so a span (an e-mail, a key) split
    across windows is masked before any of it is sent."""
    rail_threads: int = Field(8, ge=1)
    """Threads that run detectors concurrently (per server worker)."""

    # Serving (`tether guard serve`) and the store.
    upstream_model: str = DEFAULT_MODEL
    """The model behind the guard: an embedded name (the default runs with nothing else installed), a local
    folder or hub id; with upstream_endpoint, the model name to request."""
    upstream_endpoint: str | None = None
    """An OpenAI-compatible base URL to forward to instead of loading upstream_model here."""
    upstream_key_env: str = "TETHER_UPSTREAM_API_KEY"
    """Environment variable holding the upstream endpoint's API key."""
    upstream_timeout: float = Field(60.0, gt=0)
    """Seconds the upstream may take; past it the client gets HTTP 504."""
    upstream_retries: int = Field(1, ge=0)
    """Retries of a failed upstream request (connection errors, HTTP 408/409/429/5xx) before HTTP 502."""
    max_new_tokens: int = Field(256, ge=1)
    """Answer length when a request does not say (max_tokens), and the cap of local generation."""
    database: str = "sqlite:///runs/guard/guard.db"
    """SQLAlchemy URL of the store: SQLite by default, postgresql+psycopg://... for several workers or hosts."""
    redact: bool = True
    """Mask PII and secrets in everything written to the store, whatever the rails did."""
    retention_days: float | None = Field(30.0, gt=0)
    """Delete stored interactions older than this (checked at start and hourly); none keeps them."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 for every interface)."""
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    """Server processes; more than one needs a database they can share (PostgreSQL)."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Larger request bodies get HTTP 413."""
    monitor: MonitorOptions = Field(default_factory=MonitorOptions)
    """Alerts on rate spikes, probing keys and near-duplicate attack bursts."""

    @field_validator("upstream_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return endpoint_url(value)

    @model_validator(mode="after")
    def _sides(self) -> GuardConfig:
        for side, rails in (("input", self.input_rails), ("output", self.output_rails)):
            names = [r.label for r in rails]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup:
                raise ValueError(f"{side}_rails: two rails named {dup!r}; give one a name")
            for rail in rails:
                sides = DETECTORS.get(rail.detector).sides
                if side not in sides:
                    raise ValueError(f"{side}_rails: {rail.detector} checks {' and '.join(sides)} only")
        return self


class GuardCheckConfig(GuardConfig):
    """Run a guard file's rails over a file of texts and write each verdict, score and reason."""

    command: ClassVar[str] = "guard check"
    reads_commands: ClassVar[tuple[str, ...]] = ("guard",)

    input: Path
    """Texts to check: JSONL, JSON, CSV, Parquet or TXT (a row's prompt/instruction/text field)."""
    output: Path
    """Where to write one JSON line per row: the decision and every rail's verdict, score and reason."""
    side: Literal["input", "output"] = "input"
    """input: the request rails on each text; output: the answer rails on each row's response (its prompt as
    the request)."""
    text_field: str | None = None
    """The field holding the text (default: prompt, instruction, text, goal or behavior; response for
    --side output)."""


class GuardTrainConfig(Options):
    """Train the guard's harmful-request classifier and jailbreak index, with thresholds calibrated on held-out data."""

    command: ClassVar[str] = "guard train"

    harmful: list[str]
    """Files of harmful requests (JSON/JSONL/CSV/TXT; e.g. ../shared/data/instructions/harmful_train.json)."""
    harmless: list[str]
    """Files of harmless requests (e.g. instructions/harmless_train.json); include safe prompts that merely
    sound dangerous, or the classifier will block them."""
    jailbreaks: list[str] = Field(default_factory=list)
    """Files of known jailbreak prompts for the similarity index (none: no index is built)."""
    out: Path
    """Folder to write the artifacts, the report and a guard.yaml into."""
    fpr: float = Field(0.01, gt=0, lt=0.5)
    """Target false-positive rate on harmless calibration texts of the trained rails together: each of the
    k rails is calibrated to fpr / k (a union bound), so together they block at most fpr."""
    calibration_share: float = Field(0.25, gt=0, lt=1)
    """Share of each class held out of training to calibrate and measure."""
    max_harmless: int = Field(6000, ge=10)
    """Use at most this many harmless texts (a stable sample), to keep training minutes short."""
    c: float = Field(1.0, gt=0)
    """Inverse L2 strength of the logistic regression."""
    balance_files: bool = True
    """Give each file the same total weight within its class, so a small file of hard cases (safe requests
    that sound dangerous) counts as much as a large general one."""
    progress: bool = True
    """Show progress (a bar on a terminal, lines in a log file)."""


class GuardEvalConfig(GuardConfig):
    """Measure a guard file's input rails on labelled texts: recall at fixed false-positive rates, ROC plots."""

    command: ClassVar[str] = "guard eval"
    reads_commands: ClassVar[tuple[str, ...]] = ("guard",)

    positive: list[str]
    """Files of texts the rails should flag (FILE or FILE#field=value)."""
    negative: list[str]
    """Files of texts they should let through."""
    out: Path
    """Folder for eval.json, rows.jsonl and report.html."""
    fpr: list[float] = Field(default_factory=lambda: [0.01, 0.05])
    """False-positive rates at which to read recall."""
    limit: int | None = Field(None, ge=1)
    """Use at most this many texts of each class (a stable sample)."""


class GuardServeConfig(GuardConfig):
    """Serve the rails in front of a model: an OpenAI-compatible API with a store, metrics and a review queue."""

    command: ClassVar[str] = "guard serve"
    reads_commands: ClassVar[tuple[str, ...]] = ("guard",)
