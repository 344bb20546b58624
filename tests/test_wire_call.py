"""The one record of a finished call: where its bodies are parsed, and the rules written once."""

import pickle

import pytest

from harness.fake_openai import load_fixture
from harness.recordings import load_anthropic
from tests.builders import CHAT, finished_call
from wire import anthropic_messages
from wire.call import Endpoint
from wire.content import CapturedContent
from wire.records import ApiRequest, ApiResult
from wire.stream import ReceivedStream

MESSAGES = Endpoint(anthropic_messages.API)


@pytest.mark.parametrize("name", ["test_chat_completion_with_content", "test_chat_completion_404"])
def test_parse_bodies_reads_deferred_bodies_as_the_api_would(name):
    recorded = load_fixture(name)
    request_body = recorded["request"]["body"].encode()
    response_body = recorded["response"]["body"]["string"].encode()
    status = recorded["response"]["status"]["code"]
    finished = finished_call(status_code=status, request_body=request_body, response_body=response_body).parse_bodies()
    assert finished.request == CHAT.api.parse_request(request_body)
    assert finished.result == CHAT.api.parse_response(response_body)
    assert (finished.request_body, finished.response_body) == (None, None)
    assert finished.error_type == ("model_not_found" if status == 404 else None)


def test_parse_bodies_keeps_what_the_hooks_parsed():
    request, result = ApiRequest(model="m"), ApiResult(response_id="r")
    finished = finished_call(request=request, result=result).parse_bodies()
    assert finished.request is request and finished.result is result


@pytest.mark.parametrize(
    ("flow_error", "result_error", "status", "expected"),
    [
        (None, None, 200, None),
        (None, None, 500, "500"),  # a body without an error object: the status
        (None, "rate_limit_exceeded", 429, "rate_limit_exceeded"),  # the API's own word first
        (None, "overloaded_error", 200, "overloaded_error"),  # an error inside a stream
        ("client_aborted", "overloaded_error", 200, "client_aborted"),  # the connection's fate first
        ("connection_error", None, None, "connection_error"),
    ],
)
def test_the_error_type_rule(flow_error, result_error, status, expected):
    finished = finished_call(flow_error=flow_error, result=ApiResult(error_type=result_error), status_code=status)
    assert finished.error_type == expected


def test_which_model_counts():
    both = finished_call(request=ApiRequest(model="gpt-4o"), result=ApiResult(response_model="gpt-4o-2024-08-06"))
    assert (both.request_model, both.billed_model) == ("gpt-4o", "gpt-4o-2024-08-06")
    deployment_only = finished_call(result=ApiResult(response_model="gpt-4o-2024-08-06"))  # Azure names no model
    assert (deployment_only.request_model, deployment_only.billed_model) == ("gpt-4o-2024-08-06",) * 2
    request_only = finished_call(request=ApiRequest(model="claude-sonnet-4"))  # failed before any answer
    assert (request_only.request_model, request_only.billed_model) == ("claude-sonnet-4",) * 2


def test_a_call_pickles_with_its_wire_api_as_the_same_object():
    finished = finished_call(endpoint=MESSAGES, request_body=b"{}", request_headers={"anthropic-version": "2023-06-01"})
    copy = pickle.loads(pickle.dumps(finished))
    assert copy == finished and copy.endpoint.api is anthropic_messages.API


def test_reset_times_count_from_the_calls_end():
    finished = finished_call(
        endpoint=MESSAGES,
        start_time_ns=1_772_506_980 * 10**9,  # 2026-03-03T03:03:00Z
        duration_s=1.5,
        response_headers={"anthropic-ratelimit-requests-reset": "2026-03-03T03:03:04Z"},
    )
    assert finished.upstream().rate_limits.reset_requests_s == pytest.approx(2.5)


def test_parse_bodies_reads_a_received_stream_and_the_prompt_of_a_captured_call():
    recorded = load_anthropic("test_sync_messages_create_streaming")
    received = ReceivedStream("text/event-stream", None)
    received.add(recorded.response_body, 0.25)
    received.ended_s = 0.5
    finished = finished_call(
        endpoint=MESSAGES,
        request_body=recorded.request_body,
        response_stream=received,
        content=CapturedContent(),
        flow_error="client_aborted",  # left right after the end of the stream: not an abort
        status_code=200,
    ).parse_bodies()
    assert finished.result.usage is not None and finished.result.usage.output_tokens
    assert finished.time_to_first_chunk_s == 0.25 and finished.error_type is None
    assert finished.content is not None
    prompt = anthropic_messages.API.captured_input(recorded.request_body)
    assert finished.content.input_messages == prompt.input_messages
    assert finished.content.input_messages and finished.content.output_messages
    assert finished.response_stream is None and finished.request.stream
