"""The framings (SSE, NDJSON, AWS event stream) and incremental content decoding, independent of any API."""

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import eventstream
from harness.fake_openai import encode_whole
from harness.recordings import bedrock_stream
from wire.framing import codecs
from wire.framing.eventstream import EventStreamFramer
from wire.framing.ndjson import NDJSONFramer
from wire.framing.sse import SSEFramer, parse_sse_event

# --- SSE ----------------------------------------------------------------------------------


def test_sse_keeps_a_utf8_character_split_across_chunks():
    event = 'data: {"choices":[{"delta":{"content":"héllo ✓"}}]}\n\n'.encode()
    cut = event.index("✓".encode()) + 1
    framer = SSEFramer()
    assert framer.feed(event[:cut]) == []
    (found,) = framer.feed(event[cut:])
    assert found.data == '{"choices":[{"delta":{"content":"héllo ✓"}}]}'
    assert found.raw == event


def test_sse_waits_for_the_lf_of_a_crlf_split_between_chunks():
    framer = SSEFramer()
    assert framer.feed(b"data: a\r\n\r") == []
    assert [event.raw for event in framer.feed(b"\ndata: b\r\n\r\n")] == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]


def test_sse_event_fields_follow_the_sse_rules():
    event = parse_sse_event(b": keep-alive\nevent: response.completed\ndata:one\ndata: two\nid: 3\n\n")
    assert event.kind == "response.completed"
    assert event.data == "one\ntwo"
    assert parse_sse_event(b": comment only\n\n").data is None


# --- content encodings --------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_encoder_output_decodes_piece_by_piece(encoding):
    encoder = codecs.incremental_encoder(encoding)
    decoder = codecs.incremental_decoder(encoding)
    assert encoder is not None and decoder is not None
    events = [f"data: {i}\n\n".encode() for i in range(50)]
    pieces = [encoder.encode(event) for event in events]
    assert all(pieces), "every encoded piece must be flushed at once"
    decoded = [decoder(piece) for piece in pieces]
    assert decoded == events
    decoder(encoder.finish())


def test_stacked_and_unknown_encodings_have_no_codec():
    for encoding in ("gzip, br", "compress", "x-unknown"):
        assert codecs.incremental_decoder(encoding) is None and codecs.incremental_encoder(encoding) is None


def test_zstd_bodies_with_several_frames_are_decoded():
    decoder = codecs.incremental_decoder("zstd")
    assert decoder is not None
    body = encode_whole(b"data: 1\n\n", "zstd") + encode_whole(b"data: 2\n\n", "zstd")
    assert decoder(body) == b"data: 1\n\ndata: 2\n\n"


# --- NDJSON -------------------------------------------------------------------------------

NDJSON = '{"a": "héllo"}\r\n\n{"b": 2}\nnot json\n{"done": true}'.encode()


def ndjson_events(pieces: list[bytes]) -> list[tuple[str | None, object, bytes]]:
    framer = NDJSONFramer()
    events = [event for piece in pieces for event in framer.feed(piece)] + framer.finish()
    return [(event.data, event.value, event.raw) for event in events]


def test_ndjson_lines_split_anywhere_crlf_garbage_and_a_last_line_without_newline():
    expected = [
        ('{"a": "héllo"}', {"a": "héllo"}, '{"a": "héllo"}\r\n'.encode()),
        ('{"b": 2}', {"b": 2}, b'{"b": 2}\n'),
        ("not json", None, b"not json\n"),
        ('{"done": true}', {"done": True}, b'{"done": true}'),
    ]
    assert ndjson_events([NDJSON]) == expected
    assert ndjson_events([NDJSON[i : i + 1] for i in range(len(NDJSON))]) == expected  # mid-UTF-8 too


# --- AWS event stream ---------------------------------------------------------------------

MESSAGES = [
    eventstream.event("messageStart", {"role": "assistant"}),
    eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
    eventstream.exception("throttlingException", "Too many requests"),
    eventstream.event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1}}),
]
STREAM = b"".join(MESSAGES)


def framed(pieces: list[bytes]) -> tuple[list[tuple[str | None, object, bytes]], EventStreamFramer]:
    framer = EventStreamFramer()
    events = [event for piece in pieces for event in framer.feed(piece)] + framer.finish()
    return [(event.kind, event.value, event.raw) for event in events], framer


def test_event_stream_messages_are_read_with_their_type_payload_and_exact_bytes():
    events, _ = framed([STREAM])
    assert [kind for kind, _, _ in events] == ["messageStart", "contentBlockDelta", "exception", "metadata"]
    assert events[1][1] == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert events[2][1] == {"message": "Too many requests", "type": "throttlingException"}
    assert [raw for _, _, raw in events] == MESSAGES


def test_event_stream_split_byte_by_byte_or_randomly_gives_the_same_events():
    whole, _ = framed([STREAM])
    assert framed([STREAM[i : i + 1] for i in range(len(STREAM))])[0] == whole
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 20)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert framed(pieces)[0] == whole


def test_a_message_with_a_bad_crc_is_skipped_and_the_next_one_read():
    broken = bytearray(MESSAGES[1])
    broken[-6] ^= 0x20  # in the payload: the message CRC no longer matches
    events, framer = framed([MESSAGES[0] + bytes(broken) + MESSAGES[3]])
    assert [kind for kind, _, _ in events] == ["messageStart", "metadata"]
    assert framer.skipped == 1 and not framer.broken


@pytest.mark.parametrize("total", [0, 15, 17 * 1024 * 1024])
def test_a_prelude_that_cannot_be_right_stops_reading_without_raising(total):
    bad_prelude = struct.pack(">II", total, 0)
    bad = bad_prelude + struct.pack(">I", zlib.crc32(bad_prelude)) + b"x" * 32
    events, framer = framed([MESSAGES[0] + bad + MESSAGES[3]])
    assert [kind for kind, _, _ in events] == ["messageStart"]
    assert framer.broken
    assert framer.feed(MESSAGES[3]) == []


def test_a_prelude_crc_mismatch_is_not_trusted():
    broken = bytearray(MESSAGES[0])
    broken[1] ^= 1  # the total length: its prelude CRC fails
    events, framer = framed([bytes(broken) + MESSAGES[3]])
    assert events == [] and framer.broken


def test_a_message_cut_off_by_the_end_of_the_body_is_not_an_event():
    events, _ = framed([STREAM[:-3]])
    assert [kind for kind, _, _ in events] == ["messageStart", "contentBlockDelta", "exception"]


def test_recorded_bedrock_streams_frame_whole_with_every_crc_valid():
    body = bedrock_stream("test_converse_stream_tool_call_parsing_errors")
    events, framer = framed([body])
    assert len(events) == 24 and framer.skipped == 0 and not framer.broken
    assert b"".join(raw for _, _, raw in events) == body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.lists(st.integers(1, 97), min_size=1, max_size=30))
def test_arbitrary_bytes_never_raise_in_any_framer(data, sizes):
    for framer in (EventStreamFramer(), NDJSONFramer(), SSEFramer()):
        position = 0
        for size in sizes * (len(data) // sum(sizes) + 1):
            framer.feed(data[position : position + size])
            position += size
        framer.finish()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=12), st.integers(0, len(STREAM) - 1))
def test_any_split_gives_the_same_events_and_a_flipped_bit_never_raises(cuts, flipped):
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert framed(pieces)[0] == framed([STREAM])[0]
    corrupted = bytearray(STREAM)
    corrupted[flipped] ^= 1
    events, _ = framed([bytes(corrupted)])
    assert len(events) <= len(MESSAGES)
