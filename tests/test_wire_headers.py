"""Header fields: request ids, rate limits (OpenAI's durations, Anthropic's moments), API versions."""

from datetime import UTC, datetime

import pytest

from harness.fake_openai import load_fixture
from harness.recordings import load_anthropic
from wire import REGISTRY
from wire.anthropic_messages import ANTHROPIC
from wire.headers import RateLimits, UpstreamInfo, parse_request_headers, parse_reset_duration
from wire.openai_common import OPENAI

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("8.64s", 8.64),
        ("132ms", 0.132),
        ("1m3s", 63.0),
        ("2h0m0s", 7200.0),
        ("0s", 0.0),
        ("6m0s", 360.0),
        ("", None),
        ("soon", None),
        ("1m3", None),
        ("-1s", None),
    ],
)
def test_rate_limit_reset_durations(text, seconds):
    assert parse_reset_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_headers_of_a_recorded_response():
    headers = {
        k.lower(): v[0] if isinstance(v, list) else v
        for k, v in load_fixture("test_chat_completion_streaming")["response"]["headers"].items()
    }
    info = OPENAI.upstream(headers, NOW)
    assert info.rate_limits == RateLimits(10000, 9999, 8.64, 10000, 9978, 0.132)
    assert info.request_id == "req_c367cf360ee88481fb7cd6c5d45bf9dc"
    assert info.processing_ms == 207


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-tokens": "9" * 40, "x-request-id": "<script>" * 30, "openai-processing-ms": "fast"},
        {"x-ratelimit-remaining-tokens": "²", "x-ratelimit-reset-tokens": "٣s"},  # found by `make fuzz`
        {"anthropic-ratelimit-requests-reset": "tomorrow", "anthropic-ratelimit-tokens-reset": "2026-03-03T03:03:04"},
        {"anthropic-ratelimit-input-tokens-remaining": "-5", "request-id": "req 1"},
    ],
)
def test_hostile_rate_limit_and_request_id_headers_are_ignored(headers):
    for vendor in REGISTRY.vendors:
        assert vendor.upstream(headers, NOW) == UpstreamInfo()


# --- content capture ----------------------------------------------------------------------


def test_anthropic_rate_limits_of_a_recorded_response_reset_in_seconds_from_the_calls_end():
    headers = load_anthropic("test_sync_messages_create_streaming").response_headers
    end = datetime(2026, 3, 3, 3, 3, 3, 500_000, tzinfo=UTC).timestamp()  # half a second before the resets
    info = ANTHROPIC.upstream(headers, end)
    limits = info.rate_limits
    assert (limits.limit_requests, limits.remaining_requests, limits.reset_requests_s) == (1000, 999, 0.5)
    assert (limits.limit_input_tokens, limits.remaining_input_tokens) == (450000, 450000)
    assert (limits.limit_output_tokens, limits.remaining_output_tokens, limits.reset_output_tokens_s) == (
        90000,
        90000,
        0.5,
    )
    assert info.request_id == headers["request-id"]
    assert ANTHROPIC.upstream(headers, end + 60).rate_limits.reset_requests_s == 0.0  # past: no negative wait


def test_anthropic_version_and_betas_are_read_bounded():
    found = ANTHROPIC.request_attributes(
        {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219, oauth-2025-04-20,," + "x," * 50}
    )
    assert found["version"] == "2023-06-01"
    betas = found["beta"]
    assert isinstance(betas, list) and betas[:2] == ["claude-code-20250219", "oauth-2025-04-20"]
    assert len(betas) == 32
    assert ANTHROPIC.request_attributes({}) == {}


@pytest.mark.parametrize(
    ("user_agent", "name", "version", "client"),
    [
        ("OpenAI/Python 1.54.3", "openai-python", "1.54.3", "openai-python/1"),  # the SDKs' form
        ("AsyncAnthropic/Python 0.75.0", "asyncanthropic-python", "0.75.0", "asyncanthropic-python/0"),
        ("claude-cli/2.1.197 (external, sdk-cli)", "claude-cli", "2.1.197", "claude-cli/2"),
        ("codex_cli_rs/0.171.0 (Mac OS 15.1.0; arm64) iTerm.app/3.5.11", "codex_cli_rs", "0.171.0", "codex_cli_rs/0"),
        ("curl/8.5.0", "curl", "8.5.0", "curl/8"),
        ("node", "node", None, "node"),
        ("", "unknown", None, "unknown"),
        (None, "unknown", None, "unknown"),
        ("Weird<Name>/x", "weirdname", "x", "weirdname"),
    ],
)
def test_the_client_is_named_by_its_user_agents_product_and_major_version(user_agent, name, version, client):
    parsed = parse_request_headers({"user-agent": user_agent} if user_agent is not None else {}).client
    assert (parsed.name, parsed.version, parsed.label) == (name, version, client)


def test_the_user_agent_kept_on_spans_is_capped():
    info = parse_request_headers({"user-agent": "a/1 " + "x" * 1000})
    assert info.user_agent is not None and len(info.user_agent) == 256
