"""`make bench` part 10: proxies through one real OpenTelemetry Collector (deploy/collector/,
running deploy/otel-collector.yaml), for the README's "how many proxies one Collector serves".

- Scale: 1, 2 and 4 proxies under load at once through one Collector: the calls per second that
  reach it, and its CPU per 1,000 calls (measured until every call is in its Prometheus output).
- A Collector that refuses everything (its memory limiter below what it uses): one proxy's
  throughput and latency against the same proxy with a healthy Collector, in alternating rounds.
- A Collector outage (SIGKILL, restarted after `outage_s`) under load: the spans of the calls made
  meanwhile that reach the trace backend, and those the addon counts dropped, with the default
  queue and with OTEL_BSP_MAX_QUEUE_SIZE=20000.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from bench.measure import cpu_seconds, latency_row, memory_kb
from harness.collector import Collector
from harness.mitmdump import Mitmdump
from harness.otlp_receiver import OTLPReceiver

if TYPE_CHECKING:
    from bench.run import Bench

REFUSING = {
    "processors": {
        "memory_limiter": {"limit_mib": 2, "spike_limit_mib": 1, "limit_percentage": 0, "spike_limit_percentage": 0}
    }
}
RECOMMENDED_QUEUE = "20000"
CALLS = re.compile(r"^gen_ai_client_operation_duration_seconds_count\{.*\} (\S+)$", re.M)


def calls_in(collector: Collector) -> float:
    """Calls the Collector's Prometheus exporter counts, over every proxy."""
    return sum(float(value) for value in CALLS.findall(collector.scrape()))


@contextmanager
def proxies(
    bench: Bench, collector: Collector, count: int, env: dict[str, str] | None = None
) -> Iterator[list[Mitmdump]]:
    with ExitStack() as stack:
        started = []
        for number in range(count):
            identity = {
                "OTEL_SERVICE_NAME": "genai-bench-fleet",
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=bench-proxy-{number}",
                "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                **(env or {}),
            }
            started.append(stack.enter_context(bench.proxy(True, collector.endpoint, env=identity)))
        yield started


def wait_for_calls(collector: Collector, calls: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if calls_in(collector) >= calls:
            return True
        time.sleep(0.2)
    return False


def scale(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    requests = bench.sizes.fleet_requests
    report += [
        "| proxies | calls/s into the Collector | Collector CPU s / 1000 calls | Collector peak RSS MB |",
        "|---|---|---|---|",
    ]
    rows = []
    for count in (1, 2, 4):
        with (
            Collector(bench.tmp / f"fleet-{count}", bench.collector.endpoint, files=False) as collector,
            proxies(bench, collector, count) as fleet,
        ):
            before = cpu_seconds(collector.pid)
            with ThreadPoolExecutor(count) as pool:
                started = time.monotonic()
                list(pool.map(lambda proxy: bench.load(proxy.port, 8, requests, "plain"), fleet))
                elapsed = time.monotonic() - started
            arrived = wait_for_calls(collector, count * requests)
            cpu = cpu_seconds(collector.pid) - before
            peak_kb = memory_kb(collector.pid, "VmHWM")
        row = {
            "proxies": count,
            "calls_per_s": count * requests / elapsed,
            "cpu_s_per_1000": cpu * 1000 / (count * requests),
            "peak_rss_mb": peak_kb / 1024,
            "all_arrived": arrived,
        }
        rows.append(row)
        report.append(
            f"| {count} | {row['calls_per_s']:.0f} | {row['cpu_s_per_1000']:.3f} | {row['peak_rss_mb']:.0f} |"
            + ("" if arrived else " (not every call arrived within 60 s)")
        )
    raw["fleet_scale"] = rows
    per_core = 1000 / statistics.median(row["cpu_s_per_1000"] for row in rows)
    report += ["", f"One core of the Collector takes about {per_core:,.0f} calls/s (its CPU per call, median).", ""]


def refusing(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    requests = bench.sizes.collector_requests
    rows: dict[str, list[dict[str, float]]] = {"healthy": [], "refusing": []}
    for _ in range(bench.sizes.rounds):
        for name, overrides in (("healthy", None), ("refusing", REFUSING)):
            with (
                Collector(
                    bench.tmp / f"fleet-{name}-{time.monotonic_ns()}", bench.collector.endpoint, overrides, files=False
                ) as collector,
                proxies(bench, collector, 1) as (proxy,),
            ):
                bench.load(proxy.port, 4, bench.sizes.warmup, "plain")
                rows[name].append(latency_row(bench.measured(proxy, 16, requests, "plain")))
                exit_s = proxy.stop()
                rows[name][-1]["exit_s"] = exit_s
    raw["fleet_refusing"] = rows
    report += [
        "| Collector | req/s | p50 ms | p99 ms | mitmdump exit s |",
        "|---|---|---|---|---|",
    ]
    for name, results in rows.items():
        for row in results:
            report.append(
                f"| {name} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['exit_s']:.2f} |"
            )
    ratio = statistics.median(r["rps"] for r in rows["refusing"]) / statistics.median(r["rps"] for r in rows["healthy"])
    report += ["", f"Throughput, refusing / healthy Collector: {ratio:.3f}.", ""]


def load_until(bench: Bench, proxy: Mitmdump, stop: threading.Event) -> int:
    """Load runs of 100 requests, one after the other, until `stop`; how many were sent."""
    sent = 0
    while not stop.is_set():
        bench.load(proxy.port, 4, 100, "plain")
        sent += 100
    return sent


def outage(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    outage_s = bench.sizes.outage_s
    report += [
        f"The Collector is killed (SIGKILL) 1 s into the load and started again {outage_s:.0f} s later; the load "
        "(concurrency 4) goes on 3 s past the restart.",
        "",
        "| queue | calls | spans delivered | dropped (the addon's count) | lost otherwise |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for name, env in (
        ("default", {}),
        (f"OTEL_BSP_MAX_QUEUE_SIZE={RECOMMENDED_QUEUE}", {"OTEL_BSP_MAX_QUEUE_SIZE": RECOMMENDED_QUEUE}),
    ):
        backend = OTLPReceiver().start()
        try:
            collector = Collector(bench.tmp / f"fleet-outage-{time.monotonic_ns()}", backend.endpoint, files=False)
            with collector, proxies(bench, collector, 1, {"OTEL_BSP_SCHEDULE_DELAY": "200", **env}) as (proxy,):
                with ThreadPoolExecutor(1) as pool:
                    stop = threading.Event()
                    load = pool.submit(load_until, bench, proxy, stop)
                    time.sleep(1)
                    collector.kill()
                    time.sleep(outage_s)
                    collector.start()
                    time.sleep(3)
                    stop.set()
                    sent = load.result()
                wait_for_calls(collector, sent, timeout=60)
                deadline = time.monotonic() + 60
                while len(backend.spans()) < sent and time.monotonic() < deadline:
                    time.sleep(1)
            delivered = len({span.span_id for span in backend.spans()})
        finally:
            backend.stop()
        said = re.findall(r"(\d+) spans were dropped", proxy.output)
        dropped = int(said[-1]) if said else 0
        rows.append({"queue": name, "calls": sent, "delivered": delivered, "dropped": dropped})
        report.append(f"| {name} | {sent} | {delivered} | {dropped} | {sent - delivered - dropped} |")
    raw["fleet_outage"] = rows
    report.append("")


def fleet(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    report += [
        "## 10. A fleet through one OpenTelemetry Collector",
        "",
        "The project's Collector (`make collector`) runs `deploy/otel-collector.yaml`, its spans sent on to an OTLP "
        "receiver; the proxies are the addon in reverse mode as in part 1, each with its own `service.instance.id`.",
        "",
    ]
    scale(bench, report, raw)
    refusing(bench, report, raw)
    outage(bench, report, raw)
