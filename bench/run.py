"""`make bench`: what the addon costs, measured against bare mitmdump on this machine.

Everything runs on loopback: a fast fake upstream (bench/upstream.py), mitmdump in reverse mode
with and without the addon, and the load generator in its own process (bench/loadgen.py).
A/B runs alternate (bare, addon, bare, addon) and the report gives ratios measured side by side.
Usage: python -m bench.run [--smoke] [--report FILE] [--raw FILE]. --smoke runs a few hundred
requests to check that the benchmark works; its numbers mean nothing. --pool RAW... pools part 1
of earlier runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import operator
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from genai_prices import Usage as PricedUsage
from genai_prices import calc_price
from mitmproxy import http, websocket
from mitmproxy.test import taddons, tflow, tutils
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.sync.client import connect as ws_connect
from wsproto.frame_protocol import Opcode

import addon as addon_module
import telemetry_process
from bench.discard import Discard
from bench.fleet import fleet
from bench.measure import child_pids, family_cpu_seconds, latency_row, memory_of, percentile
from bench.sessions import sessions_part
from errors import UnexpectedErrors
from harness import eventstream
from harness.collector import free_port
from harness.fake_openai import load_fixture
from harness.fake_realtime import AUDIO_FRAME, FakeSockets
from harness.mitmdump import ROOT, Mitmdump
from harness.otlp_receiver import OTLPReceiver
from otel.sessions import MAX_OPEN_SESSIONS
from pricing import Prices
from telemetry import Telemetry
from telemetry_process import MetricOptions
from wire import anthropic_messages, bedrock_converse, bedrock_invoke, gemini_generate, ollama, openai_chat
from wire.call import Call, Endpoint, Origin, stream_reader
from wire.framing.eventstream import EventStreamFramer
from wire.framing.json_array import JSONArrayFramer
from wire.framing.ndjson import NDJSONFramer
from wire.framing.sse import SSEFramer
from wire.openai_chat import ChatStreamAccumulator
from wire.records import ApiRequest, ApiResult, Usage
from wire.stream import EventStream, FilteredStream, ReceivedStream

CHAT = Endpoint(openai_chat.API)
# Part 6: about the share of a core the telemetry process uses at full load (part 1's last column).
BURN_SHARE = 0.25
# Part 4: spans encoded per export, as the telemetry process's exporter does (up to 512).
SPANS_PER_BATCH = 200


@dataclass
class Sizes:
    """How much work each part does; --smoke shrinks all of it."""

    throughput: dict[int, int] = field(default_factory=lambda: {1: 600, 16: 1200, 64: 1200})
    # This machine's speed drifts by 10% within a minute (other tenants): many short A/B pairs,
    # each compared side by side, and the median of the pairs.
    throughput_rounds: int = 25
    warmup: int = 300
    rounds: int = 2
    streams: int = 8
    stream_concurrency: int = 4
    memory_checkpoints: tuple[int, int] = (2000, 50_000)
    big_stream_events: int = 50_000  # of ~1 KB: a 50 MB stream
    collector_requests: int = 3000
    # Part 10: requests per proxy in the fleet, and how long the Collector stays down.
    fleet_requests: int = 3000
    outage_s: float = 15.0
    attribution_rounds: int = 7
    instruction_requests: int = 200
    single_core_rounds: int = 9
    single_core_requests: int = 1200
    saturation_s: float = 60.0
    # Part 9: Realtime responses of this many audio chunks (two frames each), unpaced and paced.
    realtime_chunks: int = 2000
    realtime_paced_chunks: int = 200
    realtime_rounds: int = 5
    agent_sessions: int = MAX_OPEN_SESSIONS  # part 11


SMOKE = Sizes(
    throughput={1: 50, 16: 100},
    throughput_rounds=1,
    warmup=20,
    rounds=1,
    streams=2,
    stream_concurrency=2,
    memory_checkpoints=(100, 200),
    big_stream_events=500,
    collector_requests=100,
    fleet_requests=100,
    outage_s=2.0,
    attribution_rounds=1,
    instruction_requests=20,
    single_core_rounds=1,
    single_core_requests=100,
    saturation_s=3.0,
    agent_sessions=300,
    realtime_chunks=100,
    realtime_paced_chunks=20,
    realtime_rounds=1,
)


class Bench:
    def __init__(self, sizes: Sizes, tmp: Path) -> None:
        self.sizes = sizes
        self.tmp = tmp
        self.upstream = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.upstream.stdout
        self.upstream_port = int(self.upstream.stdout.readline().rsplit(":", 1)[1])
        self.collector = OTLPReceiver().start()
        self.slow_collector = OTLPReceiver(delay=2.0).start()

    def close(self) -> None:
        self.upstream.terminate()
        self.upstream.wait(5)
        self.collector.stop()
        self.slow_collector.stop()

    @contextmanager
    def proxy(
        self,
        with_addon: bool,
        collector: str = "live",
        *extra: str,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
        program: str = "mitmdump",
        flow_detail: int = 0,
    ) -> Iterator[Mitmdump]:
        """`collector`: one of the bench's (live, dead, slow; "live, spans off") or a collector's URL.
        `program`: mitmdump, or mitmweb (which keeps every flow and gives each a comment).
        `flow_detail`: 0, no line per flow (the addon's line per call goes with it), or mitmdump's
        default 1."""
        endpoint = {
            "live": self.collector.endpoint,
            "live, spans off": self.collector.endpoint,
            "slow": self.slow_collector.endpoint,
            "dead": "http://127.0.0.1:9",  # the discard port: nothing listens there
        }.get(collector, collector)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "10",
            **(env or {}),
        }
        if collector == "live, spans off":
            env["OTEL_TRACES_EXPORTER"] = "none"
        args = ["--mode", f"reverse:http://127.0.0.1:{self.upstream_port}", "--set", f"flow_detail={flow_detail}"]
        if with_addon:
            args += ["--set", f"genai_hosts=127.0.0.1:{self.upstream_port}=openai;stream_usage=on"]
        name = f"{'addon' if with_addon else 'bare'}-{time.monotonic_ns()}"
        # Under a wrapper (valgrind) start-up takes half a minute.
        timeout = 180 if wrapper else 20
        if program == "mitmweb":
            args += ["--web-host", "127.0.0.1", "--web-port", str(free_port()), "--set", "web_open_browser=false"]
        with Mitmdump(
            [*args, *extra],
            env,
            self.tmp / name,
            with_addon=with_addon,
            start_timeout=timeout,
            wrapper=wrapper,
            program=program,
        ) as proxy:
            yield proxy

    def load(
        self, port: int, concurrency: int, requests: int, mode: str, pin: int | None = None, **options: Any
    ) -> dict[str, Any]:
        """One run of the load generator (on CPU `pin` if given)."""
        command = [sys.executable, "-m", "bench.loadgen", str(port), str(concurrency), str(requests), mode]
        if pin is not None:
            command = ["taskset", "-c", str(pin), *command]
        command += [f"{key}={value}" for key, value in options.items()]
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=True)
        result: dict[str, Any] = json.loads(finished.stdout)
        if result["errors"]:
            raise RuntimeError(f"{len(result['errors'])} failed requests, e.g. {result['errors'][0]}")
        return result

    def measured(
        self, proxy: Mitmdump, concurrency: int, requests: int, mode: str, pin: int | None = None, **options: Any
    ) -> dict[str, Any]:
        """One load run; CPU of mitmdump's own process, and of the telemetry process beside it."""
        own_before, children_before = family_cpu_seconds(proxy.pid)
        result = self.load(proxy.port, concurrency, requests, mode, pin, **options)
        own_after, children_after = family_cpu_seconds(proxy.pid)
        result["cpu_per_1000"] = (own_after - own_before) * 1000 / requests
        result["child_cpu_per_1000"] = (children_after - children_before) * 1000 / requests
        result["rps"] = requests / result["elapsed"]
        return result


def paired(
    rounds: list[dict[str, dict[str, float]]], key: str, combine: Callable[[float, float], float]
) -> list[float]:
    """Per round, `combine(addon, bare)` of one measurement."""
    return [combine(pair["addon"][key], pair["bare"][key]) for pair in rounds]


def median_interval(values: Sequence[float], confidence: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap interval of the median: how far the median of this many rounds could move on a
    machine as noisy as this run's rounds were (a fixed seed keeps the report reproducible)."""
    chooser = random.Random(0)
    medians = sorted(statistics.median(chooser.choices(values, k=len(values))) for _ in range(resamples))
    tail = int((1 - confidence) / 2 * resamples)
    return medians[tail], medians[resamples - 1 - tail]


def pooled_throughput(raw_files: Sequence[Path]) -> list[str]:
    """Part 1's per-round throughput ratios of several runs (their `--raw` files), pooled, per
    concurrency at `flow_detail=0` and per setting where calls are shown.

    The median of one run moves by more than its own bootstrap interval from run to run (its rounds
    share the machine's state of the moment), so a firm figure needs the rounds of several runs."""
    ratios: dict[str, list[float]] = {}
    for raw_file in raw_files:
        for key, rounds in json.loads(raw_file.read_text()).items():
            if key.startswith("throughput_c"):
                setting = f"`flow_detail=0`, concurrency {key.removeprefix('throughput_c')}"
            elif key.startswith(SHOWN_PREFIX):
                setting = f"{key.removeprefix(SHOWN_PREFIX)}, concurrency 16"
            else:
                continue
            ratios.setdefault(setting, []).extend(paired(rounds, "rps", operator.truediv))
    lines = [
        f"Part 1 pooled over {len(raw_files)} runs: " + ", ".join(path.name for path in raw_files),
        "",
        "| setting | rounds | throughput addon / bare: median (90% interval of the median) | rounds at ≥ 0.95 |",
        "|---|---|---|---|",
    ]
    for setting, values in ratios.items():
        low, high = median_interval(values)
        at_target = sum(value >= 0.95 for value in values) / len(values)
        lines.append(
            f"| {setting} | {len(values)} | {statistics.median(values):.3f} ({low:.3f}–{high:.3f}) | {at_target:.0%} |"
        )
    return lines


Rounds = list[dict[str, dict[str, float]]]


def paired_rounds(bench: Bench, bare: Mitmdump, addon: Mitmdump, concurrency: int, requests: int) -> Rounds:
    """Part 1's rounds: each runs both proxies back to back, the order alternating."""
    rounds: Rounds = []
    for number in range(bench.sizes.throughput_rounds):
        order = (("bare", bare), ("addon", addon)) if number % 2 == 0 else (("addon", addon), ("bare", bare))
        rounds.append(
            {name: latency_row(bench.measured(proxy, concurrency, requests, "plain")) for name, proxy in order}
        )
    return rounds


def throughput_ratio(rounds: Rounds) -> str:
    """addon / bare requests per second: the median of the rounds, its 90% interval, the range."""
    ratios = paired(rounds, "rps", operator.truediv)
    low, high = median_interval(ratios)
    return f"{statistics.median(ratios):.3f} ({low:.3f}–{high:.3f}) ({min(ratios):.3f}–{max(ratios):.3f})"


def throughput(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    sizes = bench.sizes
    report += [
        "## 1. Non-streaming chat completions, reverse mode",
        "",
        f"{sizes.throughput_rounds} rounds per concurrency; each round runs both variants back to back (the order "
        "alternates) and is compared within itself. CPU is mitmdump's own process; the telemetry process's CPU "
        "(scheduled only on an otherwise idle core) is its own column.",
        "",
        "| concurrency | round | bare req/s | addon req/s | ratio | bare p50 / p95 / p99 ms | addon p50 / p95 / p99 ms "
        "| bare CPU s / 1000 | addon CPU s / 1000 | telemetry process CPU s / 1000 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = [
        "",
        "| concurrency | throughput addon / bare: median (90% interval of the median) (range) | added p50 ms "
        "| added p95 ms | added p99 ms "
        "| CPU addon / bare (mitmdump) | telemetry process CPU s / 1000 req |",
        "|---|---|---|---|---|---|---|",
    ]
    with bench.proxy(False) as bare, bench.proxy(True) as addon:
        for proxy in (bare, addon):
            bench.load(proxy.port, 4, sizes.warmup, "plain")
        for concurrency, requests in sizes.throughput.items():
            rounds = paired_rounds(bench, bare, addon, concurrency, requests)
            raw[f"throughput_c{concurrency}"] = rounds
            for number, pair in enumerate(rounds, 1):
                b, a = pair["bare"], pair["addon"]
                report.append(
                    f"| {concurrency} | {number} | {b['rps']:.0f} | {a['rps']:.0f} | {a['rps'] / b['rps']:.3f} "
                    f"| {b['p50_ms']:.2f} / {b['p95_ms']:.2f} / {b['p99_ms']:.2f} "
                    f"| {a['p50_ms']:.2f} / {a['p95_ms']:.2f} / {a['p99_ms']:.2f} "
                    f"| {b['cpu_s_per_1000']:.3f} | {a['cpu_s_per_1000']:.3f} | {a['child_cpu_s_per_1000']:.3f} |"
                )
            summary.append(
                f"| {concurrency} | {throughput_ratio(rounds)} "
                f"| {statistics.median(paired(rounds, 'p50_ms', operator.sub)):+.3f} "
                f"| {statistics.median(paired(rounds, 'p95_ms', operator.sub)):+.3f} "
                f"| {statistics.median(paired(rounds, 'p99_ms', operator.sub)):+.3f} "
                f"| {statistics.median(paired(rounds, 'cpu_s_per_1000', operator.truediv)):.3f} "
                f"| {statistics.median(pair['addon']['child_cpu_s_per_1000'] for pair in rounds):.3f} |"
            )
    report += [*summary, "", "Each figure is the median over the rounds of the within-round comparison.", ""]
    shown_calls(bench, report, raw)


# Part 1's settings where each call is shown: mitmdump's default (a line per flow, and the addon's
# line per call) and mitmweb (a comment per flow, updated when it arrives).
SHOWN_SETTINGS = {"mitmdump, flow_detail=1": ("mitmdump", 1), "mitmweb": ("mitmweb", 0)}
SHOWN_PREFIX = "shown_"  # their rounds' key in the raw numbers, before the setting


def shown_calls(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    """Part 1 again at concurrency 16 where calls are shown, bare and addon at the same setting."""
    sizes = bench.sizes
    requests = sizes.throughput[16]
    report += [
        "### Where calls are shown: concurrency 16, bare and addon at the same setting",
        "",
        "| setting | throughput addon / bare: median (90% interval of the median) (range) | added p50 ms "
        "| added p99 ms | CPU addon / bare (mitmdump) |",
        "|---|---|---|---|---|",
    ]
    for setting, (program, flow_detail) in SHOWN_SETTINGS.items():
        with (
            bench.proxy(False, program=program, flow_detail=flow_detail) as bare,
            bench.proxy(True, program=program, flow_detail=flow_detail) as addon,
        ):
            for proxy in (bare, addon):
                bench.load(proxy.port, 4, sizes.warmup, "plain")
            rounds = paired_rounds(bench, bare, addon, 16, requests)
        raw[f"{SHOWN_PREFIX}{setting}"] = rounds
        report.append(
            f"| {setting} | {throughput_ratio(rounds)} "
            f"| {statistics.median(paired(rounds, 'p50_ms', operator.sub)):+.3f} "
            f"| {statistics.median(paired(rounds, 'p99_ms', operator.sub)):+.3f} "
            f"| {statistics.median(paired(rounds, 'cpu_s_per_1000', operator.truediv)):.3f} |"
        )
    report.append("")


def streaming(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    sizes = bench.sizes
    report += [
        "## 2. Streaming: 200 chunks, 10 ms apart",
        "",
        f"{sizes.streams} streams per variant, {sizes.stream_concurrency} at a time. Delay per chunk = client receipt "
        "minus upstream send (one monotonic clock).",
        "",
        "| variant | chunks | median delay ms | p99 delay ms | max delay ms | client TTFC median ms |",
        "|---|---|---|---|---|---|",
    ]
    options = {"chunks": 200, "delay_ms": 10}
    results: dict[str, dict[str, Any]] = {}
    results["no proxy"] = bench.load(
        bench.upstream_port, sizes.stream_concurrency, sizes.streams, "stream", include_usage=1, **options
    )
    variants = (
        ("bare mitmdump, streaming", False, "openai"),
        ("addon (client asked for usage)", True, "openai"),
        ("bare mitmdump, Anthropic stream", False, "anthropic"),
        ("addon, Anthropic stream", True, "anthropic"),
        ("bare mitmdump, Bedrock ConverseStream", False, "bedrock"),
        ("addon, Bedrock ConverseStream", True, "bedrock"),
    )
    with bench.proxy(False, "live", "--set", "stream_large_bodies=1") as bare, bench.proxy(True) as addon:
        for _ in range(sizes.rounds):
            for name, with_addon, api in variants:
                run = bench.load(
                    (addon if with_addon else bare).port,
                    sizes.stream_concurrency,
                    sizes.streams,
                    "stream",
                    include_usage=1,
                    api=api,
                    **options,
                )
                result = results.setdefault(name, {"chunk_delays": [], "ttfc": []})
                result["chunk_delays"] += run["chunk_delays"]
                result["ttfc"] += run["ttfc"]
        rewrite = bench.load(addon.port, sizes.stream_concurrency, sizes.streams, "stream", include_usage=0, **options)
        results["addon, include_usage rewrite + strip"] = rewrite
    for name, result in results.items():
        delays = result["chunk_delays"]
        report.append(
            f"| {name} | {len(delays)} | {statistics.median(delays) * 1000:.3f} "
            f"| {percentile(delays, 0.99) * 1000:.3f} "
            f"| {max(delays) * 1000:.3f} | {statistics.median(result['ttfc']) * 1000:.2f} |"
        )
    for name, baseline in (
        ("addon (client asked for usage)", "bare mitmdump, streaming"),
        ("addon, include_usage rewrite + strip", "bare mitmdump, streaming"),
        ("addon, Anthropic stream", "bare mitmdump, Anthropic stream"),
        ("addon, Bedrock ConverseStream", "bare mitmdump, Bedrock ConverseStream"),
    ):
        delays, bare_delays = results[name]["chunk_delays"], results[baseline]["chunk_delays"]
        report.append(
            f"\nAdded by the addon over {baseline}, {name}: median "
            f"{(statistics.median(delays) - statistics.median(bare_delays)) * 1000:+.3f} ms, p99 "
            f"{(percentile(delays, 0.99) - percentile(bare_delays, 0.99)) * 1000:+.3f} ms."
        )
    raw["streaming"] = {
        name: {"median": statistics.median(r["chunk_delays"]), "p99": percentile(r["chunk_delays"], 0.99)}
        for name, r in results.items()
    }
    report.append("")


def memory(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    sizes = bench.sizes
    first, second = sizes.memory_checkpoints
    report += [
        "## 3. Memory (RSS)",
        "",
        "mitmdump's process, and for the addon also its telemetry process. Each checkpoint is read a second "
        "after the load ends, once the telemetry process has caught up.",
        "",
        "| variant | RSS at start MB | after "
        f"{first:,} mixed MB | after {second:,} mixed MB | growth MB | 50 MB stream: peak RSS rise MB |",
        "|---|---|---|---|---|---|",
    ]
    for with_addon in (False, True):
        # Bare mitmdump needs stream_large_bodies to stream SSE; the addon streams what it observes
        # itself (stream_large_bodies would also stream request bodies past the addon).
        streaming = () if with_addon else ("--set", "stream_large_bodies=1")
        with bench.proxy(with_addon, "live", *streaming) as proxy:
            processes = {"addon" if with_addon else "bare mitmdump, streaming": proxy.pid}
            if with_addon:
                processes["addon: telemetry process"] = child_pids(proxy.pid)[0]

            start = memory_of(processes, "VmRSS")
            bench.load(proxy.port, 8, first, "mixed", chunks=10, delay_ms=0, include_usage=0)
            time.sleep(1)
            at_first = memory_of(processes, "VmRSS")
            bench.load(proxy.port, 8, second - first, "mixed", chunks=10, delay_ms=0, include_usage=0)
            time.sleep(1)
            at_second = memory_of(processes, "VmRSS")
            before_big = memory_of(processes, "VmHWM")
            bench.load(
                proxy.port, 1, 1, "stream", chunks=sizes.big_stream_events, delay_ms=0, event_bytes=1000, timeout=300
            )
            time.sleep(1)
            after_big = memory_of(processes, "VmHWM")
            for name in processes:
                peak_rise = after_big[name] - before_big[name]
                raw[f"memory_{name}"] = {
                    "start": start[name],
                    "first": at_first[name],
                    "second": at_second[name],
                    "peak_rise": peak_rise,
                }
                report.append(
                    f"| {name} | {start[name] / 1024:.1f} | {at_first[name] / 1024:.1f} "
                    f"| {at_second[name] / 1024:.1f} | {(at_second[name] - at_first[name]) / 1024:+.1f} "
                    f"| {peak_rise / 1024:+.1f} |"
                )
    report += [
        "",
        "Growth is from the first checkpoint to the second. The big stream has "
        f"{sizes.big_stream_events:,} events of about 1 KB.",
        "",
    ]


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def unmetered_hooks_us(calls: int, repeat: int = 5) -> float:
    """The addon's hooks on a flow it does not meter (another host), a JSON response: what every
    other flow through the proxy pays, the check for an unmetered stream included."""
    headers = http.Headers(content_type="application/json", server="other")

    def flow() -> http.HTTPFlow:
        request = tutils.treq(host="example.com", port=443, scheme=b"https", method=b"POST", path=b"/api/items")
        made = tflow.tflow(req=request)
        made.response = http.Response.make(200, b"{}", headers)
        return made

    metering = addon_module.GenAIMeter()
    with taddons.context(metering):  # type: ignore[no-untyped-call]
        metering.telemetry = Discard()
        best = float("inf")
        for _ in range(repeat):
            flows = [flow() for _ in range(calls)]
            started = time.perf_counter()
            for each in flows:
                metering.request(each)
                metering.responseheaders(each)
                metering.response(each)
            best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def hooks_per_call_us(calls: int, repeat: int = 5) -> float:
    """mitmdump's side of one non-streaming call: the request, responseheaders and response hooks
    as mitmproxy runs them, queueing the exchange for a real telemetry process (exporters off).
    The best of `repeat` runs of `calls` calls, on an event loop so that batching works as live."""
    recorded = load_fixture("test_chat_completion_with_content")
    body = recorded["response"]["body"]["string"].encode()
    response_headers = [
        (name.encode(), (value if isinstance(value, str) else value[0]).encode())
        for name, value in recorded["response"]["headers"].items()
    ]
    request_body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

    def call() -> tuple[http.HTTPFlow, http.Response]:
        request = tutils.treq(
            host="api.openai.com",
            port=443,
            scheme=b"https",
            method=b"POST",
            path=b"/v1/chat/completions",
            headers=http.Headers(authorization="Bearer sk-proj-" + "x" * 40, content_type="application/json"),
            content=request_body,
        )
        return tflow.tflow(req=request), http.Response.make(200, body, response_headers)

    async def run(metering: addon_module.GenAIMeter, recorder: telemetry_process.TelemetryProcess) -> float:
        best = float("inf")
        try:
            for _ in range(repeat):
                flows = [call() for _ in range(calls)]
                started = time.perf_counter()
                for flow, response in flows:
                    metering.request(flow)
                    flow.response = response
                    metering.responseheaders(flow)
                    metering.response(flow)
                best = min(best, time.perf_counter() - started)
                await asyncio.sleep(telemetry_process.FLUSH_INTERVAL_S * 2)
        finally:
            # While the loop runs: mitmproxy's log handler (a warning if the child is late) needs it.
            # A loaded machine (the suite runs in parallel) may not let the idle-only child finish.
            recorder.shutdown(budget_s=30)
        return best / calls * 1e6

    with environment(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"):
        recorder = telemetry_process.TelemetryProcess()
        recorder.start()
    metering = addon_module.GenAIMeter()
    with taddons.context(metering):  # type: ignore[no-untyped-call]
        metering.telemetry = recorder
        metering.shown.log_lines = False  # as in the benchmark's mitmdump (flow_detail=0)
        return asyncio.run(run(metering, recorder))


def socket_frame_us(content: bytes, frames: int = 2000, repeat: int = 5) -> float:
    """mitmdump's `websocket_message` hook for one server frame of a metered Realtime session."""
    metering = addon_module.GenAIMeter()
    with taddons.context(metering):  # type: ignore[no-untyped-call]
        metering.telemetry = Discard()
        metering.shown.log_lines = False
        flow = tflow.twebsocketflow()
        flow.request.host, flow.request.port, flow.request.path = "api.openai.com", 443, "/v1/realtime?model=m"
        metering.websocket_start(flow)
        assert flow.websocket is not None
        opened = json.dumps({"type": "response.created", "response": {"id": "resp_1"}}).encode()
        flow.websocket.messages = [websocket.WebSocketMessage(Opcode.TEXT, False, opened)]
        metering.websocket_message(flow)
        message = websocket.WebSocketMessage(Opcode.TEXT, False, content)
        flow.websocket.messages = [message]

        def run() -> None:
            for _ in range(frames):
                metering.websocket_message(flow)

        return min(timeit.repeat(run, number=1, repeat=repeat)) / frames * 1e6


def tap_chunk_us(chunk: bytes, filtering: bool, chunks: int = 1000, repeat: int = 5) -> float:
    """µs per chunk in the `flow.response.stream` tap, on mitmproxy's loop: the chunk kept for the
    telemetry process, and (`filtering`) what include_usage added taken out of it. A fresh tap per
    run: a run's chunks stay under the size where the tap starts reading."""
    make_reader = functools.partial(stream_reader, CHAT, "text/event-stream", None, False)
    errors = UnexpectedErrors(logging.getLogger("genai"))

    def run() -> None:
        received = ReceivedStream("text/event-stream", None)
        usage_removed = FilteredStream(None, CHAT.api.usage_removed) if filtering else None
        tap = addon_module.StreamTap(time.monotonic(), make_reader, errors, received, usage_removed)
        for _ in range(chunks):
            tap(chunk)

    return min(timeit.repeat(run, number=1, repeat=repeat)) / chunks * 1e6


def encode_and_serialize(
    encode: Callable[[Sequence[ReadableSpan]], ExportTraceServiceRequest], spans: Sequence[ReadableSpan]
) -> bytes:
    encoded: bytes = encode(spans).SerializeToString()
    return encoded


def in_process(report: list[str], raw: dict[str, Any]) -> None:
    body = load_fixture("test_chat_completion_with_content")["response"]["body"]["string"].encode()
    spans = InMemorySpanExporter()
    telemetry = Telemetry(span_exporters=[spans], metric_readers=[InMemoryMetricReader()])
    call = Call(
        endpoint=CHAT,
        origin=Origin("openai", "api.openai.com", 443, "sk-...abcd"),
        start_time_ns=0,
        duration_s=0.5,
        request=ApiRequest(model="gpt-4o-mini"),
        result=CHAT.api.parse_response(body),
    )

    def record() -> None:
        telemetry.record(call, MetricOptions())

    chunk = (
        b'data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1731368639,'
        b'"model":"gpt-4o-mini-2024-07-18",'
        b'"system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" test"},"logprobs":null,'
        b'"finish_reason":null}]}\n\n'
    )
    stream = EventStream(None, ChatStreamAccumulator(0.0))

    def per_chunk() -> None:
        stream.observe(chunk, 1.0)

    # As the real API writes it: padded JSON before the closing brace.
    anthropic_chunk = (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" test"}        }\n\n'
    )
    anthropic_stream = EventStream(None, anthropic_messages.API.stream_accumulator(0.0))

    def per_anthropic_chunk() -> None:
        anthropic_stream.observe(anthropic_chunk, 1.0)

    # A Gemini chunk as the API writes it: SSE with ?alt=sse (what the SDKs use), and the same
    # object as an element of the JSON array without it.
    gemini_object = (
        b'{"candidates": [{"content": {"role": "model","parts": [{"text": " vast and deep,\\nThe promises of '
        b"clarity to keep.\\n\\nThe trace unfurls, a golden thread so fine,\\nFrom user click, to database "
        b'divine."}]}}],"usageMetadata": {"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-flash",'
        b'"createTime": "2025-10-06T15:51:06.600201Z","responseId": "auXjaInRJPP02PgP1dnn0Qo"}'
    )
    gemini_endpoint = Endpoint(gemini_generate.API, model="gemini-2.5-flash", streamed=True)
    gemini_sse = EventStream(None, gemini_generate.API.stream_accumulator(0.0), SSEFramer())
    gemini_array = EventStream(None, gemini_generate.API.stream_accumulator(0.0), JSONArrayFramer())
    gemini_array.observe(b"[", 0.0)
    sse_chunk, array_chunk = b"data: " + gemini_object + b"\r\n\r\n", gemini_object + b"\r\n,\r\n"
    assert gemini_endpoint.api.stream_framer("application/json", gemini_endpoint) is not None

    # Bedrock: a ConverseStream text delta, and an InvokeModel stream chunk (a base64 Anthropic
    # event inside the event-stream message), each one whole message per network chunk, as Bedrock writes them.
    converse_delta = eventstream.event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " test"}, "p": "abcdefghijklmnopqrstu"}
    )
    converse_stream = EventStream(None, bedrock_converse.API.stream_accumulator(0.0), EventStreamFramer())
    invoke_chunk = eventstream.chunk(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " test"}}
    )
    invoke_stream = EventStream(None, bedrock_invoke.API.stream_accumulator(0.0), EventStreamFramer())
    invoke_stream.observe(eventstream.chunk({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}), 0.0)
    converse_payload, invoke_payload = eventstream.payload(converse_delta), eventstream.payload(invoke_chunk)
    assert json.loads(converse_payload) and json.loads(invoke_payload)
    # An Ollama NDJSON line, as a local server writes it (one line per network write).
    ollama_line = (
        b'{"model":"gemma3:1b","created_at":"2025-08-20T13:48:24.326125Z","message":{"role":"assistant",'
        b'"content":" here"},"done":false}\n'
    )
    ollama_stream = EventStream(None, ollama.CHAT.stream_accumulator(0.0), NDJSONFramer())

    # Pricing one call, as the proxy's log line and the telemetry process do: the library alone,
    # and the addon's cached rates per (provider, model, tier).
    priced = dataclasses.replace(
        call,
        start_time_ns=time.time_ns(),
        result=ApiResult(
            response_model="gpt-4o-mini-2024-07-18",
            service_tier="default",
            usage=Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024, reasoning_tokens=100),
        ),
    )
    prices = Prices()
    library_usage = PricedUsage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)

    def library_price() -> None:
        calc_price(
            library_usage, "gpt-4o-mini-2024-07-18", provider_id="openai", price_context={"service_tier": "default"}
        )

    data = chunk[6:-2]
    loads_of_chunk_us = min(timeit.repeat(lambda: json.loads(data), number=2000, repeat=5)) / 2000 * 1e6
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("bench").create_histogram("h")
    attributes: dict[str, str | int] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}
    attributes |= {"server.address": "api.openai.com"}
    attributes |= {"server.port": 443, "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini"}
    # Spans of distinct calls (own ids and durations), as the exporter sees them live.
    for number in range(SPANS_PER_BATCH):
        call.result.response_id = f"chatcmpl-{number}"
        call.result.usage = Usage(input_tokens=100 + number, output_tokens=10 + number % 50)
        call.duration_s = 0.5 + number / 1000
        record()
    telemetry.tracer_provider.force_flush()
    batch = spans.get_finished_spans()[-SPANS_PER_BATCH:]
    cases = {
        "telemetry process: record one call (metrics and span)": (record, lambda: json.loads(body)),
        "telemetry process: read one chat SSE chunk": (per_chunk, lambda: json.loads(data)),
        "telemetry process: read one Anthropic SSE chunk": (
            per_anthropic_chunk,
            lambda: json.loads(anthropic_chunk[33:-2]),
        ),
        "telemetry process: read one Gemini SSE chunk (?alt=sse)": (
            lambda: gemini_sse.observe(sse_chunk, 1.0),
            lambda: json.loads(gemini_object),
        ),
        "telemetry process: read one Gemini JSON-array chunk": (
            lambda: gemini_array.observe(array_chunk, 1.0),
            lambda: json.loads(gemini_object),
        ),
        "telemetry process: read one Bedrock ConverseStream event-stream message (text delta)": (
            lambda: converse_stream.observe(converse_delta, 1.0),
            lambda: json.loads(converse_payload),
        ),
        "telemetry process: read one Bedrock InvokeModel stream chunk (a base64 Anthropic event)": (
            lambda: invoke_stream.observe(invoke_chunk, 1.0),
            lambda: json.loads(invoke_payload),
        ),
        "telemetry process: read one Ollama NDJSON line": (
            lambda: ollama_stream.observe(ollama_line, 1.0),
            lambda: json.loads(ollama_line),
        ),
        "price one call with genai-prices' `calc_price`": (library_price, lambda: json.loads(body)),
        "price one call with the addon's `Prices.cost_of` (rates cached per model and tier)": (
            lambda: prices.cost_of(priced),
            lambda: json.loads(body),
        ),
        "one histogram measurement in the OpenTelemetry SDK (6 attributes)": (
            lambda: histogram.record(1.0, attributes),
            lambda: json.loads(data),
        ),
    }
    per_span: dict[str, Callable[[Sequence[ReadableSpan]], ExportTraceServiceRequest]] = {
        "telemetry process: OTLP-encode one of our spans (the SDK's `encode_spans`, exporter thread)": encode_spans,
    }
    audio_delta = json.dumps(
        {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1", "delta": AUDIO_FRAME}
    ).encode()
    text_delta = json.dumps({"type": "response.output_text.delta", "response_id": "resp_1", "delta": " test"}).encode()
    socket_frames = {
        "mitmdump: the hook of one Realtime audio frame (3 KB of base64 audio, not parsed)": audio_delta,
        "mitmdump: the hook of one Realtime text delta frame": text_delta,
    }
    tap_rows = {
        "mitmdump: the stream tap, one chat SSE chunk kept for the telemetry process": False,
        "mitmdump: the stream tap, one chat SSE chunk kept, the include_usage additions taken out": True,
    }
    for name, filtering in tap_rows.items():
        raw[name] = {"addon_us": tap_chunk_us(chunk, filtering), "json_loads_us": loads_of_chunk_us}
    for name, content in socket_frames.items():
        frame_us = socket_frame_us(content)
        loads_us = min(timeit.repeat(functools.partial(json.loads, content), number=2000, repeat=5)) / 2000 * 1e6
        raw[name] = {"addon_us": frame_us, "json_loads_us": loads_us}
    hooks_us = hooks_per_call_us(2000)
    unmetered_us = unmetered_hooks_us(2000)
    floor_us = min(timeit.repeat(lambda: json.loads(body), number=2000, repeat=5)) / 2000 * 1e6
    raw["mitmdump's hooks per non-streaming call"] = {"addon_us": hooks_us, "json_loads_us": floor_us}
    raw["mitmdump's hooks per unmetered flow"] = {"addon_us": unmetered_us, "json_loads_us": floor_us}
    report += [
        "## 4. Cost per unit of work, in process",
        "",
        "| work | addon µs | json.loads of the same bytes µs | ratio |",
        "|---|---|---|---|",
        f"| mitmdump: the hooks of one non-streaming call, queued for the telemetry process | {hooks_us:.1f} "
        f"| {floor_us:.1f} | {hooks_us / floor_us:.1f}× |",
        f"| mitmdump: the hooks of a flow that is not metered (another host; the unmetered-stream check) "
        f"| {unmetered_us:.1f} | {floor_us:.1f} | {unmetered_us / floor_us:.1f}× |",
        *(
            f"| {name} | {raw[name]['addon_us']:.1f} | {raw[name]['json_loads_us']:.1f} | "
            f"{raw[name]['addon_us'] / raw[name]['json_loads_us']:.2f}× |"
            for name in (*tap_rows, *socket_frames)
        ),
    ]
    for name, (work, floor) in cases.items():
        work_us = min(timeit.repeat(work, number=2000, repeat=5)) / 2000 * 1e6
        floor_us = min(timeit.repeat(floor, number=2000, repeat=5)) / 2000 * 1e6
        raw[name] = {"addon_us": work_us, "json_loads_us": floor_us}
        report.append(f"| {name} | {work_us:.1f} | {floor_us:.1f} | {work_us / floor_us:.1f}× |")
    floor_us = min(timeit.repeat(lambda: json.loads(body), number=2000, repeat=5)) / 2000 * 1e6
    for name, encode in per_span.items():
        seconds = min(timeit.repeat(functools.partial(encode_and_serialize, encode, batch), number=5, repeat=5))
        work_us = seconds / 5 / len(batch) * 1e6
        raw[name] = {"addon_us": work_us, "json_loads_us": floor_us}
        report.append(f"| {name} | {work_us:.1f} | {floor_us:.1f} | {work_us / floor_us:.1f}× |")
    report.append("")


@contextmanager
def upstream_on_cpu(bench: Bench, cpu: int) -> Iterator[None]:
    """The fake upstream on one CPU while the block runs (the load generator is pinned per run)."""
    before = os.sched_getaffinity(bench.upstream.pid)
    os.sched_setaffinity(bench.upstream.pid, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(bench.upstream.pid, before)


def single_core(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    """Part 8: mitmdump and its telemetry process on one CPU, as in a 1-vCPU container."""
    sizes = bench.sizes
    pinned = ["taskset", "-c", "0"]
    concurrency = 16
    rounds: list[dict[str, dict[str, float]]] = []
    with upstream_on_cpu(bench, 1):
        with bench.proxy(False, wrapper=pinned) as bare, bench.proxy(True, wrapper=pinned) as addon:
            for proxy in (bare, addon):
                bench.load(proxy.port, 4, sizes.warmup, "plain", pin=1)
            for number in range(sizes.single_core_rounds):
                order = (("bare", bare), ("addon", addon)) if number % 2 == 0 else (("addon", addon), ("bare", bare))
                rounds.append(
                    {
                        name: latency_row(
                            bench.measured(proxy, concurrency, sizes.single_core_requests, "plain", pin=1)
                        )
                        for name, proxy in order
                    }
                )
        spans_before = len(bench.collector.spans())
        sent = 0
        with bench.proxy(True, wrapper=pinned) as saturated:
            started = time.monotonic()
            while time.monotonic() - started < sizes.saturation_s:
                bench.load(saturated.port, concurrency, sizes.single_core_requests, "plain", pin=1)
                sent += sizes.single_core_requests
            elapsed = time.monotonic() - started
            time.sleep(1.0)  # one span export interval after the load
            exported_at_end = len(bench.collector.spans()) - spans_before
            # Now mitmdump idles and the telemetry process gets the CPU: does it catch up?
            idle_started = time.monotonic()
            while len(bench.collector.spans()) - spans_before < sent and time.monotonic() - idle_started < 60:
                time.sleep(0.5)
            caught_up_s = time.monotonic() - idle_started
            exported = len(bench.collector.spans()) - spans_before
    dropped = re.findall(r"(\d+) calls were dropped so far|(\d+) calls could not be handed", saturated.output)
    ratios = paired(rounds, "rps", operator.truediv)
    low, high = median_interval(ratios)
    child_per_call_ms = statistics.median(pair["addon"]["child_cpu_s_per_1000"] for pair in rounds)
    raw["single_core"] = {
        "rounds": rounds,
        "sent": sent,
        "exported_at_end_of_load": exported_at_end,
        "exported": exported,
        "elapsed_s": elapsed,
        "catch_up_s": caught_up_s,
    }
    report += [
        "## 8. One CPU: mitmdump and its telemetry process pinned to CPU 0",
        "",
        f"As in a 1-vCPU container (`taskset -c 0`; the load generator and the upstream on CPU 1). "
        f"{sizes.single_core_rounds} paired rounds of {sizes.single_core_requests} non-streaming calls at "
        f"concurrency {concurrency}, then the addon alone at saturation for {sizes.saturation_s:.0f} s.",
        "",
        "| throughput addon / bare: median (90% interval) | added p50 ms | added p99 ms "
        "| telemetry process CPU ms / call | calls sent at saturation | spans exported when the load ended "
        "| spans exported after mitmdump idled |",
        "|---|---|---|---|---|---|---|",
        f"| {statistics.median(ratios):.3f} ({low:.3f}–{high:.3f}) "
        f"| {statistics.median(paired(rounds, 'p50_ms', operator.sub)):+.3f} "
        f"| {statistics.median(paired(rounds, 'p99_ms', operator.sub)):+.3f} "
        f"| {child_per_call_ms:.3f} | {sent} in {elapsed:.0f} s | {exported_at_end} ({exported_at_end / sent:.1%}) "
        f"| {exported} ({exported / sent:.1%}) after {caught_up_s:.1f} s |",
        "",
        f"mitmdump's own words on lost calls: {dropped or 'none'}.",
        "",
    ]


def collectors(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    requests = bench.sizes.collector_requests
    report += [
        "## 5. Non-streaming, concurrency 16: live, dead and slow (2 s) collectors, and spans off",
        "",
        "| collector | req/s | p50 ms | p99 ms | CPU s / 1000 req |",
        "|---|---|---|---|---|",
    ]
    rows: dict[str, list[dict[str, float]]] = {}
    for _ in range(bench.sizes.rounds):
        for collector in ("live", "dead", "slow", "live, spans off"):
            with bench.proxy(True, collector) as proxy:
                bench.load(proxy.port, 4, bench.sizes.warmup, "plain")
                rows.setdefault(collector, []).append(latency_row(bench.measured(proxy, 16, requests, "plain")))
    raw["collectors"] = rows
    for collector, results in rows.items():
        for row in results:
            report.append(
                f"| {collector} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
                f"| {row['cpu_s_per_1000']:.3f} |"
            )
    live = statistics.median(r["rps"] for r in rows["live"])
    for collector in ("dead", "slow", "live, spans off"):
        ratio = statistics.median(r["rps"] for r in rows[collector]) / live
        report.append(f"\nThroughput, {collector} / live: {ratio:.3f}.")
    report.append("")


ATTRIBUTION_NAMES = {
    "noop": "a script with the same four hooks doing nothing (`bench/noop_hooks.py`): mitmproxy's own cost",
    "hooks": "the addon's hooks only (`bench/hooks_only.py`: calls discarded, no telemetry process)",
    "discarding": "the addon with a telemetry process that discards every batch (`bench/discarding_telemetry.py`)",
    "addon": "the addon (hooks and telemetry process)",
    "burn": f"bare mitmdump while another process spins on the other core {BURN_SHARE:.0%} of the time "
    "(`SCHED_IDLE`, `bench/burn.py`)",
    "churn": f"the same, building and dropping Python objects (a few MB) {BURN_SHARE:.0%} of the time, "
    "like the telemetry process",
}


def attribution_scripts(bench: Bench) -> dict[str, list[str]]:
    """mitmdump arguments of parts 6 and 7's variants between bare mitmdump and the addon."""
    return {
        "noop": ["-s", str(ROOT / "bench" / "noop_hooks.py")],
        **{
            name: [
                "-s",
                str(ROOT / "bench" / script),
                "--set",
                f"genai_hosts=127.0.0.1:{bench.upstream_port}=openai;stream_usage=on",
            ]
            for name, script in (
                ("hooks", "hooks_only.py"),
                ("discarding", "discarding_telemetry.py"),
                ("large_batches", "large_batches.py"),
            )
        },
    }


def attribution(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    """Where the addon's cost goes: its hooks alone, and what work on the other core costs."""
    requests = bench.sizes.throughput[16]
    scripts = attribution_scripts(bench)
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {
        "noop": [],
        "hooks": [],
        "discarding": [],
        "addon": [],
        "burn": [],
        "churn": [],
    }
    with (
        bench.proxy(False) as bare,
        bench.proxy(False, "live", *scripts["noop"]) as no_op,
        bench.proxy(False, "live", *scripts["hooks"]) as hooks,
        bench.proxy(False, "live", *scripts["discarding"]) as discarding,
        bench.proxy(True) as addon,
    ):
        for proxy in (bare, no_op, hooks, discarding, addon):
            bench.load(proxy.port, 4, bench.sizes.warmup, "plain")
        for _ in range(bench.sizes.attribution_rounds):
            for name, proxy in (("noop", no_op), ("hooks", hooks), ("discarding", discarding), ("addon", addon)):
                pair = {"bare": latency_row(bench.measured(bare, 16, requests, "plain"))}
                pair["addon"] = latency_row(bench.measured(proxy, 16, requests, "plain"))
                rounds[name].append(pair)
            for name, work in (("burn", "spin"), ("churn", "objects")):
                pair = {"bare": latency_row(bench.measured(bare, 16, requests, "plain"))}
                burner = subprocess.Popen([sys.executable, "-m", "bench.burn", str(BURN_SHARE), "600", work], cwd=ROOT)
                try:
                    pair["addon"] = latency_row(bench.measured(bare, 16, requests, "plain"))
                finally:
                    burner.kill()
                    burner.wait()
                rounds[name].append(pair)
    raw["attribution"] = rounds
    report += [
        "## 6. Where the rest goes (concurrency 16)",
        "",
        "Each variant against bare mitmdump run just before it, "
        f"{bench.sizes.attribution_rounds} rounds, medians of the paired ratios.",
        "",
        "| variant | throughput / bare | mitmdump CPU / bare |",
        "|---|---|---|",
    ]
    for name, pairs in rounds.items():
        report.append(
            f"| {ATTRIBUTION_NAMES[name]} | {statistics.median(paired(pairs, 'rps', operator.truediv)):.3f} "
            f"| {statistics.median(paired(pairs, 'cpu_s_per_1000', operator.truediv)):.3f} |"
        )
    report.append("")


# Longer than `bench/large_batches.py`'s flush interval (2 s).
HANDOVER_SETTLE_S = 2.5


def callgrind_instructions(
    bench: Bench, with_addon: bool, requests: int, *extra: str, flow_detail: int = 0
) -> tuple[int, float]:
    """Instructions mitmdump's process executes for `requests` non-streaming calls, counted by
    callgrind from a warmed-up proxy (the telemetry process is not traced), and the calls per
    second it served meanwhile."""
    out = bench.tmp / f"callgrind-{time.monotonic_ns()}.out"
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    with bench.proxy(with_addon, "live", *extra, wrapper=wrapper, flow_detail=flow_detail) as proxy:
        bench.load(proxy.port, 2, 20, "plain", timeout=120)  # warm up: imports, caches, connections
        subprocess.run(["callgrind_control", "--zero", str(proxy.pid)], check=True, capture_output=True)
        served = bench.load(proxy.port, 4, requests, "plain", timeout=120)
        time.sleep(HANDOVER_SETTLE_S)  # the last batch goes to the telemetry process before the count ends
        subprocess.run(["callgrind_control", "--dump", str(proxy.pid)], check=True, capture_output=True)
    dumps = sorted(bench.tmp.glob(f"{out.name}.*"))  # the --dump file; the one at exit has no suffix
    found = re.search(r"^summary: (\d+)", dumps[0].read_text(), re.M)
    assert found is not None
    return int(found.group(1)), requests / served["elapsed"]


def instructions(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    """Part 7: CPU work as instructions, which do not drift with the machine as timings do; the
    variants of part 6 split the addon's share exactly."""
    requests = bench.sizes.instruction_requests
    scripts = attribution_scripts(bench)
    variants: dict[str, tuple[bool, list[str]]] = {
        "bare": (False, []),
        "noop": (False, scripts["noop"]),
        "hooks": (False, scripts["hooks"]),
        "addon": (True, []),
    }
    measured = {
        name: callgrind_instructions(bench, with_addon, requests, *extra)
        for name, (with_addon, extra) in variants.items()
    }
    counts = {name: count for name, (count, _) in measured.items()}
    large_batches = callgrind_instructions(bench, False, requests, *scripts["large_batches"])[0]
    raw["instructions"] = counts | {"addon, large batches": large_batches}
    bare = counts["bare"]
    rate = measured["addon"][1]  # calls per second under valgrind
    per_flush = rate * telemetry_process.FLUSH_INTERVAL_S
    steps = {
        "noop": "mitmproxy calling a script's hooks (no-op script)",
        "hooks": "the addon's hooks (calls discarded)",
        "addon": "handing calls to the telemetry process",
    }
    report += [
        "## 7. Instructions per request in mitmdump's process (callgrind)",
        "",
        f"{requests} non-streaming calls, concurrency 4, `flow_detail=0`, counted after a warm-up. Exact and "
        f"repeatable, unlike the timings. Under valgrind each 50 ms flush to the telemetry process carried about "
        f"{per_flush:.1f} calls (the addon served {rate:.1f} calls/s), where at full "
        "speed one carries 25 to 35: the last row overstates the hand-over. The line below the table counts it "
        "with batches of full-speed size (`bench/large_batches.py`, a flush every 2 s).",
        "",
        "| variant | instructions per request | / bare | added by this step |",
        "|---|---|---|---|",
        f"| bare mitmdump | {bare / requests:,.0f} | 1.000 | |",
    ]
    previous = bare
    for name, step in steps.items():
        count = counts[name]
        report.append(
            f"| {ATTRIBUTION_NAMES[name]} | {count / requests:,.0f} | {count / bare:.3f} "
            f"| {step}: {(count - previous) / bare:+.1%} |"
        )
        previous = count
    # mitmdump's default: a line per flow, and the addon's per call
    bare_shown = callgrind_instructions(bench, False, requests, flow_detail=1)[0]
    addon_shown = callgrind_instructions(bench, True, requests, flow_detail=1)[0]
    large_shown = callgrind_instructions(bench, False, requests, *scripts["large_batches"], flow_detail=1)[0]
    raw["instructions_flow_detail_1"] = {
        "bare": bare_shown,
        "addon": addon_shown,
        "addon, large batches": large_shown,
    }
    report += [
        "",
        f"Addon / bare: {counts['addon'] / bare:.3f}; with batches of full-speed size "
        f"{large_batches / bare:.3f} ({large_batches / requests:,.0f} instructions per request).",
        "",
        f"At `flow_detail=1` (a log line per flow, and per call), bare mitmdump {bare_shown / requests:,.0f} "
        f"instructions per request, the addon {addon_shown / requests:,.0f}: addon / bare "
        f"{addon_shown / bare_shown:.3f}; with batches of full-speed size {large_shown / bare_shown:.3f} (one "
        "reply and one log record per batch).",
        "",
    ]


def realtime_round(port: int, sockets: FakeSockets, chunks: int, delay_ms: int) -> dict[str, Any]:
    """One Realtime session through the proxy on `port`: a response of `chunks` audio chunks (an
    audio and a transcript frame each, `delay_ms` apart). Frames per second while they flowed, and
    each frame's time from the fake's send to the client's receipt."""
    received: list[float] = []
    with ws_connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", max_size=None, proxy=None) as socket:
        json.loads(socket.recv(timeout=10))  # session.created
        metadata = {"chunks": str(chunks), "delay_ms": str(delay_ms)}
        socket.send(json.dumps({"type": "response.create", "response": {"metadata": metadata}}))
        while True:
            frame = socket.recv(timeout=30)
            received.append(time.monotonic())
            if '"response.done"' in frame[:40]:
                break
    log = sockets.sessions[-1]
    sent = log.sent_at[-len(received) :]
    delays = [(got - put) * 1000 for got, put in zip(received, sent, strict=True)]
    frames = len(received) - 2  # response.created and response.done aside
    return {"frames": frames, "fps": frames / (received[-1] - received[0]), "delays_ms": delays}


def realtime(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    """Part 9: Realtime frames through bare mitmdump and through the addon, alternating."""
    sizes = bench.sizes
    rows: dict[str, dict[str, list[float]]] = {"bare": {"fps": [], "delay": []}, "addon": {"fps": [], "delay": []}}
    with FakeSockets() as sockets:
        upstream = ["--mode", f"reverse:http://127.0.0.1:{sockets.port}", "--set", "flow_detail=0"]
        hosts = ["--set", f"genai_hosts=127.0.0.1:{sockets.port}=openai"]
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": bench.collector.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
        with (
            Mitmdump(upstream, env, bench.tmp / "realtime-bare", with_addon=False) as bare,
            Mitmdump([*upstream, *hosts], env, bench.tmp / "realtime-addon") as addon,
        ):
            for proxy in (bare, addon):  # warm both up
                realtime_round(proxy.port, sockets, 20, 0)
            for _ in range(sizes.realtime_rounds):
                for name, proxy in (("bare", bare), ("addon", addon)):
                    rows[name]["fps"].append(realtime_round(proxy.port, sockets, sizes.realtime_chunks, 0)["fps"])
                    paced = realtime_round(proxy.port, sockets, sizes.realtime_paced_chunks, 10)
                    rows[name]["delay"] += paced["delays_ms"]
    raw["realtime"] = rows
    fps = {name: statistics.median(row["fps"]) for name, row in rows.items()}
    delay = {name: (percentile(row["delay"], 0.5), percentile(row["delay"], 0.99)) for name, row in rows.items()}
    report += [
        f"## 9. Realtime API frames over WebSocket ({sizes.realtime_rounds} rounds, alternating)",
        "",
        f"Unpaced: one response of {sizes.realtime_chunks} audio chunks (3 KB of base64 audio and a transcript "
        f"frame each), frames per second while they flowed (median of rounds). Paced: "
        f"{sizes.realtime_paced_chunks} chunks 10 ms apart, each frame timed from the fake's send to the "
        "client's receipt.",
        "",
        "| variant | frames/s | frame delay p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(f"| {name} | {fps[name]:,.0f} | {delay[name][0]:.2f} | {delay[name][1]:.2f} |" for name in rows),
        "",
        f"frames/s addon / bare: **{fps['addon'] / fps['bare']:.3f}**; added delay p99: "
        f"**{delay['addon'][1] - delay['bare'][1]:+.2f} ms**",
        "",
    ]


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {memory_total_gb():.0f} GiB, {platform.platform()}",
        f"- Python {platform.python_version()}, mitmproxy {version('mitmproxy')}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}",
        "- load generator, fake upstream, mitmdump and the OTLP receiver share these cores",
        "",
    ]


def memory_total_gb() -> float:
    return int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests, to check that it works")
    parser.add_argument("--report", type=Path, help="write the Markdown report here as well")
    parser.add_argument("--raw", type=Path, help="write the raw numbers as JSON here")
    parser.add_argument(
        "--parts", default="1,2,3,4,5,6,7,8,9,10,11", help="which parts to run, e.g. 1,5 (default: all)"
    )
    parser.add_argument("--rounds", type=int, help="paired rounds in parts 1 (per concurrency) and 6 (default: 25, 7)")
    parser.add_argument(
        "--pool", type=Path, nargs="+", metavar="RAW", help="only pool part 1 of earlier runs (their --raw files)"
    )
    options = parser.parse_args()
    if options.pool:
        print("\n".join(pooled_throughput(options.pool)))
        return
    chosen = set(options.parts.split(","))
    sizes = SMOKE if options.smoke else Sizes()
    if options.rounds:
        sizes.throughput_rounds = sizes.attribution_rounds = options.rounds
    report = [
        "# Benchmark: mitmdump + addon against bare mitmdump",
        "",
        "Command: `make bench`" + (" (smoke)" if options.smoke else ""),
        "",
        *machine(),
    ]
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="genai-bench-") as tmp:
        bench = Bench(sizes, Path(tmp))
        try:
            parts = (
                ("1", throughput),
                ("2", streaming),
                ("3", memory),
                ("5", collectors),
                ("6", attribution),
                ("7", instructions),
                ("8", single_core),
                ("9", realtime),
                ("10", fleet),
                ("11", sessions_part),
            )
            for number, part in parts:
                if number in chosen:
                    started = time.monotonic()
                    part(bench, report, raw)
                    print(f"[{part.__name__} done in {time.monotonic() - started:.0f}s]", file=sys.stderr, flush=True)
            if "4" in chosen:
                in_process(report, raw)
        finally:
            bench.close()
    text = "\n".join(report)
    print(text)
    if options.report:
        options.report.write_text(text + "\n")
    if options.raw:
        options.raw.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
