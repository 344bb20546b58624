"""What the benchmark reads off processes (/proc) and load runs: CPU, memory, latency rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started: the addon's telemetry process."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def family_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of `pid` itself and of its running children."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in child_pids(pid))


def memory_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def memory_of(processes: dict[str, int], name: str) -> dict[str, int]:
    return {process: memory_kb(pid, name) for process, pid in processes.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def latency_row(result: dict[str, Any]) -> dict[str, float]:
    latencies = result["latencies"]
    return {
        "rps": result["rps"],
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_s_per_1000": result["cpu_per_1000"],
        "child_cpu_s_per_1000": result["child_cpu_per_1000"],
    }
