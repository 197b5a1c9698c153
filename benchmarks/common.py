"""Helpers shared by the benchmark scripts: machine description, matmul peak, child runs, tables.

Every benchmark prints the exact command, the machine and the peer it compares with (STYLE.md, "Numbers
you can trust"); these helpers keep that part identical across scripts.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""Benchmarks never reach the network: any hub call fails fast instead of timing a download."""


def command_line() -> str:
    """The command as typed, with the interpreter, relative to the repository root when possible."""

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(REPO))
        except ValueError:
            return str(path)

    python = Path(sys.executable).absolute()
    return shlex.join([shown(python), shown(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(packages: Sequence[str] = ("torch", "transformers", "peft", "accelerate", "trl")) -> dict:
    """CPU, cores, memory, load, thread count and package versions of this run."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import psutil

        mem_gib = psutil.virtual_memory().total / 2**30
    except ImportError:
        mem_gib = None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in ("tether", *packages)},
    }


def matmul_peak(n: int = 2048, warmup: int = 3, repeats: int = 10, dtype: str = "float32") -> dict:
    """Best-of-``repeats`` ``torch.matmul`` of two n x n ``dtype`` matrices (2 n^3 FLOPs) after ``warmup`` calls."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(a.dtype)
    out = torch.empty(n, n, dtype=a.dtype)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - started)
    flops = 2 * n**3
    return {
        "n": n,
        "dtype": dtype,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "best_s": min(times),
        "median_s": sorted(times)[len(times) // 2],
        "gflops_best": flops / min(times) / 1e9,
        "gflops_median": flops / sorted(times)[len(times) // 2] / 1e9,
    }


@dataclass
class ChildResult:
    returncode: int
    max_rss_bytes: int
    wall_s: float
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_child(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``argv`` in a fresh process; its own peak RSS comes from ``os.wait4`` (not the cumulative
    ``RUSAGE_CHILDREN``, which keeps the largest child seen so far)."""
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE_ENV, **(env or {})}
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen so it does not wait again
    # Linux reports ru_maxrss in KiB.
    return ChildResult(proc.returncode, usage.ru_maxrss * 1024, time.perf_counter() - started, log)


def run_spec(script: str, work: Path, name: str, spec: dict, env: dict[str, str] | None = None) -> dict:
    """Run ``script --child SPEC`` for one engine: write ``work/NAME.spec.json``, run it in a fresh process,
    stop the benchmark with the log's tail if it fails, and return the child's result JSON
    (``spec["result"]``) with ``wall_s`` and ``peak_rss_gib`` added."""
    spec_file = work / f"{name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    print(f"running {name} ...", flush=True)
    child = run_child(
        [sys.executable, str(Path(script).resolve()), "--child", str(spec_file)], work / f"{name}.log", env
    )
    if child.returncode != 0:
        sys.exit(f"{name} failed (exit {child.returncode}); last lines of its log:\n{child.tail()}")
    run = json.loads(Path(spec["result"]).read_text())
    run.update(wall_s=child.wall_s, peak_rss_gib=child.max_rss_bytes / 2**30)
    return run


def write_child_result(spec: dict, result: dict) -> None:
    """What a child does last: record its torch thread count and write its result where the spec says."""
    import torch

    result["threads"] = torch.get_num_threads()
    Path(spec["result"]).write_text(json.dumps(result))


def step_timer(log_key: str | None = None):
    """A ``transformers.TrainerCallback`` timing each optimizer step (``.times``, seconds) and keeping the
    logged dicts that contain ``log_key`` (``.logs``)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.logs: list[dict] = []
            self.started = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if log_key is not None and logs and log_key in logs:
                self.logs.append(dict(logs))

    return StepTimer()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""

    def cell(value: object) -> str:
        return "—" if value is None else str(value)

    body = [[cell(v) for v in row] for row in rows]
    align = [
        "---:" if body and all(_numeric(r[i]) for r in body if r[i] != "—") else "---" for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x×"))
    except ValueError:
        return False
    return True


def machine_lines(
    command: str, machine: dict, peak_before: dict, peak_after: dict, peak: float, *, extra_peaks: list[str] = ()
) -> list[str]:
    """The report lines every benchmark starts with: command, machine and versions, matmul peak(s)."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    return [
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores ({machine['logical_cores']} logical), "
        f"{machine['memory_gib']} GiB RAM, torch threads {machine['torch_threads']}, "
        f"load average {machine['load_avg_1m']} before / {machine['load_avg_1m_after']} after (includes these runs); "
        f"{versions}",
        "",
        f"fp32 matmul peak ({peak_before['n']}^2, best of {peak_before['repeats']}): "
        f"{peak_before['gflops_best']:.1f} GFLOP/s before, {peak_after['gflops_best']:.1f} after; "
        f"peak = {peak:.1f} GFLOP/s",
        *extra_peaks,
        "",
    ]


def trust_notes(machine: dict, steps: int) -> list[str]:
    """Warnings every timing report carries: a busy machine, too few measured steps."""
    notes = []
    if machine["load_avg_1m"] > 0.5 * machine["usable_cores"]:
        notes.append(
            f"WARNING: the machine was busy before the runs (load average {machine['load_avg_1m']} on "
            f"{machine['usable_cores']} cores); rates and ratios are not trustworthy. Rerun on an idle machine."
        )
    if steps < 4:
        notes.append(f"only {steps - 1 or 1} measured step(s) per run: a smoke test, not a measurement")
    return notes
