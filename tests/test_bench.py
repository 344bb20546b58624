"""The benchmark's code keeps producing figures. It asserts no timing (that is `make bench`)."""

import json
import subprocess
import sys

import pytest

from bench.hooks_in_situ import in_situ, report
from bench.run import SHOWN_PREFIX, pooled_throughput
from bench.sessions import agent_sessions, report_sessions
from harness.mitmdump import ROOT


@pytest.mark.end_to_end
def test_a_short_run_of_three_parts_measures_both_sides(tmp_path):
    """Parts 1, 4 and 9 at smoke size (seconds). The full smoke run, valgrind's part 7 too, is
    `make bench BENCH_ARGS=--smoke` (about 8 minutes): run it after changing the benchmark."""
    report, raw = tmp_path / "report.md", tmp_path / "raw.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--parts", "1,4,9", "--report", str(report), "--raw", str(raw)],
        cwd=ROOT,
        timeout=150,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    figures = json.loads(raw.read_text())
    for concurrency in ("throughput_c1", "throughput_c16", "shown_mitmdump, flow_detail=1", "shown_mitmweb"):
        (round_,) = figures.pop(concurrency)
        for side in ("bare", "addon"):
            assert round_[side]["rps"] > 0 and 0 < round_[side]["p50_ms"] <= round_[side]["p99_ms"]
    realtime = figures.pop("realtime")
    assert realtime["bare"]["fps"][0] > 0 and realtime["addon"]["fps"][0] > 0
    per_unit = {name: measured["addon_us"] for name, measured in figures.items()}
    assert "telemetry process: read one Bedrock ConverseStream event-stream message (text delta)" in per_unit
    assert "mitmdump: the stream tap, one chat SSE chunk kept for the telemetry process" in per_unit
    assert len(per_unit) >= 10 and all(microseconds > 0 for microseconds in per_unit.values())
    text = report.read_text()
    assert "## 1. Non-streaming" in text and "## 4. Cost per unit" in text and "## 9. Realtime API frames" in text
    assert "| 16 | 1 |" in text and "throughput addon / bare" in text  # a paired round and the summary
    assert "| mitmweb | " in text and "| mitmdump, flow_detail=1 | " in text  # where calls are shown


@pytest.mark.end_to_end
@pytest.mark.timeout(400)  # the telemetry process may catch up late on a busy machine (bench.soak.CATCH_UP_S)
def test_a_short_soak_keeps_every_token_and_span_through_collector_outages():
    finished = subprocess.run(
        [sys.executable, "-m", "bench.soak", "6"], cwd=ROOT, timeout=380, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "collector outages" in finished.stdout and "FAIL" not in finished.stdout


def test_pooling_takes_every_round_of_every_run_per_concurrency_and_shown_setting(tmp_path):
    def rounds(*addon_rps):
        return [{"bare": {"rps": 100.0}, "addon": {"rps": rps}} for rps in addon_rps]

    first, second = tmp_path / "first.json", tmp_path / "second.json"
    shown = f"{SHOWN_PREFIX}mitmweb"
    first.write_text(
        json.dumps(
            {"throughput_c1": rounds(90, 96), "throughput_c16": rounds(99), shown: rounds(93), "streaming": rounds(1)}
        )
    )
    second.write_text(json.dumps({"throughput_c1": rounds(97), shown: rounds(95)}))
    table = pooled_throughput([first, second])
    assert "pooled over 2 runs: first.json, second.json" in table[0]
    assert [row.split(" | ")[:3] for row in table[-3:]] == [
        ["| `flow_detail=0`, concurrency 1", "3", "0.960 (0.900–0.970)"],
        ["| `flow_detail=0`, concurrency 16", "1", "0.990 (0.990–0.990)"],
        ["| mitmweb, concurrency 16", "2", "0.940 (0.930–0.950)"],
    ]
    assert [row.rsplit(" | ", 1)[1] for row in table[-3:]] == ["67% |", "100% |", "50% |"]


def test_agent_sessions_memory_is_bounded_by_the_session_limit_and_freed_when_idle():
    """Part 11, small: at twice the limit as many are open as at the limit, and idle frees them."""
    measured = agent_sessions(300)
    stages = measured["stages"]
    assert stages["at the limit"][1:] == (300, 300) and stages["twice the limit"][1:] == (300, 300)
    assert stages["twice the limit"][0] < 1.3 * stages["at the limit"][0]
    assert stages["all idle"][1:] == (0, 0) and stages["all idle"][0] < stages["at the limit"][0]
    table = report_sessions(measured)
    assert "| twice the limit | 300 | 300 |" in "\n".join(table)


@pytest.mark.end_to_end
def test_the_hooks_are_timed_inside_mitmdump_for_exactly_the_calls_of_each_concurrency():
    """`bench.hooks_in_situ`, small: the warm-up's calls are forgotten, each call is timed once per hook."""
    measured = in_situ(40, [1, 4])
    assert list(measured) == [1, 4]
    for durations in measured.values():
        assert {hook: len(times) for hook, times in durations.items()} == {
            "request": 40,
            "responseheaders": 40,
            "response": 40,
        }
        assert all(0 < time_ns < 1_000_000_000 for times in durations.values() for time_ns in times)
    table = report(measured, in_a_loop_us=20.0)
    assert table.count("\n| ") == 2 and "(part 4): 20.0 µs per call." in table
