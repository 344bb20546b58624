"""A call's attributes (`otel.attributes`): pure functions of the call, tested without the SDK."""

import logging

from otel.attributes import OVERFLOW_VALUE, BoundedValues, metric_attributes, span_attributes
from tests.builders import finished_call
from wire import anthropic_messages
from wire.call import Endpoint
from wire.content import CapturedContent
from wire.headers import RateLimits, UpstreamInfo, parse_request_headers
from wire.records import ApiRequest, ApiResult, Usage

V1_41_CACHE_WRITE = "gen_ai.usage.cache_creation.input_tokens"


def test_every_metric_carries_the_operation_provider_server_models_and_error():
    call = finished_call(
        request=ApiRequest(model="gpt-4o-mini"),
        result=ApiResult(response_model="gpt-4o-mini-2024-07-18", error_type="rate_limit_exceeded"),
        status_code=429,
    )
    assert metric_attributes(call, BoundedValues()) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "error.type": "rate_limit_exceeded",
    }


def test_a_call_without_model_or_error_has_no_such_attributes():
    attributes = metric_attributes(finished_call(status_code=200), BoundedValues())
    assert not {"gen_ai.request.model", "gen_ai.response.model", "error.type"} & set(attributes)


def test_client_chosen_values_are_bounded(caplog):
    bounded = BoundedValues(limit=2)
    with caplog.at_level(logging.WARNING, logger="genai"):
        values = [bounded("gen_ai.request.model", f"m{i}") for i in range(4)] + [bounded("gen_ai.request.model", "m0")]
    assert values == ["m0", "m1", OVERFLOW_VALUE, OVERFLOW_VALUE, "m0"]
    assert caplog.text.count("More than 2 distinct values of gen_ai.request.model") == 1


def test_the_span_has_usage_the_vendors_namespace_rate_limits_and_no_empty_values():
    call = finished_call(
        endpoint=Endpoint(anthropic_messages.API),
        provider="anthropic",
        request=ApiRequest(model="claude-sonnet-4-6", max_tokens=32, temperature=0.5),
        result=ApiResult(
            response_id="msg_1",
            finish_reasons=["end_turn"],
            usage=Usage(input_tokens=700, output_tokens=20, cache_read_tokens=500, cache_write_tokens=100),
        ),
        status_code=200,
        cost_usd=0.0042,
    )
    upstream = UpstreamInfo(request_id="req_1", rate_limits=RateLimits(remaining_requests=49))
    headers = parse_request_headers({"user-agent": "Anthropic/Python 0.75.0"})
    metrics = metric_attributes(call, BoundedValues())
    attributes = span_attributes(call, upstream, headers, metrics, V1_41_CACHE_WRITE)
    assert metrics.items() <= attributes.items()
    assert attributes["gen_ai.usage.input_tokens"] == 700 and attributes["gen_ai.usage.cache_read.input_tokens"] == 500
    assert attributes[V1_41_CACHE_WRITE] == 100 and attributes["gen_ai.usage.cost_usd"] == 0.0042
    assert attributes["anthropic.request.id"] == "req_1" and attributes["anthropic.ratelimit.remaining_requests"] == 49
    assert attributes["anthropic.api_key.masked"] == "sk-...abcd" and attributes["gen_ai.request.max_tokens"] == 32
    assert attributes["user_agent.original"] == "Anthropic/Python 0.75.0"
    assert None not in attributes.values()
    assert "gen_ai.input.messages" not in attributes  # content only when captured


def test_captured_content_goes_on_the_span():
    content = CapturedContent(input_messages='[{"role":"user"}]', output_messages='[{"role":"assistant"}]')
    call = finished_call(content=content, status_code=200)
    attributes = span_attributes(call, UpstreamInfo(), parse_request_headers({}), {}, V1_41_CACHE_WRITE)
    assert attributes["gen_ai.input.messages"] == '[{"role":"user"}]'
    assert attributes["gen_ai.output.messages"] == '[{"role":"assistant"}]'


def test_an_agents_session_names_the_conversation_and_the_agent():
    headers = parse_request_headers(
        {
            "user-agent": "claude-cli/2.1.332 (external, sdk-cli)",
            "x-claude-code-session-id": "s-1",
            "x-claude-code-agent-id": "a-7",
        }
    )
    attributes = span_attributes(finished_call(status_code=200), UpstreamInfo(), headers, {}, V1_41_CACHE_WRITE)
    assert attributes["gen_ai.conversation.id"] == "s-1"
    assert (attributes["gen_ai.agent.name"], attributes["gen_ai.agent.id"]) == ("claude-cli", "a-7")
    responses = finished_call(request=ApiRequest(conversation_id="conv_9"), status_code=200)
    assert (
        span_attributes(responses, UpstreamInfo(), headers, {}, V1_41_CACHE_WRITE)["gen_ai.conversation.id"] == "conv_9"
    )
    plain = span_attributes(
        finished_call(status_code=200), UpstreamInfo(), parse_request_headers({}), {}, V1_41_CACHE_WRITE
    )
    assert not {"gen_ai.conversation.id", "gen_ai.agent.name", "gen_ai.agent.id"} & set(plain)
