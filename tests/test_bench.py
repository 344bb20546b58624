"""The benchmark's smoke run: it must keep working. It asserts no timing (that is `make bench`)."""

import json
import subprocess
import sys

import pytest

from bench.run import pooled_throughput
from harness.mitmdump import ROOT


@pytest.mark.timeout(660)  # part 7 starts mitmdump four times under valgrind
def test_the_benchmark_runs_end_to_end(tmp_path):
    report = tmp_path / "report.md"
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--report", str(report)],
        cwd=ROOT,
        timeout=600,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    text = report.read_text()
    for section in (
        "## 1. Non-streaming",
        "## 2. Streaming",
        "## 3. Memory",
        "## 4. Cost per unit",
        "## 5. Non-streaming",
        "## 6. Where the rest goes",
        "## 7. Instructions per request",
        "## 8. One CPU",
        "## 9. Realtime API frames",
    ):
        assert section in text
    assert "| 16 | 1 |" in text and "throughput addon / bare" in text  # a paired round and the summary
    assert "| addon: telemetry process |" in text  # its memory, next to mitmdump's
    assert "addon, include_usage rewrite + strip" in text
    assert "| addon, Anthropic stream |" in text and "| observe, one Anthropic SSE chunk |" in text
    assert "| mitmdump: the hook of one Realtime audio frame" in text and "frames/s addon / bare" in text
    assert "spans exported after mitmdump idled" in text  # the single-CPU run counts what reached the collector


def test_a_short_soak_keeps_every_token_and_span_through_collector_outages():
    finished = subprocess.run(
        [sys.executable, "-m", "bench.soak", "6"], cwd=ROOT, timeout=240, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "collector outages" in finished.stdout and "FAIL" not in finished.stdout


def test_pooling_takes_every_round_of_every_run_per_concurrency(tmp_path):
    def rounds(*addon_rps):
        return [{"bare": {"rps": 100.0}, "addon": {"rps": rps}} for rps in addon_rps]

    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps({"throughput_c1": rounds(90, 96), "throughput_c16": rounds(99), "streaming": []}))
    second.write_text(json.dumps({"throughput_c1": rounds(97)}))
    table = pooled_throughput([first, second])
    assert "pooled over 2 runs: first.json, second.json" in table[0]
    assert [row.split(" | ")[:3] for row in table[-2:]] == [
        ["| 1", "3", "0.960 (0.900–0.970)"],
        ["| 16", "1", "0.990 (0.990–0.990)"],
    ]
    assert table[-2].endswith("| 67% |") and table[-1].endswith("| 100% |")
