"""End to end for Anthropic's Messages API: the real `anthropic` SDK → a real mitmdump with the
addon → the fake upstream answering as api.anthropic.com (`harness.fake_anthropic`), telemetry
over OTLP/gRPC to a real receiver.

Reverse mode: a proxy of its own, `genai_extra_hosts=127.0.0.1:PORT=anthropic`, the SDK's base URL
pointing at it (what `ANTHROPIC_BASE_URL` does for Claude Code). Regular mode: the session's
regular proxy (`HTTPS_PROXY` and the mitmproxy CA), api.anthropic.com on the default host list,
reached through the CONNECT forwarder.
"""

import functools
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from harness.e2e import World, spans_for, tokens
from harness.fake_anthropic import claude_code_request, prompt_tokens
from harness.mitmdump import Mitmdump, reverse_args
from harness.recordings import ANTHROPIC_NAMES, load_anthropic

SECRET = "Pq7Wz2Xc9Vb4Nm8Lk3Jh6Gf1Ds5Aq0Ze"
KEY = f"sk-ant-api03-{SECRET}-Rt5Yu8IoPl2KjHg"
OAUTH = f"sk-ant-oat01-{SECRET[::-1]}-Mn4Bv7"
MASKED = f"sk-ant-api03-...{KEY[-4:]}"
PARENT_ID = "c7ad6b7169203331"


@pytest.fixture(scope="module")
def proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="anthropic")
    with Mitmdump(args, world.env, world.tmp / "conf-anthropic") as started:
        yield started


def client(proxy: Mitmdump) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=KEY, max_retries=0)


def ask(text: str = "Say hello in one word.") -> list[Any]:
    return [{"role": "user", "content": text}]


def test_a_plain_message_exports_its_usage_span_and_legacy_counters(world: World, proxy: Mitmdump):
    message = client(proxy).messages.create(model="e2e-claude-plain", max_tokens=64, messages=ask())
    assert message.usage.input_tokens == prompt_tokens({"messages": ask()})
    world.receiver.wait_for(
        lambda: (
            tokens(world, "e2e-claude-plain", "input") == message.usage.input_tokens
            and tokens(world, "e2e-claude-plain", "output") == message.usage.output_tokens
        )
    )
    (span,) = spans_for(world, "e2e-claude-plain")
    assert span.name == "chat e2e-claude-plain"
    assert (span.attributes["gen_ai.provider.name"], span.attributes["gen_ai.operation.name"]) == ("anthropic", "chat")
    assert span.attributes["gen_ai.response.id"] == message.id
    assert span.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert span.attributes["anthropic.request.id"].startswith("req_fake")
    assert span.attributes["anthropic.api_key.masked"] == MASKED
    assert span.attributes["anthropic.version"] == world.fake.received[-1].headers["anthropic-version"]
    assert span.attributes["gen_ai.request.max_tokens"] == 64
    assert span.attributes["user_agent.name"] == "anthropic-python"  # the SDK's "Anthropic/Python 2.x"
    assert span.attributes["user_agent.version"] == anthropic.__version__
    legacy = world.receiver.latest("tokens_counter", model="e2e-claude-plain")
    assert [point.value for point in legacy] == [message.usage.input_tokens + message.usage.output_tokens]


def test_a_stream_reaches_the_client_live_and_is_counted_from_its_cumulative_usage(world: World, proxy: Mitmdump):
    started = time.monotonic()
    arrivals: list[float] = []
    with client(proxy).messages.stream(
        model="e2e-claude-stream",
        max_tokens=64,
        messages=ask(),
        extra_headers={"x-fake-chunks": "6", "x-fake-chunk-delay-ms": "250"},
    ) as stream:
        for text in stream.text_stream:
            assert text
            arrivals.append(time.monotonic() - started)
        final = stream.get_final_message()
    assert len(arrivals) == 6
    # The fake paces every event 250 ms apart (message_start, content_block_start, ping, then the
    # deltas): each delta reaches the client as it is sent, not at the end.
    assert arrivals[-1] - arrivals[0] > 1.0
    expected_input = prompt_tokens({"messages": ask()})
    assert (final.usage.input_tokens, final.usage.output_tokens) == (expected_input, 6)
    world.receiver.wait_for(
        lambda: (
            tokens(world, "e2e-claude-stream", "input") == expected_input
            and tokens(world, "e2e-claude-stream", "output") == 6
        )  # message_delta's 6, not 1 + 6
    )
    (span,) = spans_for(world, "e2e-claude-stream")
    assert span.attributes["gen_ai.request.stream"] is True
    assert 0.7 < span.attributes["gen_ai.response.time_to_first_chunk"] < arrivals[0]  # the first delta, not the ping
    chunk_points = world.receiver.latest(
        "gen_ai.client.operation.time_per_output_chunk", gen_ai__request__model="e2e-claude-stream"
    )
    assert sum(point.count for point in chunk_points) == 5
    assert sum(point.value for point in chunk_points) == pytest.approx(5 * 0.25, abs=0.3)


def test_cache_reads_and_writes_are_input_split_into_their_parts_and_priced(world: World, proxy: Mitmdump):
    headers = {"x-fake-cache-read": "1000", "x-fake-cache-write-5m": "200", "x-fake-cache-write-1h": "100"}
    events = list(
        client(proxy).messages.create(
            model="claude-sonnet-4-20250514",
            max_tokens=64,
            messages=ask("cached e2e"),
            stream=True,
            extra_headers=headers,
        )
    )
    assert events[-1].type == "message_stop"
    uncached = prompt_tokens({"messages": ask("cached e2e")})
    span = world.receiver.wait_for(
        lambda: next(
            (s for s in world.receiver.spans() if s.attributes.get("gen_ai.usage.cache_read.input_tokens") == 1000),
            None,
        )
    )
    attributes = span.attributes
    assert attributes["gen_ai.usage.input_tokens"] == uncached + 1300
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert attributes["gen_ai.usage.cache_creation.5m.input_tokens"] == 200
    assert attributes["gen_ai.usage.cache_creation.1h.input_tokens"] == 100
    # claude-sonnet-4: $3 in, $0.30 cache read, $3.75 5-minute write, $6 1-hour write, $15 out (per 1M)
    output = next(event for event in events if event.type == "message_delta").usage.output_tokens
    assert output == 6
    expected = (uncached * 3 + 1000 * 0.3 + 200 * 3.75 + 100 * 6 + output * 15) / 1e6
    assert attributes["gen_ai.usage.cost_usd"] == pytest.approx(expected)

    def cache_sums() -> tuple[float, float]:
        model = {"gen_ai__request__model": "claude-sonnet-4-20250514"}
        reads = world.receiver.latest("gen_ai.client.token.cache_read", **model)
        writes = world.receiver.latest("gen_ai.client.token.cache_write", **model)
        return sum(p.value for p in reads), sum(p.value for p in writes)

    world.receiver.wait_for(lambda: cache_sums() == (1000, 300))


def test_an_error_inside_a_stream_and_an_overloaded_answer_give_their_error_types(world: World, proxy: Mitmdump):
    sdk = client(proxy)
    with pytest.raises(anthropic.APIStatusError):
        list(
            sdk.messages.create(
                model="e2e-claude-errors",
                max_tokens=64,
                messages=ask(),
                stream=True,
                extra_headers={"x-fake-stream-error": "overloaded_error"},
            )
        )
    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk.messages.create(
            model="e2e-claude-errors",
            max_tokens=64,
            messages=ask(),
            extra_headers={"x-fake-error": "529:overloaded_error"},
        )
    assert raised.value.status_code == 529
    with pytest.raises(anthropic.RateLimitError):
        sdk.messages.create(
            model="e2e-claude-errors",
            max_tokens=64,
            messages=ask(),
            extra_headers={"x-fake-error": "429:rate_limit_error"},
        )
    spans = spans_for(world, "e2e-claude-errors", count=3)
    assert sorted(s.attributes["error.type"] for s in spans) == [
        "overloaded_error",
        "overloaded_error",
        "rate_limit_error",
    ]
    assert sorted(s.attributes.get("http.response.status_code") for s in spans) == [200, 429, 529]
    assert all(s.status_code == 2 for s in spans)  # STATUS_CODE_ERROR

    def error_types() -> set[str]:
        durations = world.receiver.latest(
            "gen_ai.client.operation.duration", gen_ai__request__model="e2e-claude-errors"
        )
        return {p.attributes["error.type"] for p in durations}

    world.receiver.wait_for(lambda: error_types() == {"overloaded_error", "rate_limit_error"})


def test_rate_limit_headers_become_gauges(world: World, proxy: Mitmdump):
    client(proxy).messages.create(model="e2e-claude-limits", max_tokens=8, messages=ask())
    remaining = world.receiver.wait_for(
        lambda: world.receiver.latest(
            "anthropic.ratelimit.remaining_input_tokens", gen_ai__request__model="e2e-claude-limits"
        )
    )
    assert [p.value for p in remaining] == [449000]
    (span,) = spans_for(world, "e2e-claude-limits")
    assert 25 < span.attributes["anthropic.ratelimit.reset_requests_s"] <= 31  # the fake resets 30 s ahead


def test_the_clients_trace_becomes_the_parent(world: World, proxy: Mitmdump):
    trace_id = "1af7651916cd43dd8448eb211c80319d"
    client(proxy).messages.create(
        model="e2e-claude-trace",
        max_tokens=8,
        messages=ask(),
        extra_headers={"traceparent": f"00-{trace_id}-{PARENT_ID}-01"},
    )
    (span,) = spans_for(world, "e2e-claude-trace")
    assert (span.trace_id, span.parent_span_id) == (trace_id, PARENT_ID)


def recorded_usage(name: str) -> tuple[int, int] | None:
    """(input, output) of a recording by the documented rule, read with plain string handling."""
    body = load_anthropic(name).response_body.decode()
    usage: dict[str, int] = {}
    if body.lstrip().startswith("{"):
        usage = json.loads(body).get("usage") or {}
    else:
        for line in body.splitlines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
                usage.update((data.get("message") or {}).get("usage") or data.get("usage") or {})
    if not usage:
        return None
    total_input = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    return total_input, usage["output_tokens"]


def span_in_trace(world: World, trace_id: str) -> Any:
    return next((s for s in world.receiver.spans() if s.trace_id == trace_id), None)


def test_every_recording_is_replayed_byte_for_byte_and_yields_its_recorded_usage(world: World, proxy: Mitmdump):
    with anthropic.DefaultHttpxClient(base_url=proxy.url, timeout=30, trust_env=False) as http:
        for number, name in enumerate(ANTHROPIC_NAMES, 1):
            recording = load_anthropic(name)
            trace_id = f"{0xA000 + number:032x}"
            response = http.post(
                "/v1/messages",
                content=recording.request_body,
                headers={
                    "x-api-key": KEY,
                    "anthropic-version": "2023-06-01",
                    "content-type": "application/json",
                    "x-fake-fixture": name,
                    "traceparent": f"00-{trace_id}-{PARENT_ID}-01",
                },
            )
            assert response.status_code == recording.status
            assert response.content == recording.response_body, name
            span = world.receiver.wait_for(functools.partial(span_in_trace, world, trace_id))
            if recording.status >= 400:
                assert span.attributes["error.type"] == json.loads(recording.response_body)["error"]["type"], name
            usage = recorded_usage(name)
            if usage is None:
                assert "gen_ai.usage.input_tokens" not in span.attributes, name
                continue
            assert (
                span.attributes["gen_ai.usage.input_tokens"],
                span.attributes["gen_ai.usage.output_tokens"],
            ) == usage
            assert span.attributes["gen_ai.response.model"] == "claude-sonnet-4-20250514", name


def test_regular_mode_with_https_proxy_and_the_mitmproxy_ca(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    sdk = anthropic.Anthropic(api_key=KEY, max_retries=0)  # the real https://api.anthropic.com
    plain = sdk.messages.create(model="e2e-claude-regular", max_tokens=16, messages=ask())
    with sdk.messages.stream(model="e2e-claude-regular", max_tokens=16, messages=ask()) as stream:
        streamed = stream.get_final_message()
    assert "api.anthropic.com:443" in world.forwarder.tunnels
    world.receiver.wait_for(
        lambda: (
            tokens(world, "e2e-claude-regular", "output") == plain.usage.output_tokens + streamed.usage.output_tokens
        )
    )
    spans = spans_for(world, "e2e-claude-regular", count=2)
    assert {(s.attributes["server.address"], s.attributes["server.port"]) for s in spans} == {
        ("api.anthropic.com", 443)
    }
    assert {s.attributes["gen_ai.provider.name"] for s in spans} == {"anthropic"}


def test_what_claude_code_sends_is_metered_exactly(world: World, monkeypatch: pytest.MonkeyPatch):
    """Claude Code 2.1 headless through the proxy (regular mode, an OAuth token): two GETs that
    are not inference, then one streamed POST /v1/messages?beta=true with nine betas, cache_control
    blocks and nine tools. Exactly one call is metered, with the stream's usage."""
    headers = {
        "authorization": f"Bearer {OAUTH}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": ",".join(f"beta-{n}-2025-01-01" for n in range(9)),
        "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
        "content-type": "application/json",
    }
    body = claude_code_request("e2e-claude-code")
    before = len(world.receiver.spans())
    trusting_mitmproxy = ssl.create_default_context(cafile=str(world.regular.ca_cert))
    with anthropic.DefaultHttpxClient(proxy=world.regular.url, verify=trusting_mitmproxy, timeout=30) as http:
        for path in ("/api/claude_code/policy_limits", "/api/claude_code/settings"):
            http.get(f"https://api.anthropic.com{path}", headers=headers)
        with http.stream(
            "POST", "https://api.anthropic.com/v1/messages?beta=true", json=body, headers=headers
        ) as response:
            streamed = b"".join(response.iter_raw())
    assert streamed.count(b"event: content_block_delta") == 6
    (span,) = spans_for(world, "e2e-claude-code")
    assert span.attributes["gen_ai.usage.output_tokens"] == 6
    assert span.attributes["gen_ai.usage.input_tokens"] == prompt_tokens(body)
    assert len(span.attributes["anthropic.beta"]) == 9
    assert span.attributes["anthropic.api_key.masked"] == f"sk-ant-oat01-...{OAUTH[-4:]}"
    assert (span.attributes["user_agent.name"], span.attributes["user_agent.version"]) == ("claude-cli", "2.1.197")
    time.sleep(0.5)
    assert len(world.receiver.spans()) == before + 1  # the GETs are not calls


def test_no_anthropic_key_anywhere(world: World, proxy: Mitmdump):
    """After every Anthropic path above: no key or OAuth token, nor 8 characters of one, is in
    what was exported or logged."""
    client(proxy).messages.create(model="e2e-claude-secret", max_tokens=8, messages=ask())
    spans_for(world, "e2e-claude-secret")
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    logs = proxy.output + world.regular.output
    assert MASKED in exported
    pieces = {secret[i : i + 8] for secret in (KEY[13:], OAUTH[13:]) for i in range(len(secret) - 7)}
    for text in (exported, logs):
        assert not [piece for piece in pieces if piece in text]
    assert "Traceback" not in logs and "hook failed" not in logs


def test_a_compaction_pass_a_1h_cache_write_and_fast_speed_are_metered_and_priced(world: World, proxy: Mitmdump):
    """The 2026 usage: a server-side compaction pass in `usage.iterations` (left out of the
    top-level counts: billed as the sum), a 1 h cache write at its own rate, `speed: fast`
    recorded. claude-sonnet-4-5: $3 input, $15 output, $6 per million 1 h cache writes, $3.75 5 m."""
    headers = {"x-fake-compaction": "30000", "x-fake-cache-write-1h": "2000", "x-fake-speed": "fast"}
    message = client(proxy).messages.create(
        model="claude-sonnet-4-5-20250929", max_tokens=64, messages=ask("compacted e2e"), extra_headers=headers
    )
    iterations = (message.usage.model_extra or {}).get("iterations") or []
    assert [item["type"] for item in iterations] == ["compaction", "message"]
    turn_input = message.usage.input_tokens + 2000  # uncached + the 1 h write
    span = world.receiver.wait_for(
        lambda: next(
            (s for s in world.receiver.spans() if s.attributes.get("anthropic.response.speed") == "fast"), None
        )
    )
    assert span.attributes["gen_ai.usage.input_tokens"] == turn_input + 30000 + 15000
    assert span.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens + 400
    assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 2000 + 15000
    cost = (
        (message.usage.input_tokens + 30000) * 3
        + 2000 * 6  # the turn's 1 h write
        + 15000 * 3.75  # the compaction pass's 5 m write
        + (message.usage.output_tokens + 400) * 15
    ) / 1e6
    assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(cost, rel=1e-9)
