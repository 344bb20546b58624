"""A streamed body as it passed the proxy (`ReceivedStream`), read later as it would have been read
on the way."""

import pickle

import pytest

from harness.fake_openai import encode_whole
from harness.pieces import observed, split_randomly
from harness.recordings import load_anthropic
from wire import anthropic_messages
from wire.call import Endpoint, stream_reader
from wire.stream import EventStream, ReceivedStream

MESSAGES = Endpoint(anthropic_messages.API)
CONTENT_TYPE = "text/event-stream; charset=utf-8"
BODY = load_anthropic("test_async_messages_stream_with_params").response_body  # ten text deltas


def received(pieces: list[bytes], encoding: str | None = None) -> ReceivedStream:
    """The pieces as the tap keeps them, the i-th at time i + 1, and the end after them."""
    kept = ReceivedStream(CONTENT_TYPE, encoding)
    for i, piece in enumerate(pieces):
        kept.add(piece, float(i + 1))
    kept.ended_s = float(len(pieces) + 1)
    return kept


def replayed(kept: ReceivedStream, capture: bool = False) -> EventStream:
    stream = stream_reader(MESSAGES, kept.content_type, kept.content_encoding, capture)
    kept.replay(stream)
    return stream


@pytest.mark.parametrize("encoding", [None, "gzip", "br"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_replay_reads_what_reading_on_the_way_read(encoding: str | None, seed: int):
    pieces = split_randomly(encode_whole(BODY, encoding) if encoding else BODY, seed)
    live = observed(stream_reader(MESSAGES, CONTENT_TYPE, encoding, True), pieces).accumulator
    later = replayed(received(pieces, encoding), capture=True).accumulator
    assert later.result == live.result and later.result.usage is not None
    assert later.time_to_first_chunk == live.time_to_first_chunk and later.time_to_first_chunk is not None
    assert list(later.chunk_intervals) == list(live.chunk_intervals) and len(later.chunk_intervals) > 1
    assert later.output_messages() == live.output_messages() and later.done


def test_the_chunks_come_back_as_they_were_added():
    pieces = split_randomly(BODY, 4)
    assert list(received(pieces).chunks()) == [(piece, float(i + 1)) for i, piece in enumerate(pieces)]


def test_an_unterminated_last_event_counts_at_the_end():
    kept = received([BODY.rstrip(b"\n")])  # the upstream closed without the final blank line
    kept.ended_s = 9.0
    assert replayed(kept).accumulator.done


def test_it_crosses_the_pipe_whole():
    kept = received(split_randomly(BODY, 5), "gzip")
    copy = pickle.loads(pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy == kept and list(copy.chunks()) == list(kept.chunks())
