"""SSE framing and incremental content decoding, independent of OpenAI."""

import pytest

from harness.fake_openai import encode_whole
from wire import sse
from wire.sse import SSEFramer

# --- SSE framing --------------------------------------------------------------------------


def test_framer_keeps_a_utf8_character_split_across_chunks():
    event = 'data: {"choices":[{"delta":{"content":"héllo ✓"}}]}\n\n'.encode()
    cut = event.index("✓".encode()) + 1
    framer = SSEFramer()
    assert framer.feed(event[:cut]) == []
    (block,) = framer.feed(event[cut:])
    assert sse.parse_sse_event(block).data == '{"choices":[{"delta":{"content":"héllo ✓"}}]}'


def test_framer_waits_for_the_lf_of_a_crlf_split_between_chunks():
    framer = SSEFramer()
    assert framer.feed(b"data: a\r\n\r") == []
    assert framer.feed(b"\ndata: b\r\n\r\n") == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]


def test_event_fields_follow_the_sse_rules():
    event = sse.parse_sse_event(b": keep-alive\nevent: response.completed\ndata:one\ndata: two\nid: 3\n\n")
    assert event.event == "response.completed"
    assert event.data == "one\ntwo"
    assert sse.parse_sse_event(b": comment only\n\n").data is None


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_encoder_output_decodes_piece_by_piece(encoding):
    encoder = sse.incremental_encoder(encoding)
    decoder = sse.incremental_decoder(encoding)
    assert encoder is not None and decoder is not None
    events = [f"data: {i}\n\n".encode() for i in range(50)]
    pieces = [encoder.encode(event) for event in events]
    assert all(pieces), "every encoded piece must be flushed at once"
    decoded = [decoder(piece) for piece in pieces]
    assert decoded == events
    decoder(encoder.finish())


def test_stacked_and_unknown_encodings_have_no_codec():
    for encoding in ("gzip, br", "compress", "x-unknown"):
        assert sse.incremental_decoder(encoding) is None and sse.incremental_encoder(encoding) is None


def test_zstd_bodies_with_several_frames_are_decoded():
    decoder = sse.incremental_decoder("zstd")
    assert decoder is not None
    body = encode_whole(b"data: 1\n\n", "zstd") + encode_whole(b"data: 2\n\n", "zstd")
    assert decoder(body) == b"data: 1\n\ndata: 2\n\n"
