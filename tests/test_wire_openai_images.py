"""OpenAI's images API: generations (JSON), edits and variations (multipart), streamed partial
images, usage by modality, and image data never parsed whole nor kept."""

import base64
import json

import pytest

import wire
from harness.pieces import observed, split_randomly
from wire import openai_images
from wire.records import Usage
from wire.stream import EventStream

IMAGE = base64.b64encode(bytes(range(256)) * 8000).decode()  # about 2.7 MB of base64, as real ones are
USAGE = {
    "total_tokens": 4310,
    "input_tokens": 50,
    "output_tokens": 4260,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
}
EXPECTED = Usage(
    input_tokens=50,
    output_tokens=4260,
    input_modalities=(("text", 40), ("image", 10)),
    output_modalities=(("image", 4260),),
)


def test_routes():
    for path, api in (
        ("/v1/images/generations", openai_images.GENERATIONS),
        ("/v1/images/edits", openai_images.EDITS),
        ("/v1/images/variations", openai_images.VARIATIONS),
    ):
        endpoint = wire.endpoint_for("POST", path)
        assert endpoint is not None and endpoint.api is api and endpoint.operation == "image_generation"


def test_a_large_answer_gives_its_usage_without_parsing_the_image():
    body = json.dumps({"created": 1, "data": [{"b64_json": IMAGE}], "usage": USAGE}).encode()
    assert len(body) > 2_000_000
    assert openai_images.GENERATIONS.parse_response(body).usage == EXPECTED
    assert openai_images.GENERATIONS.captured_output(body) is None
    dalle = b'{"created": 1, "data": [{"url": "https://example.test/x.png"}]}'
    assert openai_images.GENERATIONS.parse_response(dalle).usage is None  # dall-e reports none


def test_requests_json_and_multipart():
    request = openai_images.GENERATIONS.parse_request(
        b'{"model": "gpt-image-1", "prompt": "a cat", "n": 2, "stream": true}'
    )
    assert (request.model, request.choice_count, request.stream, request.output_type) == (
        "gpt-image-1",
        2,
        True,
        "image",
    )
    form = (
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-image-1\r\n'
        b'--x\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nadd a hat\r\n'
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="cat.png"\r\n\r\n\x89PNG\r\n--x--\r\n'
    )
    edit = openai_images.EDITS.parse_request(form)
    assert (edit.model, edit.stream) == ("gpt-image-1", False)
    captured = json.loads(openai_images.EDITS.captured_input(form).input_messages or "")
    assert captured[0]["parts"] == [{"type": "image"}, {"type": "text", "content": "add a hat"}]


@pytest.mark.parametrize("prefix", ["image_generation", "image_edit"])
def test_partial_images_stream_and_the_completed_event_carries_the_usage(prefix):
    events = [
        (
            f"{prefix}.partial_image",
            {"type": f"{prefix}.partial_image", "b64_json": IMAGE[:50_000], "partial_image_index": i},
        )
        for i in range(2)
    ]
    events.append((f"{prefix}.completed", {"type": f"{prefix}.completed", "b64_json": IMAGE, "usage": USAGE}))
    body = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events).encode()
    stream = observed(
        EventStream(None, openai_images.GENERATIONS.stream_accumulator(0.0, True)), split_randomly(body, 3, 65536)
    )
    accumulator = stream.accumulator
    assert accumulator.result.usage == EXPECTED and accumulator.done
    assert accumulator.time_to_first_chunk is not None and len(accumulator.chunk_intervals) == 2
    assert accumulator.output_messages() is None  # images are never copied
