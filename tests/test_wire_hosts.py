"""`genai_hosts` entries: parsing, refusal with a reason, matching."""

import pytest

from wire.hosts import DEFAULT_HOSTS, HostMatcher, HostRule, match_host, parse_host_rule


@pytest.mark.parametrize(
    ("entry", "host", "port", "provider"),
    [
        ("api.openai.com=openai", "api.openai.com", None, "openai"),
        ("localhost:8000", "localhost", 8000, "openai"),
        ("*.openai.azure.com=azure.ai.openai", "*.openai.azure.com", None, "azure.ai.openai"),
        ("[::1]:8000=vllm", "::1", 8000, "vllm"),
        ("API.Groq.com=groq", "api.groq.com", None, "groq"),
    ],
)
def test_host_rules_parse(entry, host, port, provider):
    assert parse_host_rule(entry) == HostRule(host, port, provider)


def test_host_rules_take_a_stream_usage_switch():
    assert parse_host_rule("localhost:8000=vllm;stream_usage=on").stream_usage is True
    assert parse_host_rule("api.openai.com;stream_usage=off").stream_usage is False


@pytest.mark.parametrize(
    "entry", ["", "=openai", "host:99999", "host:abc", "host=Bad Provider", "a b", "h;stream_usage=maybe", "h;x=1"]
)
def test_bad_host_rules_are_refused_with_a_reason(entry):
    with pytest.raises(ValueError, match=r"\w"):
        parse_host_rule(entry)


def test_host_rules_match_globs_and_ports():
    rules = [parse_host_rule(e) for e in ["*.example.com=x", "localhost:8000=vllm"]]
    assert match_host(rules, "Eu.Example.com", 443).provider == "x"  # type: ignore[union-attr]
    assert match_host(rules, "localhost", 8000).provider == "vllm"  # type: ignore[union-attr]
    assert match_host(rules, "localhost", 8001) is None
    assert match_host(rules, "example.com.evil.net", 443) is None


def test_the_default_hosts_parse_and_include_anthropic():
    rules = [parse_host_rule(entry) for entry in DEFAULT_HOSTS]
    rule = match_host(rules, "api.anthropic.com", 443)
    assert rule is not None and rule.provider == "anthropic"


def test_the_matcher_remembers_each_answer_and_at_most_its_limit():
    rules = [parse_host_rule("*.example.com=vllm")]
    matcher = HostMatcher(rules, limit=5)
    first = matcher("llm.example.com", 443)
    assert first is not None and first.provider == "vllm" and matcher("llm.example.com", 443) is first
    assert matcher("elsewhere.org", 443) is None and len(matcher) == 2
    for number in range(12):
        assert matcher(f"h{number}.example.net", 443) is None
    assert len(matcher) <= 5  # forgotten and asked again, never more than the limit
    assert matcher("llm.example.com", 443) is first
