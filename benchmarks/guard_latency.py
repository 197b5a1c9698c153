"""Latency the guard adds per request, and requests per second, on this machine at concurrency 16, with LLM
Guard's offline scanners timed in the same run on the same prompts.

Run::

    .venv/bin/python benchmarks/guard_latency.py [--work runs/guard-latency] [--reuse] [--json runs/guard_latency.json]

LLM Guard lives in its own venv (never in ``.venv``: it pins other transformers and presidio versions). The
script makes it when ``--llm-guard-python`` (default ``/tmp/llmguard-venv/bin/python``) is missing, the way the
Makefile makes ``.venv`` (torch from the local CPU wheel first), or by hand::

    python3 -m venv /tmp/llmguard-venv
    /tmp/llmguard-venv/bin/python -m pip install -c requirements/constraints.txt torch==2.13.0
    /tmp/llmguard-venv/bin/python -m pip install -r benchmarks/requirements-llm-guard.txt

The guard: ``tether guard train`` with the default rails (:func:`tether.guard.train.train_guard` on
``instructions/harmful_train.json``, ``harmless_train.json`` (2,000 of them) and
``jailbreaks/inthewild.shared.json``) writes ``--work``/guard/guard.yaml: input rails blocklist (empty, as
trained), secrets, pii, injection, obfuscation (log), harmful_request, jailbreak_similarity,
jailbreak_classifier; output rails secrets, pii, toxicity, output_judge (log, compliance_when_flagged), each
with the ``deadline_ms`` and ``on_error`` train writes (the report lists the ones that differ from the
defaults). ``--reuse`` keeps an existing one (training takes 1-3 minutes on 2 cores).

Prompts (300, fixed, shuffled with seed 0): every ``instructions/harmful_val.json`` request (39), 30
``jailbreaks/inthewild.shared.json`` prompts (a stable hash sample) cut to at most 1,200 characters at a word
boundary, and the first ``instructions/harmless_val.json`` requests for the rest. Each prompt's answer is one
of four short fixed texts (chosen by a hash of the prompt: a helpful answer, a refusal, one with an e-mail
address and a phone number, a summary), followed by the prompt's first eight words, so no two answers are the
same text.

Measured, each as a closed loop of ``--concurrency`` clients (threads) that each take the next prompt when
their last one finished; latency is from a client starting a request to its end, requests/s is prompts over
the wall time of the whole pass; every pass is preceded by an untimed warm-up on other prompts:

1. tether in-process: ``Pipeline(config).check_input`` then ``check_output`` on every prompt (the output rails
   run even when the input was blocked, so every request pays both sides), at concurrency 1 and 16; the
   default guard.yaml, the same with every rail's ``deadline_ms`` raised to 10 s (how long the rails really
   take when none is cut off), and a subset comparable with LLM Guard's offline scanners (input: blocklist,
   secrets, obfuscation; output: blocklist, secrets; the blocklist with the same words and patterns as LLM
   Guard's BanSubstrings and Regex).
2. tether end to end: ``tether guard serve`` (a subprocess; the default guard.yaml, SQLite store, the monitor's
   rate limit off so one key may send many blocked prompts) in front of a stub OpenAI endpoint
   (``tests/openai_stub.py``, in this process), 16 httpx clients; minus the same clients on the stub directly
   (the latency added), and the store's ``guard_ms`` (time in rails) and ``latency_ms - upstream_ms`` (time in
   the server outside the upstream, before the store write) of the same requests.
3. LLM Guard: ``scan_prompt`` then ``scan_output`` with every scanner that constructs and scans without the
   network (``HF_HUB_OFFLINE=1``; determined in the run: each candidate is built and tried on one text, and
   the ones that fail are listed with the reason), in a worker run by the other venv's python, at
   concurrency 1 and 16. Its logger is set to WARNING (its default INFO logs every scan to stdout).

Printed: a markdown table (p50, p99, requests/s, ratios to LLM Guard at the same concurrency), per-rail and
per-scanner medians, rails that erred (missed deadlines fail closed and block), the command, machine,
versions and load averages. ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import importlib.metadata
import json
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OFFLINE_ENV, REPO, SHARED_DATA, command_line, cpu_model, markdown_table

INSTRUCTIONS = SHARED_DATA / "instructions"
JAILBREAKS = SHARED_DATA / "jailbreaks" / "inthewild.shared.json"
LLM_GUARD_REQUIREMENTS = REPO / "benchmarks" / "requirements-llm-guard.txt"
ADMIN_KEY = "bench-guard-latency-admin-key-0123456789"
GOAL_P50_MS, GOAL_P99_MS = 15.0, 50.0

ANSWERS = (
    "Sure. Here are three steps: gather what you need, follow the instructions carefully, and check the result.",
    "I'm sorry, but I can't help with that request.",
    "You can reach the support team at help@example.com or on +1 415 555 0100 between 9 am and 5 pm.",
    "In short: the article argues that regular exercise improves sleep, mood and long-term health.",
)
"""The stub model's answers (short fixed texts, each followed by the request's first words)."""
BANNED = [
    "ignore all previous instructions",
    "ignore previous instructions",
    "disregard your guidelines",
    "developer mode",
    "do anything now",
    "jailbroken",
    "no restrictions",
    "pipe bomb",
    "nerve agent",
    "credit card dump",
]
"""Words and phrases both the tether subset's blocklist and LLM Guard's BanSubstrings block (whole words)."""
PATTERNS = [r"\b(?i:bearer)\s+[A-Za-z0-9._~+/-]{20,}", r"\b\d{3}-\d{2}-\d{4}\b"]
"""Regular expressions both tether's blocklist and LLM Guard's Regex block."""

LLM_GUARD_WORKER = r'''
"""LLM Guard worker for benchmarks/guard_latency.py: spec JSON in argv[1], result JSON to spec["result"]."""
import concurrent.futures as cf
import importlib.metadata
import json
import os
import sys
import time
from collections import defaultdict

spec = json.load(open(sys.argv[1]))
from llm_guard.util import configure_logger

configure_logger(log_level="WARNING")
import llm_guard.input_scanners as inp
import llm_guard.output_scanners as out
from llm_guard import scan_output, scan_prompt

BANNED, PATTERNS = spec["banned"], spec["patterns"]
INPUT = {
    "Anonymize": lambda: inp.Anonymize(__import__("llm_guard.vault", fromlist=["Vault"]).Vault()),
    "BanCode": lambda: inp.BanCode(),
    "BanCompetitors": lambda: inp.BanCompetitors(competitors=["Acme Corp"]),
    "BanSubstrings": lambda: inp.BanSubstrings(substrings=BANNED, match_type="word", case_sensitive=False),
    "BanTopics": lambda: inp.BanTopics(topics=["violence"]),
    "Code": lambda: inp.Code(languages=["Python"]),
    "Gibberish": lambda: inp.Gibberish(),
    "InvisibleText": lambda: inp.InvisibleText(),
    "Language": lambda: inp.Language(valid_languages=["en"]),
    "PromptInjection": lambda: inp.PromptInjection(),
    "Regex": lambda: inp.Regex(patterns=PATTERNS, is_blocked=True),
    "Secrets": lambda: inp.Secrets(),
    "Sentiment": lambda: inp.Sentiment(),
    "TokenLimit": lambda: inp.TokenLimit(),
    "Toxicity": lambda: inp.Toxicity(),
}
OUTPUT = {
    "BanCode": lambda: out.BanCode(),
    "BanCompetitors": lambda: out.BanCompetitors(competitors=["Acme Corp"]),
    "BanSubstrings": lambda: out.BanSubstrings(substrings=BANNED, match_type="word", case_sensitive=False),
    "BanTopics": lambda: out.BanTopics(topics=["violence"]),
    "Bias": lambda: out.Bias(),
    "Code": lambda: out.Code(languages=["Python"]),
    "FactualConsistency": lambda: out.FactualConsistency(),
    "Gibberish": lambda: out.Gibberish(),
    "JSON": lambda: out.JSON(),
    "Language": lambda: out.Language(valid_languages=["en"]),
    "LanguageSame": lambda: out.LanguageSame(),
    "MaliciousURLs": lambda: out.MaliciousURLs(),
    "NoRefusal": lambda: out.NoRefusal(),
    "NoRefusalLight": lambda: out.NoRefusalLight(),
    "ReadingTime": lambda: out.ReadingTime(max_time=5),
    "Regex": lambda: out.Regex(patterns=PATTERNS, is_blocked=True),
    "Relevance": lambda: out.Relevance(),
    "Sensitive": lambda: out.Sensitive(),
    "Sentiment": lambda: out.Sentiment(),
    "Toxicity": lambda: out.Toxicity(),
}
POLICY = {
    "output:Deanonymize": "constructs, but only restores what Anonymize (a model) replaced: a no-op without it",
    "output:URLReachability": "requests every URL in the answer over the network at scan time",
}
timings = defaultdict(list)


def timed(name, scan):
    def run(*args):
        started = time.perf_counter()
        try:
            return scan(*args)
        finally:
            timings[name].append(time.perf_counter() - started)

    return run


def build(side, table):
    used, failed = [], {}
    for name, make in table.items():
        started = time.perf_counter()
        try:
            scanner = make()
            if side == "input":
                scanner.scan("How do I bake bread?")
            else:
                scanner.scan("How do I bake bread?", "Mix flour, water and salt, then bake it.")
        except BaseException as err:  # noqa: BLE001 - a scanner that needs the network fails in many ways
            message = " ".join(str(err).split())
            failed[f"{side}:{name}"] = f"{type(err).__name__}: {message[:160]} ({time.perf_counter() - started:.1f} s)"
            continue
        scanner.scan = timed(f"{side}:{name}", scanner.scan)
        used.append((name, scanner))
    return used, failed


inputs, failed_in = build("input", INPUT)
outputs, failed_out = build("output", OUTPUT)
timings.clear()
prompts, answers = spec["prompts"], spec["answers"]


def request(i):
    started = time.perf_counter()
    try:
        _, valid_in, _ = scan_prompt([s for _, s in inputs], prompts[i])
        _, valid_out, _ = scan_output([s for _, s in outputs], prompts[i], answers[i])
        error = None
    except Exception as err:  # noqa: BLE001 - counted, not fatal
        valid_in, valid_out, error = {}, {}, f"{type(err).__name__}: {err}"
    invalid = [f"input:{k}" for k, ok in valid_in.items() if not ok]
    invalid += [f"output:{k}" for k, ok in valid_out.items() if not ok]
    return time.perf_counter() - started, invalid, error


def run_pass(concurrency, order):
    warm = spec["warmup"]
    with cf.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(request, warm))
    timings.clear()
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(request, order))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "load_before": load_before,
        "wall_s": wall,
        "latencies_s": [d[0] for d in done],
        "blocked": [bool(d[1]) for d in done],
        "invalid_by": {k: sum(k in d[1] for d in done) for k in sorted({k for d in done for k in d[1]})},
        "errors": [d[2] for d in done if d[2]],
        "scanner_median_ms": {k: 1000 * sorted(v)[len(v) // 2] for k, v in timings.items() if v},
    }


order = list(range(spec["timed"]))
passes = [run_pass(c, order) for c in spec["concurrency"]]
versions = {}
for package in ("llm-guard", "bc-detect-secrets", "presidio-analyzer", "transformers", "torch"):
    try:
        versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        versions[package] = None
json.dump(
    {
        "input_scanners": [n for n, _ in inputs],
        "output_scanners": [n for n, _ in outputs],
        "failed": {**failed_in, **failed_out},
        "excluded": POLICY,
        "passes": passes,
        "versions": versions,
        "python": sys.version.split()[0],
    },
    open(spec["result"], "w"),
)
'''


# ---------------------------------------------------------------------------------------------- prompts


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0]


def prompt_mix(total: int, jailbreaks: int, jailbreak_chars: int) -> tuple[list[str], list[str], list[str]]:
    """(prompts, kinds, warm-up prompts): harmful_val, some in-the-wild jailbreaks, harmless_val for the rest."""
    from tether.guard.texts import read_texts

    harmful = [r.text for r in read_texts(str(INSTRUCTIONS / "harmful_val.json"))]
    wild = sorted(dict.fromkeys(r.text for r in read_texts(str(JAILBREAKS))), key=_stable)
    harmless = [r.text for r in read_texts(str(INSTRUCTIONS / "harmless_val.json"))]
    chosen = [_cut(t, jailbreak_chars) for t in wild[:jailbreaks]]
    rest = total - len(harmful) - len(chosen)
    if rest < 1:
        sys.exit(f"--prompts {total} leaves no room for harmless prompts")
    rows = (
        [(t, "harmful") for t in harmful]
        + [(t, "jailbreak") for t in chosen]
        + [(t, "harmless") for t in harmless[:rest]]
    )
    random.Random(0).shuffle(rows)
    warmup = harmless[rest : rest + 16] + [_cut(t, jailbreak_chars) for t in wild[jailbreaks : jailbreaks + 4]]
    return [r[0] for r in rows], [r[1] for r in rows], warmup


def answer_for(prompt: str) -> str:
    """One of ANSWERS, followed by the request's first words: every answer is a different text, so no cache
    (the PII findings the store's redactor reuses within a request) carries over from one request to another."""
    words = " ".join(prompt.split()[:8])
    return f"{ANSWERS[int(_stable(prompt)[:8], 16) % len(ANSWERS)]} (About: {words})"


# ---------------------------------------------------------------------------------------------- timing


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between order statistics."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def closed_loop(fn: Callable[[int], Any], order: Sequence[int], concurrency: int) -> tuple[list[Any], float]:
    """``fn(i)`` for every i by ``concurrency`` threads, each taking the next when done; (results, wall s)."""
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client") as pool:
        results = list(pool.map(fn, order))
    return results, time.perf_counter() - started


def summary(latencies_s: Sequence[float], wall_s: float) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "requests": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "rps": len(ms) / wall_s,
        "wall_s": wall_s,
    }


def by_kind(latencies_s: Sequence[float], kinds: Sequence[str]) -> dict[str, dict[str, float]]:
    """p50 and p99 (ms) of each kind of prompt (harmless, harmful, jailbreak): where the tail comes from."""
    groups: dict[str, list[float]] = defaultdict(list)
    for seconds, kind in zip(latencies_s, kinds, strict=True):
        groups[kind].append(seconds * 1000)
    return {
        "by_kind": {
            k: {"n": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)}
            for k, v in sorted(groups.items())
        }
    }


def _reason(text: str) -> str:
    """A rail's error reason without the per-text figures in parentheses, so equal causes count together."""
    return re.sub(r"\([^()]*\)", "(...)", text)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------------------------- tether in-process


def _wait_rail_threads(timeout: float = 120.0) -> None:
    """After ``Pipeline.close()``: let rails still running (past their deadline) finish before the next pass."""
    until = time.monotonic() + timeout
    while any(t.name.startswith("tether-rail") for t in threading.enumerate()) and time.monotonic() < until:
        time.sleep(0.05)


def tether_pass(
    config: Any, prompts: list[str], warmup: list[str], kinds: list[str], concurrency: int
) -> dict[str, Any]:
    from tether.guard.detectors.pii import RECENT
    from tether.guard.pipeline import Pipeline

    pipe = Pipeline(config)
    pipe.warm_up()

    def request(text: str) -> tuple[float, Any, Any]:
        started = time.perf_counter()
        decision_in = pipe.check_input([{"role": "user", "content": text}])
        decision_out = pipe.check_output(answer_for(text), prompt=text, input_flagged=decision_in.flagged)
        return time.perf_counter() - started, decision_in, decision_out

    closed_loop(lambda i: request(warmup[i % len(warmup)]), range(max(len(warmup), 2 * concurrency)), concurrency)
    RECENT.clear()  # every pass sees the same prompts: none may reuse the PII findings of an earlier pass
    before = load()
    done, wall = closed_loop(lambda i: request(prompts[i]), range(len(prompts)), concurrency)
    pipe.close()
    _wait_rail_threads()
    rails: dict[str, list[float]] = defaultdict(list)
    missed: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    blocked_by_error: Counter[str] = Counter()
    harmless_by: Counter[str] = Counter()
    for (_, d_in, d_out), kind in zip(done, kinds, strict=True):
        for side, decision in (("input", d_in), ("output", d_out)):
            for v in decision.verdicts:
                name = f"{side}:{v.rail}"
                if v.detection.verdict == "error":
                    errors[f"{name}: {_reason(v.detection.reason)}"] += 1
                if "deadline" in v.detection.reason and v.detection.verdict == "error":
                    missed[name] += 1  # its timer never ran (cancelled in the queue) or was cut off
                else:
                    rails[name].append(v.detection.seconds)
        if d_in.blocked or d_out.blocked:
            blocked[kind] += 1
            if kind == "harmless":
                harmless_by.update({f"input:{r}" for r in d_in.blocked_by} | {f"output:{r}" for r in d_out.blocked_by})
            if any(v.applied == "error-closed" for v in d_in.verdicts + d_out.verdicts):
                blocked_by_error[kind] += 1
    return {
        **summary([d[0] for d in done], wall),
        **by_kind([d[0] for d in done], kinds),
        "concurrency": concurrency,
        "load_before": before,
        "rail_median_ms": {k: 1000 * percentile(v, 50) for k, v in rails.items()},
        "rail_p99_ms": {k: 1000 * percentile(v, 99) for k, v in rails.items()},
        "rail_deadline_misses": dict(missed),
        "rail_errors": dict(errors.most_common()),
        "blocked": dict(blocked),
        "blocked_with_rail_error": dict(blocked_by_error),
        "harmless_blocked_by": dict(harmless_by.most_common()),
    }


def encoder_alone(prompts: Sequence[str], kinds: Sequence[str], warmup: Sequence[str]) -> dict[str, Any]:
    """One MiniLM pass (all layers, as the embedding rails use it) per harmless prompt, one at a time: the
    floor under the default pipeline's latency, with its token counts."""
    from tether.guard.encoder import default_encoder

    encoder = default_encoder()
    for text in warmup:
        encoder([text])
    texts = [p for p, k in zip(prompts, kinds, strict=True) if k == "harmless"]
    seconds = []
    for text in texts:
        start = time.perf_counter()
        encoder([text])
        seconds.append(time.perf_counter() - start)
    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    tokens = sorted(len(row) for row in ids)
    return {
        "texts": len(texts),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "median_tokens": tokens[len(tokens) // 2],
    }


def subset_config() -> Any:
    from tether.guard.config import GuardConfig

    blocklist = {"detector": "blocklist", "action": "block", "options": {"words": BANNED, "patterns": PATTERNS}}
    return GuardConfig.model_validate(
        {
            "input_rails": [
                blocklist,
                {"detector": "secrets", "action": "mask"},
                {"detector": "obfuscation", "action": "log"},
            ],
            "output_rails": [blocklist, {"detector": "secrets", "action": "mask"}],
        }
    )


def no_deadline(config: Any) -> Any:
    data = config.model_dump()
    for side in ("input_rails", "output_rails"):
        for rail in data[side]:
            rail["deadline_ms"] = 10_000.0
    return type(config).model_validate(data)


# ---------------------------------------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_pass(
    url: str, prompts: list[str], concurrency: int, *, key: str | None, warmup: list[str]
) -> tuple[list[dict[str, Any]], float]:
    import httpx

    local = threading.local()
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def request(text: str) -> dict[str, Any]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=120, headers=headers)
        body = {"model": "stub", "messages": [{"role": "user", "content": text}], "max_tokens": 64}
        started = time.perf_counter()
        response = client.post(f"{url}/chat/completions", json=body)
        seconds = time.perf_counter() - started
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        choice = (data.get("choices") or [{}])[0]
        return {
            "seconds": seconds,
            "status": response.status_code,
            "finish": choice.get("finish_reason"),
            "id": (data.get("tether") or {}).get("interaction_id"),
        }

    closed_loop(lambda i: request(warmup[i % len(warmup)]), range(max(len(warmup), 2 * concurrency)), concurrency)
    return closed_loop(lambda i: request(prompts[i]), range(len(prompts)), concurrency)


def serve_pass(
    name: str, rails: dict, stub_url: str, work: Path, prompts: list[str], kinds: list[str], warmup: list[str], c: int
) -> dict[str, Any]:
    """``tether guard serve`` with ``rails`` (a guard.yaml's content) in front of the stub; 16 clients."""
    import httpx
    import yaml

    serve_yaml = work / f"serve-{name}.yaml"
    serve_yaml.write_text(yaml.safe_dump({**rails, "monitor": {"rate_limit": False}}, sort_keys=False))
    database = work / f"serve-{name}.db"
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        path.unlink(missing_ok=True)
    port = _free_port()
    argv = [
        str(Path(sys.executable).parent / "tether"),
        "guard",
        "serve",
        "--config",
        str(serve_yaml),
        "--upstream-endpoint",
        stub_url,
        "--upstream-model",
        "stub",
        "--database",
        f"sqlite:///{database}",
        "--port",
        str(port),
    ]
    out: dict[str, Any] = {"name": name, "concurrency": c, "server_command": " ".join(argv)}
    env = {**os.environ, **OFFLINE_ENV, "TETHER_GUARD_ADMIN_KEY": ADMIN_KEY}
    base = f"http://127.0.0.1:{port}"
    with (work / f"serve-{name}.log").open("wb") as log:
        started = time.perf_counter()
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if server.poll() is not None:
                    sys.exit(f"tether guard serve exited ({server.returncode}); see {log.name}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > 300:
                    sys.exit(f"tether guard serve did not start in 300 s; see {log.name}")
                time.sleep(0.25)
            out["server_start_s"] = time.perf_counter() - started
            before = load()
            done, wall = http_pass(f"{base}/v1", prompts, c, key=ADMIN_KEY, warmup=warmup)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    blocked = [d["finish"] == "content_filter" for d in done]
    out["client"] = {
        **summary([d["seconds"] for d in done], wall),
        **by_kind([d["seconds"] for d in done], kinds),
        "load_before": before,
        "non_200": sum(d["status"] != 200 for d in done),
        "blocked": dict(Counter(k for b, k in zip(blocked, kinds, strict=True) if b)),
    }
    ids = [d["id"] for d in done if d["id"]]
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT guard_ms, latency_ms, upstream_ms, outcome, verdicts FROM interactions WHERE id IN "
            f"({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
    guard_ms = [r[0] for r in rows]
    server_ms = [r[1] - (r[2] or 0.0) for r in rows]
    errors: Counter[str] = Counter()
    for row in rows:
        for decision in json.loads(row[4]):
            for v in decision["verdicts"]:
                if v.get("verdict") == "error":
                    errors[f"{decision['side']}:{v['rail']}: {_reason(v.get('reason') or '')}"] += 1
    out["store"] = {
        "rows": len(rows),
        "guard_ms_p50": percentile(guard_ms, 50),
        "guard_ms_p99": percentile(guard_ms, 99),
        "server_ms_p50": percentile(server_ms, 50),
        "server_ms_p99": percentile(server_ms, 99),
        "upstream_ms_p50": percentile([r[2] for r in rows if r[2] is not None] or [0.0], 50),
        "outcomes": dict(Counter(r[3] for r in rows)),
        "rail_errors": dict(errors.most_common()),
    }
    return out


def end_to_end(
    variants: list[tuple[str, dict]], work: Path, prompts: list[str], kinds: list[str], warmup: list[str], c: int
) -> dict[str, Any]:
    """The stub alone, then each (name, rails) variant of the server in front of it, the same 16 clients."""
    sys.path.insert(0, str(REPO))
    from tests.openai_stub import openai_stub

    def reply(messages: list[dict]) -> str:
        return answer_for(next(m["content"] for m in reversed(messages) if m["role"] == "user"))

    out: dict[str, Any] = {"concurrency": c, "servers": []}
    with openai_stub(reply) as (stub_url, _requests):
        before = load()
        done, wall = http_pass(stub_url, prompts, c, key=None, warmup=warmup)
        out["direct"] = {
            **summary([d["seconds"] for d in done], wall),
            "load_before": before,
            "non_200": sum(d["status"] != 200 for d in done),
        }
        for name, rails in variants:
            print(f"  server {name} ...", flush=True)
            run = serve_pass(name, rails, stub_url, work, prompts, kinds, warmup, c)
            run["added_p50_ms"] = run["client"]["p50_ms"] - out["direct"]["p50_ms"]
            run["added_p99_ms"] = run["client"]["p99_ms"] - out["direct"]["p99_ms"]
            out["servers"].append(run)
            print(f"    added p50 {run['added_p50_ms']:.1f} ms, p99 {run['added_p99_ms']:.1f} ms", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- LLM Guard


def ensure_llm_guard(python: Path) -> None:
    if python.exists():
        return
    venv = python.parent.parent
    print(f"making LLM Guard's venv {venv} (torch from the local CPU wheel first, then {LLM_GUARD_REQUIREMENTS.name})")
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(REPO / "requirements" / "constraints.txt"), "torch==2.13.0"], check=True, cwd=REPO)
    subprocess.run([*pip, "-r", str(LLM_GUARD_REQUIREMENTS)], check=True, cwd=REPO)


def llm_guard(python: Path, work: Path, prompts: list[str], warmup: list[str], concurrency: list[int]) -> dict:
    worker = work / "llm_guard_worker.py"
    worker.write_text(LLM_GUARD_WORKER)
    spec = {
        "prompts": prompts + warmup,
        "answers": [answer_for(p) for p in prompts + warmup],
        "warmup": list(range(len(prompts), len(prompts) + len(warmup))),
        "banned": BANNED,
        "patterns": PATTERNS,
        "timed": len(prompts),
        "concurrency": concurrency,
        "result": str(work / "llm_guard_result.json"),
    }
    # The worker times passes over the prompts only (indices below "timed"); it warms up on the rest.
    (work / "llm_guard_spec.json").write_text(json.dumps(spec))
    with (work / "llm_guard.log").open("wb") as log:
        done = subprocess.run(
            [str(python), str(worker), str(work / "llm_guard_spec.json")],
            env={**os.environ, **OFFLINE_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    if done.returncode != 0:
        tail = (work / "llm_guard.log").read_text(errors="replace").splitlines()[-20:]
        sys.exit(f"LLM Guard worker failed ({done.returncode}):\n" + "\n".join(tail))
    return json.loads((work / "llm_guard_result.json").read_text())


# ---------------------------------------------------------------------------------------------- report


def _versions(names: Sequence[str]) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _rail_label(rail: Any) -> str:
    """The rail's name, with its deadline and error policy when not the defaults (250 ms, closed)."""
    extra = [f"{rail.deadline_ms / 1000:g} s" if rail.deadline_ms != 250 else ""]
    extra.append(f"on_error {rail.on_error}" if rail.on_error != "closed" else "")
    extra.append(rail.action if rail.action != "block" else "")
    shown = ", ".join(e for e in extra if e)
    return f"{rail.label} ({shown})" if shown else rail.label


def _ratio(value: float, peer: float | None) -> str | None:
    return f"{value / peer:.2f}x" if peer else None


def _blocked(blocked: dict[str, int]) -> str:
    return f"{sum(blocked.values())} ({blocked.get('harmless', 0)})"


def report(results: dict[str, Any]) -> str:
    c = results["concurrency"]
    lg = results.get("llm_guard")
    lg_by_c: dict[int, dict] = {}
    if lg:
        for p in lg["passes"]:
            lg_by_c[p["concurrency"]] = summary(p["latencies_s"], p["wall_s"])
    rows: list[list[object]] = []

    def row(system: str, runs: str, conc: int, s: dict, blocked: str | None, compare: bool = True) -> None:
        peer = lg_by_c.get(conc) if compare else None
        rows.append(
            [
                system,
                runs,
                conc,
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{s['rps']:.1f}" if "rps" in s else None,
                _ratio(s["p50_ms"], peer and peer["p50_ms"]),
                _ratio(s["rps"], peer and peer["rps"]) if "rps" in s else None,
                blocked,
                s.get("load_before"),
            ]
        )

    for p in results["tether"]:
        runs = "S" if p["name"].startswith("subset") else "D"
        row(p["system"], runs, p["concurrency"], p, _blocked(p["blocked"]))
    e2e = results.get("end_to_end")
    if e2e:
        d = e2e["direct"]
        row("stub direct (the same clients, no guard)", "none", c, d, None, compare=False)
        for run in e2e["servers"]:
            g, st = run["client"], run["store"]
            label = "" if run["name"] == "default" else ", deadline_ms 10 s (diagnostic)"
            row(f"tether guard serve -> stub{label}: client latency", "D", c, g, _blocked(g["blocked"]), compare=False)
            row(
                f"  latency added by the guard{label} (client p - direct p)",
                "D",
                c,
                {"p50_ms": run["added_p50_ms"], "p99_ms": run["added_p99_ms"]},
                None,
                compare=False,
            )
            row(
                f"  server store{label}: guard_ms (rails)",
                "D",
                c,
                {"p50_ms": st["guard_ms_p50"], "p99_ms": st["guard_ms_p99"]},
                None,
                compare=False,
            )
            row(
                f"  server store{label}: latency_ms - upstream_ms",
                "D",
                c,
                {"p50_ms": st["server_ms_p50"], "p99_ms": st["server_ms_p99"]},
                None,
                compare=False,
            )
    if lg:
        for p in lg["passes"]:
            s = {**lg_by_c[p["concurrency"]], "load_before": p["load_before"]}
            harmless = sum(b for b, k in zip(p["blocked"], results["kinds"], strict=True) if k == "harmless")
            row(
                f"LLM Guard {lg['versions']['llm-guard']}, in-process",
                "L",
                p["concurrency"],
                s,
                f"{sum(p['blocked'])} ({harmless})",
            )
    m = results["machine"]
    legend = [
        f"- D = tether default (guard.yaml from `tether guard train`): {results['default_rails']}",
        "- S = tether comparable subset: in: blocklist (the same words and patterns as LLM Guard's BanSubstrings "
        "and Regex), secrets, obfuscation (log); out: blocklist, secrets",
    ]
    if lg:
        legend.append(
            f"- L = LLM Guard, every scanner that runs offline: in: {', '.join(lg['input_scanners'])}; "
            f"out: {', '.join(lg['output_scanners'])} (its blocked count is mostly NoRefusalLight flagging the "
            f"stub's refusal answer, one answer in four)"
        )
    lines = [
        f"Command: `{results['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores ({m['logical_cores']} logical); load average "
        f"(1 min) {m['load_start']} at start, {m['load_end']} at end (other processes may share the cores; the "
        f"load column is the 1-min load just before each pass); Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ("; LLM Guard venv: " + ", ".join(f"{k} {v}" for k, v in lg["versions"].items() if v) if lg else ""),
        "",
        f"Prompts: {results['prompts']} ({', '.join(f'{v} {k}' for k, v in results['prompt_counts'].items())}; "
        f"jailbreaks cut to {results['jailbreak_chars']} characters); answers: {len(ANSWERS)} short fixed texts, "
        "each followed by the request's first words. "
        f"Closed loop of 'conc.' client threads; latency per request (in-process: check_input + check_output, "
        f"both always; end to end: the whole HTTP request); req/s = requests / wall time of the pass; ratios: "
        f"tether / LLM Guard at the same concurrency (p50: lower is better; req/s: higher is better); blocked: "
        f"requests blocked on either side (of them harmless). Run time {results['runtime_s']:.0f} s "
        f"(guard training {results['train_s']:.0f} s).",
        "",
        markdown_table(
            [
                "system",
                "runs",
                "conc.",
                "p50 ms",
                "p99 ms",
                "req/s",
                "p50 / LLM Guard",
                "req/s / LLM Guard",
                "blocked (harmless)",
                "load",
            ],
            rows,
        ),
        "",
        *legend,
        "",
    ]
    if e2e:
        run = e2e["servers"][0]
        ok50, ok99 = run["added_p50_ms"] <= GOAL_P50_MS, run["added_p99_ms"] <= GOAL_P99_MS
        lines += [
            f"Goal (latency added by the default guard, end to end, concurrency {c}): p50 at most {GOAL_P50_MS:g} "
            f"ms: {'met' if ok50 else 'NOT met'} ({run['added_p50_ms']:.1f} ms); p99 at most {GOAL_P99_MS:g} ms: "
            f"{'met' if ok99 else 'NOT met'} ({run['added_p99_ms']:.1f} ms). A request blocked at the input never "
            f"reaches the stub nor the output rails.",
            "",
        ]
    warnings = []
    harmless_total = results["prompt_counts"].get("harmless", 0)
    for p in results["tether"]:
        failed = p["blocked_with_rail_error"].get("harmless", 0)
        if failed > 0.05 * harmless_total:
            warnings.append(
                f"WARNING: {p['system']}, concurrency {p['concurrency']}: {failed} of {harmless_total} harmless "
                f"prompts were blocked because a rail erred (missed deadlines fail closed); its latency is that of "
                f"a guard that cut its rails off."
            )
    for run in e2e["servers"] if e2e else []:
        harmless = run["client"]["blocked"].get("harmless", 0)
        if harmless > 0.05 * harmless_total:
            warnings.append(
                f"WARNING: tether guard serve ({run['name']}): {harmless} of {harmless_total} harmless prompts were "
                f"blocked (store rail errors: {sum(run['store']['rail_errors'].values())})."
            )
    if m["load_start"] > 0.5 * (m["usable_cores"] or 1):
        warnings.append(
            f"WARNING: the machine was busy at the start (load average {m['load_start']} on {m['usable_cores']} "
            f"cores); absolute times are inflated, ratios of passes run close together are more trustworthy."
        )
    if warnings:
        lines += [*warnings, ""]
    lines += [
        "Not like for like: tether's default pipeline (D) runs far more than LLM Guard's offline scanners (L): "
        "three MiniLM embedding rails (harmful-request probe, jailbreak similarity, jailbreak probe; one shared "
        "forward pass per view and window), Presidio PII on both sides, prompt-injection heuristics, decoding of "
        "base64/ROT13/hex/leetspeak payloads (detectors read the decoded views), a toxicity classifier and, when "
        "an input rail flagged, a refusal judge (MiniLM cross-encoder) on the answer. LLM Guard's model-based "
        "scanners (PromptInjection, Toxicity, Anonymize, Sensitive, ...) download models from the Hugging Face "
        "hub at first use and cannot run here. S is the like-for-like row: blocklist = BanSubstrings + Regex, "
        "secrets = Secrets, obfuscation ~ InvisibleText; on the output side tether runs blocklist and secrets, "
        "LLM Guard BanSubstrings, Regex, NoRefusalLight, JSON and ReadingTime.",
        "",
    ]
    if lg:
        lines += ["LLM Guard scanners left out (each tried in this run with HF_HUB_OFFLINE=1, or by policy):", ""]
        reasons: dict[str, list[str]] = defaultdict(list)
        for name, why in lg["failed"].items():
            reasons[why.rsplit(" (", 1)[0][:110]].append(name)
        lines += [f"- {', '.join(names)}: {why} ..." for why, names in reasons.items()]
        lines += [f"- {name}: {why}" for name, why in lg["excluded"].items()]
        lines += [""]
        for p in lg["passes"]:
            lines.append(
                f"LLM Guard at c={p['concurrency']}: median ms per scanner: "
                + ", ".join(f"{k} {v:.2f}" for k, v in p["scanner_median_ms"].items())
                + "; requests each scanner found invalid: "
                + (", ".join(f"{k} {v}" for k, v in p["invalid_by"].items()) or "none")
                + f"; exceptions: {len(p['errors'])}"
            )
        lines.append("")
    shown = [p for p in results["tether"] if not p["name"].startswith("subset")]
    names = list(dict.fromkeys(k for p in shown for k in [*p["rail_median_ms"], *p["rail_deadline_misses"]]))
    lines += [
        "tether per rail: median ms of the checks that ran (each verdict's own timer; under concurrency it "
        "includes waiting for the GIL and for the embedding lock) / deadline misses (cancelled before they ran, "
        "or cut off):",
        "",
        markdown_table(
            ["rail", *[f"{p['system']} (c={p['concurrency']})" for p in shown]],
            [
                [
                    name,
                    *[
                        f"{p['rail_median_ms'].get(name, 0):.2f} / {p['rail_deadline_misses'].get(name, 0)}"
                        for p in shown
                    ],
                ]
                for name in names
            ],
        ),
        "",
        "p50 / p99 ms by kind of prompt: "
        + "; ".join(
            f"{p['system']} c={p['concurrency']}: "
            + ", ".join(f"{k} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for k, v in p["by_kind"].items())
            for p in results["tether"]
        ),
        "",
    ]
    if e2e:
        lines.append(
            "End to end by kind (client p50 / p99 ms): "
            + "; ".join(
                f"{r['name']}: "
                + ", ".join(f"{k} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for k, v in r["client"]["by_kind"].items())
                for r in e2e["servers"]
            )
        )
        lines.append("")
    if "encoder_alone" in results:
        e = results["encoder_alone"]
        lines += [
            f"MiniLM alone (`LayerEncoder`, one pass per prompt, all layers), the {e['texts']} harmless prompts one at "
            f"a time: p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms (median {e['median_tokens']} tokens).",
            "",
        ]
    for p in results["tether"]:
        other = {k: v for k, v in p["rail_errors"].items() if "deadline" not in k}
        parts = []
        if p["harmless_blocked_by"]:
            parts.append(
                "harmless prompts blocked by " + ", ".join(f"{k} x{v}" for k, v in p["harmless_blocked_by"].items())
            )
        if other:
            parts.append("errors other than deadlines: " + "; ".join(f"{k} x{v}" for k, v in other.items()))
        if parts:
            lines += [f"{p['system']} c={p['concurrency']}: " + "; ".join(parts), ""]
    if e2e:
        for run in e2e["servers"]:
            st = run["store"]
            errors = "; ".join(f"{k} x{v}" for k, v in st["rail_errors"].items()) or "none"
            lines.append(
                f"Server {run['name']}: `{run['server_command']}` (monitor.rate_limit off), ready "
                f"{run['server_start_s']:.1f} s after start; non-200 {run['client']['non_200']}; store outcomes "
                f"{st['outcomes']}; rail errors: {errors}"
            )
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "guard-latency")
    parser.add_argument("--reuse", action="store_true", help="keep WORK/guard/guard.yaml when it exists")
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--jailbreaks", type=int, default=30)
    parser.add_argument("--jailbreak-chars", type=int, default=1200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--llm-guard-python", type=Path, default=Path("/tmp/llmguard-venv/bin/python"))
    parser.add_argument("--no-llm-guard", action="store_true")
    parser.add_argument("--no-server", action="store_true", help="skip the end-to-end server runs")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the 10 s-deadline runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.update(OFFLINE_ENV)
    started = time.perf_counter()
    load_start = load()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    import yaml

    from tether.config.files import load_config
    from tether.guard.config import GuardConfig, GuardTrainConfig

    guard_yaml = work / "guard" / "guard.yaml"
    train_s = 0.0
    if not (args.reuse and guard_yaml.exists()):
        from tether.guard.train import train_guard

        print("training the guard (tether guard train, default rails) ...", flush=True)
        t = time.perf_counter()
        train_guard(
            GuardTrainConfig(
                harmful=[str(INSTRUCTIONS / "harmful_train.json")],
                harmless=[str(INSTRUCTIONS / "harmless_train.json")],
                jailbreaks=[str(JAILBREAKS)],
                out=work / "guard",
                max_harmless=2000,
                progress=False,
            )
        )
        train_s = time.perf_counter() - t
    config = load_config(GuardConfig, guard_yaml, {})
    default_rails = (
        "in: "
        + ", ".join(_rail_label(r) for r in config.input_rails)
        + "; out: "
        + ", ".join(_rail_label(r) for r in config.output_rails)
    )
    prompts, kinds, warmup = prompt_mix(args.prompts, args.jailbreaks, args.jailbreak_chars)
    c = args.concurrency
    results: dict[str, Any] = {
        "command": command_line(),
        "prompts": len(prompts),
        "prompt_counts": dict(Counter(kinds)),
        "kinds": kinds,
        "jailbreak_chars": args.jailbreak_chars,
        "concurrency": c,
        "default_rails": default_rails,
        "train_s": train_s,
        "tether": [],
    }
    plan = [
        ("default", "tether default, in-process", config, 1),
        ("default", "tether default, in-process", config, c),
    ]
    if not args.no_diagnostics:
        plan.append(("default-10s", "tether default, deadline_ms 10 s (diagnostic)", no_deadline(config), c))
    plan += [
        ("subset", "tether comparable subset, in-process", subset_config(), 1),
        ("subset", "tether comparable subset, in-process", subset_config(), c),
    ]
    print("MiniLM alone, one harmless prompt at a time ...", flush=True)
    results["encoder_alone"] = encoder_alone(prompts, kinds, warmup)
    for name, system, cfg, conc in plan:
        print(f"{system}, concurrency {conc} ...", flush=True)
        p = tether_pass(cfg, prompts, warmup, kinds, conc)
        results["tether"].append({"name": name, "system": system, **p})
        print(f"  p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, {p['rps']:.1f} req/s", flush=True)
    if not args.no_server:
        print(f"end to end: tether guard serve in front of a stub, {c} clients ...", flush=True)
        rails = yaml.safe_load(guard_yaml.read_text())
        variants = [("default", rails)]
        if not args.no_diagnostics:
            slow = {**rails}
            for side in ("input_rails", "output_rails"):
                slow[side] = [{**r, "deadline_ms": 10_000.0} for r in rails[side]]
            variants.append(("deadline-10s", slow))
        results["end_to_end"] = end_to_end(variants, work, prompts, kinds, warmup, c)
    if not args.no_llm_guard:
        ensure_llm_guard(args.llm_guard_python)
        print("LLM Guard (its own venv, offline scanners) ...", flush=True)
        results["llm_guard"] = llm_guard(args.llm_guard_python, work, prompts, warmup, [1, c])
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    results["runtime_s"] = time.perf_counter() - started
    results["machine"] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "load_start": load_start,
        "load_end": load(),
        "python": sys.version.split()[0],
        "versions": _versions(
            [
                "tether",
                "torch",
                "transformers",
                "presidio-analyzer",
                "detect-secrets",
                "alt-profanity-check",
                "fastapi",
                "uvicorn",
                "httpx",
            ]
        ),
    }
    text = report(results)
    print()
    print(text)
    (work / "report.md").write_text(text + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
