"""Gemini's Live API sessions, fed the messages the fake upstream sends (the Live API's shapes:
binary frames of JSON), and hostile frames."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.fake_realtime import live_answer
from wire import gemini_live
from wire.records import Usage
from wire.socket import Operation, SocketSession

SETUP = {
    "setup": {
        "model": "models/gemini-live-2.5-flash",
        "generationConfig": {"responseModalities": ["TEXT"], "maxOutputTokens": 300},
    }
}
TURN = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Say hi"}]}], "turnComplete": True}}


def feed(session: SocketSession, frames: list[tuple[bool, dict[str, Any]]]) -> list[Operation]:
    done: list[Operation] = []
    for number, (from_client, message) in enumerate(frames):
        done += session.message(from_client, json.dumps(message).encode(), 100.0 + number, number)
    return done


def model_turn(answer: dict[str, Any]) -> list[tuple[bool, dict[str, Any]]]:
    return [(False, {"serverContent": {"modelTurn": {"parts": [part]}}}) for part in answer["parts"]]


def test_routes_of_the_gemini_api_and_vertex_ai():
    for path in (
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=AIzaX",
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token=t",
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",  # the SDK's default version
        "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent",
    ):
        found = wire.socket_endpoint_for(path)
        assert found is not None and found[0].api is gemini_live.API


def test_each_turn_is_an_operation_with_its_usage_in_the_live_apis_names():
    session = gemini_live.API.socket_session(None)
    first, second = live_answer(12), live_answer(20, chunks=2)
    done = feed(
        session,
        [
            (True, SETUP),
            (False, {"setupComplete": {}}),
            (True, TURN),
            *model_turn(first),
            (False, {"serverContent": {"turnComplete": True}, "usageMetadata": first["usage"]}),
            (True, TURN),
            *model_turn(second),
            (False, {"serverContent": {"turnComplete": True}}),
            (False, {"usageMetadata": second["usage"]}),  # the usage may come in a message of its own
        ],
    )
    assert [operation.result.usage for operation in done] == [
        Usage(input_tokens=12, output_tokens=4, input_modalities=(("text", 12),), output_modalities=(("text", 4),)),
        Usage(input_tokens=20, output_tokens=2, input_modalities=(("text", 20),), output_modalities=(("text", 2),)),
    ]
    assert done[0].request.model == "gemini-live-2.5-flash" and done[0].request.max_tokens == 300
    assert done[0].result.finish_reasons == ["stop"] and done[0].time_to_first_chunk_s == 1.0
    assert len(done[0].chunk_intervals_s) == 3
    assert session.info.model == "gemini-live-2.5-flash" and session.info.output_modalities == ["text"]


def test_a_turn_cut_off_by_the_close_and_a_tool_call():
    session = gemini_live.API.socket_session("m")
    call = {"toolCall": {"functionCalls": [{"id": "c1", "name": "now", "args": {}}]}}
    assert feed(session, [(True, SETUP), (True, TURN), (False, call)]) == []
    (cut,) = session.close(200.0, 200)
    assert cut.result.error_type == "socket_closed" and cut.result.finish_reasons == ["tool_calls"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=30))
def test_arbitrary_frames_never_raise(frames):
    session = gemini_live.API.socket_session(None)
    for number, (from_client, content) in enumerate(frames):
        session.message(from_client, content, float(number), number)
    session.close(100.0, 100)


def test_the_sdks_snake_case_messages_open_turns_too():
    session = gemini_live.API.socket_session(None)
    answer = live_answer(9)
    setup = {"setup": {"model": "models/m", "generation_config": {"response_modalities": ["TEXT"]}}}
    turn = {"client_content": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turn_complete": True}}
    (done,) = feed(
        session,
        [
            (True, setup),
            (True, turn),
            *model_turn(answer),
            (False, {"serverContent": {"turnComplete": True}, "usageMetadata": answer["usage"]}),
        ],
    )
    assert done.time_to_first_chunk_s == 1.0 and session.info.output_modalities == ["text"]
