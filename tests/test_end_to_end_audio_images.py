"""End to end for OpenAI's audio and images APIs: the real `openai` SDK → a real mitmdump with the
addon (reverse mode, and regular mode for one) → the fake upstream (`harness/fake_media.py`),
telemetry to a real OTLP receiver."""

import io
import math
import struct
import time
import wave

import openai
import pytest

from harness.e2e import KEY, World, spans_for, spans_where, tokens
from harness.fake_media import IMAGE, SPEECH_AUDIO, TRANSCRIPT, image_usage, speech_usage


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A small generated WAV file: a 440 Hz tone."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        frames = int(seconds * rate)
        audio.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames))
        )
    return out.getvalue()


def test_a_transcription_by_tokens_and_one_by_duration(world: World):
    client = world.reverse_client()
    audio = wav(2.5)
    by_tokens = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("hello.wav", audio))
    assert by_tokens.text == "".join(TRANSCRIPT) and by_tokens.usage is not None
    by_duration = client.audio.transcriptions.create(model="whisper-1", file=("hello.wav", audio))
    assert by_duration.usage is not None and by_duration.usage.type == "duration"
    world.receiver.wait_for(
        lambda: tokens(world, "gpt-4o-transcribe", "input") == 25 and tokens(world, "gpt-4o-transcribe", "output") == 5
    )
    (token_span,) = spans_for(world, "gpt-4o-transcribe")
    assert token_span.name == "transcription gpt-4o-transcribe"
    assert token_span.attributes["openai.api.type"] == "audio.transcriptions"
    assert token_span.attributes["gen_ai.usage.audio.input_tokens"] == 25
    assert token_span.attributes["gen_ai.usage.cost_usd"] == pytest.approx((25 * 6 + 5 * 10) / 1e6)
    (duration_span,) = spans_for(world, "whisper-1")
    assert duration_span.attributes["openai.usage.audio_seconds"] == 2.5
    assert "gen_ai.usage.input_tokens" not in duration_span.attributes  # none invented
    assert duration_span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(2.5 * 0.006 / 60)
    request = next(r for r in reversed(world.fake.received) if r.path.endswith("/audio/transcriptions"))
    assert audio in request.body  # the multipart body reached the upstream as the SDK wrote it


def test_a_streamed_transcription_stays_live(world: World):
    client = world.reverse_client()
    started = time.monotonic()
    stream = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("s.wav", wav(1.0)), stream=True)
    arrivals, events = zip(*[(time.monotonic() - started, event) for event in stream], strict=True)
    assert [e.type for e in events].count("transcript.text.delta") == len(TRANSCRIPT)
    assert events[-1].type == "transcript.text.done"
    # Streamed: the Realtime API's transcriptions (`test_end_to_end_realtime`) name the same model.
    (span,) = spans_where(
        world,
        lambda s: (
            s.attributes.get("gen_ai.request.model") == "gpt-4o-mini-transcribe"
            and s.attributes.get("gen_ai.request.stream") is True
        ),
    )
    assert span.attributes["gen_ai.usage.input_tokens"] == 10 and span.attributes["gen_ai.usage.output_tokens"] == 5
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] < arrivals[0]  # before the client had it


def test_speech_as_audio_and_as_sse(world: World):
    client = world.reverse_client()
    text = "Hello from the proxy test."
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=text)
    assert audio.read() == SPEECH_AUDIO  # byte for byte
    (span,) = spans_for(world, "tts-1")
    assert span.name == "speech tts-1"
    assert span.attributes["openai.request.voice"] == "alloy"
    assert span.attributes["openai.request.input_characters"] == len(text)
    assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(len(text) * 15 / 1e6)  # by characters
    assert "gen_ai.usage.input_tokens" not in span.attributes
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="ash", input=text, stream_format="sse"
    ) as streamed:
        body = streamed.read()
    assert body.count(b"speech.audio.delta") == 4
    usage = speech_usage({"input": text})
    world.receiver.wait_for(lambda: tokens(world, "gpt-4o-mini-tts", "output") == usage["output_tokens"])
    (sse_span,) = spans_for(world, "gpt-4o-mini-tts")
    assert sse_span.attributes["gen_ai.usage.audio.output_tokens"] == usage["output_tokens"]


def test_image_generation_plain_and_streamed(world: World):
    client = world.reverse_client()
    prompt = "a lighthouse at dawn"
    plain = client.images.generate(model="gpt-image-1", prompt=prompt)
    assert plain.data is not None and plain.data[0].b64_json == IMAGE
    usage = image_usage({"prompt": prompt})
    world.receiver.wait_for(lambda: tokens(world, "gpt-image-1", "output") == usage["output_tokens"])
    (span,) = spans_for(world, "gpt-image-1")
    assert span.name == "image_generation gpt-image-1"
    assert span.attributes["gen_ai.usage.image.output_tokens"] == usage["output_tokens"]
    assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(
        (usage["input_tokens"] * 5 + usage["output_tokens"] * 40) / 1e6
    )
    started = time.monotonic()
    arrivals = []
    kinds = []
    for event in client.images.generate(model="gpt-image-1-mini", prompt=prompt, stream=True, partial_images=2):
        arrivals.append(time.monotonic() - started)
        kinds.append(event.type)
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert arrivals[0] < arrivals[-1] - 0.05  # the first partial image came before the end
    (streamed,) = spans_for(world, "gpt-image-1-mini")
    assert streamed.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert streamed.attributes["gen_ai.request.stream"] is True


def test_no_image_or_audio_data_and_no_key_in_telemetry_or_logs(world: World):
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    logs = world.reverse.output
    for text in (exported, logs):
        assert IMAGE[100:140] not in text and "ID3" not in text and KEY[8:20] not in text
    assert "hook failed" not in logs


def test_regular_mode_transcription(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = openai.OpenAI(api_key=KEY, max_retries=0)  # the real https://api.openai.com
    result = client.audio.transcriptions.create(model="whisper-1", file=("t.wav", wav(1.0)))
    assert result.text
    (span,) = world.receiver.wait_for(
        lambda: [
            s
            for s in world.receiver.spans()
            if s.attributes.get("openai.api.type") == "audio.transcriptions"
            and s.attributes["server.address"] == "api.openai.com"
        ]
    )
    assert span.attributes["openai.usage.audio_seconds"] == 1.0
