"""WebSocket sessions: OpenAI's Realtime API and the Responses API's WebSocket mode, fed the
frames the fake upstream sends (the real event shapes), and hostile frames."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.fake_openai import ResponsesScript
from harness.fake_realtime import TRANSCRIPTION_MODEL, RealtimeAnswer, transcription_usage
from wire import openai_realtime, openai_responses
from wire.records import Usage
from wire.socket import Operation, SocketSession, frame_response_id, frame_type


def frame(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def tick(self, seconds: float = 0.01) -> tuple[float, int]:
        self.now += seconds
        return self.now, int(self.now * 1e9)


def feed(session: SocketSession, clock: Clock, frames: list[tuple[bool, dict[str, Any]]]) -> list[Operation]:
    done: list[Operation] = []
    for from_client, event in frames:
        done += session.message(from_client, frame(event), *clock.tick())
    return done


SESSION = {
    "type": "session.created",
    "session": {
        "id": "sess_1",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "audio": {"input": {"transcription": {"model": TRANSCRIPTION_MODEL}}, "output": {"voice": "alloy"}},
    },
}


def test_routes_name_the_socket_apis_and_the_model_in_the_url():
    realtime = wire.socket_endpoint_for("/v1/realtime?model=gpt-realtime")
    assert realtime is not None and realtime[0].api is openai_realtime.API and realtime[1] == "gpt-realtime"
    azure = wire.socket_endpoint_for("/openai/realtime?api-version=2025-04-01-preview&deployment=my-voice")
    assert azure is not None and azure[0].deployment == "my-voice" and azure[1] == "my-voice"
    responses = wire.socket_endpoint_for("/v1/responses")
    assert responses is not None and responses[0].api is openai_responses.API
    assert wire.socket_endpoint_for("/v1/chat/completions") is None


def test_frame_heads_are_read_without_parsing():
    delta = frame({"type": "response.output_audio.delta", "response_id": "resp_9", "delta": "A" * 50_000})
    assert frame_type(delta) == "response.output_audio.delta" and frame_response_id(delta) == "resp_9"
    assert frame_type(b'{"delta": "x"}') is None


def test_a_session_of_two_responses_and_a_transcription():
    session = openai_realtime.API.socket_session("gpt-realtime")
    clock = Clock()
    text = RealtimeAnswer(1, audio=False, chunks=3)
    audio = RealtimeAnswer(2, audio=True, chunks=4, cached=8)
    frames: list[tuple[bool, dict[str, Any]]] = [(False, SESSION)]
    frames.append((True, {"type": "response.create", "response": {"output_modalities": ["text"]}}))
    frames += [(False, event) for event in text.events()]
    frames.append((True, {"type": "input_audio_buffer.append", "audio": "AAAA" * 4000}))
    frames.append((True, {"type": "input_audio_buffer.commit"}))
    frames.append((False, {"type": "input_audio_buffer.committed", "item_id": "item_a"}))
    transcribed = {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": "item_a",
        "transcript": "Hi",
        "usage": transcription_usage(3),
    }
    frames.append((False, transcribed))
    frames.append((True, {"type": "response.create", "response": {}}))
    frames += [(False, event) for event in audio.events()]
    done = feed(session, clock, frames)
    first, transcription, second = done
    assert (first.api, transcription.api, second.api) == (
        openai_realtime.API,
        openai_realtime.TRANSCRIPTION,
        openai_realtime.API,
    )
    assert first.result.usage == Usage(
        input_tokens=21,
        output_tokens=3,
        cache_read_tokens=0,
        input_modalities=(("text", 21),),
        output_modalities=(("text", 3),),
    )
    assert second.result.usage == Usage(
        input_tokens=22 + 30,
        output_tokens=4 + 40,
        cache_read_tokens=8,
        input_modalities=(("text", 22), ("audio", 30)),
        output_modalities=(("text", 4), ("audio", 40)),
        cache_read_modalities=(("text", 8),),
    )
    assert first.result.finish_reasons == ["stop"] and first.result.response_id == "resp_fake000001"
    assert first.request.model == "gpt-realtime" and first.result.response_model == "gpt-realtime"
    assert first.time_to_first_chunk_s == pytest.approx(0.02)  # response.create, response.created, the first delta
    assert len(second.chunk_intervals_s) == 7  # 4 audio and 4 transcript deltas
    assert transcription.request.model == TRANSCRIPTION_MODEL
    assert transcription.result.usage == Usage(
        input_tokens=15, output_tokens=5, input_modalities=(("audio", 15),), output_modalities=(("text", 5),)
    )
    info = session.info
    assert (info.session_id, info.model, info.voice, info.output_modalities) == (
        "sess_1",
        "gpt-realtime",
        "alloy",
        ["audio"],
    )
    assert info.transcription_model == TRANSCRIPTION_MODEL


def test_failed_cancelled_and_cut_off_responses():
    session = openai_realtime.API.socket_session(None)
    clock = Clock()
    frames: list[tuple[bool, dict[str, Any]]] = []
    for number, (status, details) in enumerate(
        [
            ("failed", {"type": "failed", "error": {"type": "server_error", "code": "rate_limit_exceeded"}}),
            ("cancelled", {"type": "cancelled", "reason": "turn_detected"}),
            ("incomplete", {"type": "incomplete", "reason": "max_output_tokens"}),
        ]
    ):
        response = {"id": f"r{number}", "status": status, "status_details": details, "usage": None}
        frames += [(False, {"type": "response.created", "response": {"id": f"r{number}"}})]
        frames += [(False, {"type": "response.done", "response": response})]
    frames += [(False, {"type": "response.created", "response": {"id": "open"}})]
    failed, cancelled, incomplete = feed(session, clock, frames)
    assert failed.result.error_type == "rate_limit_exceeded"
    assert cancelled.result.finish_reasons == ["cancelled"] and cancelled.result.error_type is None
    assert incomplete.result.finish_reasons == ["max_output_tokens"]
    (cut_off,) = session.close(*clock.tick())
    assert cut_off.result.error_type == "socket_closed"
    session.message(
        False, frame({"type": "error", "error": {"type": "invalid_request_error", "code": "bad"}}), *clock.tick()
    )
    assert session.info.error_type == "bad"


def test_responses_over_a_websocket_are_read_as_streamed_calls():
    session = openai_responses.API.socket_session(None, capture_content=True)
    clock = Clock()
    done: list[Operation] = []
    for number in range(2):
        request = {"model": "gpt-4o-mini", "input": f"Say it {number}", "metadata": {}}
        done += session.message(True, frame({"type": "response.create", **request}), *clock.tick())
        for sse in ResponsesScript(request, chunks=3, cached_tokens=2).stream_events():
            done += session.message(False, sse.split("data: ", 1)[1].strip().encode(), *clock.tick())
    first, second = done
    expected = ResponsesScript({"model": "gpt-4o-mini", "input": "Say it 0", "metadata": {}}, 3, 2).response()["usage"]
    assert first.result.usage is not None
    assert (first.result.usage.input_tokens, first.result.usage.output_tokens) == (
        expected["input_tokens"],
        expected["output_tokens"],
    )
    assert first.result.usage.cache_read_tokens == 2 and first.request.model == "gpt-4o-mini" and first.request.stream
    assert first.result.finish_reasons == ["stop"] and first.time_to_first_chunk_s is not None
    assert first.content is not None and "Say it 0" in (first.content.input_messages or "")
    assert second.result.response_id != first.result.response_id
    # An error answers the response it was sent for; one still open when the socket closes is cut off.
    session.message(True, frame({"type": "response.create", "model": "m", "input": "x"}), *clock.tick())
    (failed,) = session.message(False, frame({"type": "error", "error": {"code": "invalid_model"}}), *clock.tick())
    assert failed.result.error_type == "invalid_model"
    session.message(True, frame({"type": "response.create", "model": "m", "input": "y"}), *clock.tick())
    (cut_off,) = session.close(*clock.tick())
    assert cut_off.result.error_type == "socket_closed"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(max_size=400),
                st.sampled_from(
                    [
                        b'{"type":"response.created","response":{"id":"r"}}',
                        b'{"type":"response.done","response":{"id":"r","status":"completed","usage":{"input_tokens":1}}}',
                        b'{"type":"response.output_text.delta","response_id":"r","delta":"x"}',
                        b'{"type":"session.updated","session":{"audio":{"output":{"voice":3}}}}',
                        b'{"type":"response.create","model":"m"}',
                        b'{"type":"response.completed","response":{"usage":{"input_tokens":1}}}',
                        b'{"type":"error","error":"x"}',
                        b'{"type":"conversation.item.input_audio_transcription.completed","usage":{"type":"duration"}}',
                    ]
                ),
            ),
        ),
        max_size=30,
    )
)
def test_arbitrary_frames_never_raise(frames):
    for api in (openai_realtime.API, openai_responses.API):
        session = api.socket_session("m", True)
        assert session is not None
        clock = Clock()
        for from_client, content in frames:
            session.message(from_client, content, *clock.tick())
        session.close(*clock.tick())


def test_the_model_asked_for_is_the_urls_or_the_clients_and_the_servers_is_the_response_model():
    """A client asking `?model=gpt-realtime` was recorded as requesting the server's dated model
    from `session.created`; the server's is what answered."""
    dated = json.loads(json.dumps(SESSION))
    dated["session"]["model"] = "gpt-realtime-2025-08-28"
    session = openai_realtime.API.socket_session("gpt-realtime")
    (first,) = feed(
        session,
        Clock(),
        [
            (False, dated),
            (True, {"type": "response.create", "response": {}}),
            *((False, event) for event in RealtimeAnswer(1, audio=False, chunks=2).events()),
        ],
    )
    assert (first.request.model, first.result.response_model) == ("gpt-realtime", "gpt-realtime-2025-08-28")
    assert (session.info.model, session.info.response_model) == ("gpt-realtime", "gpt-realtime-2025-08-28")
    asked = openai_realtime.API.socket_session(None)  # no model in the URL: the client's session.update names it
    feed(
        asked, Clock(), [(True, {"type": "session.update", "session": {"model": "gpt-realtime-mini"}}), (False, dated)]
    )
    assert (asked.info.model, asked.info.response_model) == ("gpt-realtime-mini", "gpt-realtime-2025-08-28")


def test_tool_calls_and_results_over_the_responses_websocket_are_read_as_over_http():
    """Codex's WebSocket mode: a response asks for a tool; the next `response.create` (with
    `previous_response_id` and only the new items) brings its result."""
    session = openai_responses.API.socket_session(None, capture_content=False)
    clock = Clock()
    session.message(True, frame({"type": "response.create", "model": "gpt-5", "input": "run the tests"}), *clock.tick())
    call = {"type": "function_call", "call_id": "call_ws1", "name": "shell", "arguments": "{}"}
    completed = {
        "id": "resp_ws1",
        "status": "completed",
        "output": [call],
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    (asking,) = session.message(False, frame({"type": "response.completed", "response": completed}), *clock.tick())
    assert [(c.call_id, c.name) for c in asking.result.tool_calls] == [("call_ws1", "shell")]
    answer = {"type": "function_call_output", "call_id": "call_ws1", "output": "ok"}
    follow_up = {"type": "response.create", "model": "gpt-5", "previous_response_id": "resp_ws1", "input": [answer]}
    session.message(True, frame(follow_up), *clock.tick())
    (answering,) = session.message(
        False,
        frame({"type": "response.completed", "response": {"id": "resp_ws2", "status": "completed", "output": []}}),
        *clock.tick(),
    )
    assert [r.call_id for r in answering.request.tool_results] == ["call_ws1"]
    assert answering.request.previous_response_id == "resp_ws1"


def test_a_realtime_function_call_and_its_output_item_are_a_tool_call_and_its_result():
    session = openai_realtime.API.socket_session("gpt-realtime", capture_content=False)
    clock = Clock()
    session.message(True, frame({"type": "response.create"}), *clock.tick())
    session.message(False, frame({"type": "response.created", "response": {"id": "resp_rt1"}}), *clock.tick())
    call = {"type": "function_call", "call_id": "call_rt1", "name": "lookup_order", "arguments": "{}"}
    done = {"id": "resp_rt1", "status": "completed", "output": [call], "usage": {"input_tokens": 9, "output_tokens": 3}}
    (asking,) = session.message(False, frame({"type": "response.done", "response": done}), *clock.tick())
    assert [(c.call_id, c.name) for c in asking.result.tool_calls] == [("call_rt1", "lookup_order")]
    output = {"type": "function_call_output", "call_id": "call_rt1", "output": '{"status": "shipped"}'}
    session.message(True, frame({"type": "conversation.item.create", "item": output}), *clock.tick())
    session.message(True, frame({"type": "response.create"}), *clock.tick())
    session.message(False, frame({"type": "response.created", "response": {"id": "resp_rt2"}}), *clock.tick())
    (answering,) = session.message(
        False, frame({"type": "response.done", "response": {"id": "resp_rt2", "status": "completed"}}), *clock.tick()
    )
    assert [r.call_id for r in answering.request.tool_results] == ["call_rt1"]
    session.message(True, frame({"type": "response.create"}), *clock.tick())  # results are sent once
    session.message(False, frame({"type": "response.created", "response": {"id": "resp_rt3"}}), *clock.tick())
    (later,) = session.message(
        False, frame({"type": "response.done", "response": {"id": "resp_rt3", "status": "completed"}}), *clock.tick()
    )
    assert later.request.tool_results == ()
