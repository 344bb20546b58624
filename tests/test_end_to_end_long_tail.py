"""End to end for local models and the long tail: the real `ollama` Python library (Ollama's
native API, and Ollama's cloud), the real `cohere` SDK (v2 chat and embed), and the real `openai`
SDK against compatible hosts that report usage their own way (Mistral, DeepSeek, Groq, OpenRouter),
each through a real mitmdump with the addon to the fake upstream (`harness/fake_ollama.py`,
`harness/fake_cohere.py`, `harness/fake_openai.py`'s `x-fake-dialect`).

Reverse mode: proxies of their own (`genai_extra_hosts=127.0.0.1:PORT=ollama`, `…=cohere`), the client's
host or base URL pointing at them. Regular mode: the session's regular proxy through `HTTPS_PROXY`
(the mitmproxy CA in `SSL_CERT_FILE`), the hosts on the default list.
"""

import json
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import anthropic
import cohere
import ollama
import openai
import pytest
from genai_prices import Usage as PricedUsage
from genai_prices import calc_price
from langchain_ollama import ChatOllama

from harness.e2e import World, spans_for, tokens
from harness.fake_cohere import PREAMBLE, billed_input
from harness.fake_ollama import prompt_tokens
from harness.fake_openai import FakeUpstream
from harness.mitmdump import Mitmdump, reverse_args

OLLAMA_KEY = "ol_7Hq2Lp9Wm4Xn6Rt1Vb3Zc8Yd5Fg0KjSe"
COHERE_KEY = "co_Pq7Wz2Xc9Vb4Nm8Lk3Jh6Gf1Ds5Aq0Ze"
OPENAI_STYLE_KEY = "sk-Lt4Hx8Qw2Mz6Np9Rv3Bc7Kd1Fy5Gs0Ja"


@pytest.fixture(scope="module")
def ollama_proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="ollama")
    with Mitmdump(args, world.env, world.tmp / "conf-ollama") as started:
        yield started


@pytest.fixture(scope="module")
def cohere_proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="cohere")
    with Mitmdump(args, world.env, world.tmp / "conf-cohere") as started:
        yield started


@pytest.fixture
def regular_mode(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)


def last_request(world: World, ending: str) -> dict:
    return json.loads(next(r.body for r in reversed(world.fake.received) if r.path.endswith(ending)))


def test_ollama_native_chat_generate_and_embed_are_metered_locally_free(world: World, ollama_proxy: Mitmdump):
    client = ollama.Client(host=ollama_proxy.url)
    model = "e2e-llama3.2:3b"
    plain = client.chat(model=model, messages=[{"role": "user", "content": "Say hi"}])
    asked = last_request(world, "/api/chat")
    assert asked["stream"] is False and plain.prompt_eval_count == prompt_tokens(asked)
    generated = client.generate(model=model, prompt="Say hi twice")
    embedded = client.embed(model="e2e-nomic-embed-text", input="Hello world")
    assert embedded.prompt_eval_count == prompt_tokens({"input": "Hello world"})
    inputs = [plain.prompt_eval_count, generated.prompt_eval_count]
    outputs = [plain.eval_count, generated.eval_count]
    assert None not in inputs and None not in outputs
    world.receiver.wait_for(
        lambda: (
            tokens(world, model, "input") == sum(n or 0 for n in inputs)
            and tokens(world, model, "output") == sum(n or 0 for n in outputs)
            and tokens(world, "e2e-nomic-embed-text", "input") == embedded.prompt_eval_count
        )
    )
    spans = spans_for(world, model, count=2)
    assert {span.attributes["gen_ai.operation.name"] for span in spans} == {"chat", "text_completion"}
    for span in spans:
        assert span.attributes["gen_ai.provider.name"] == "ollama"
        assert span.attributes["gen_ai.usage.cost_usd"] == 0.0  # a local model costs nothing
        assert span.attributes["ollama.response.load_duration_s"] == pytest.approx(0.03847325)
        assert span.attributes["ollama.response.time_to_first_token_s"] == pytest.approx(0.0660815)
        assert "gen_ai.request.stream" not in span.attributes
    (embedding,) = spans_for(world, "e2e-nomic-embed-text")
    assert embedding.attributes["gen_ai.operation.name"] == "embeddings"


def test_an_ollama_stream_is_live_byte_identical_and_counted_from_its_last_line(world: World, ollama_proxy: Mitmdump):
    model = "e2e-ollama-stream"
    client = ollama.Client(host=ollama_proxy.url, headers={"x-fake-chunk-delay-ms": "250", "x-fake-cached": "12"})
    started = time.monotonic()
    arrivals, final = [], None
    for part in client.chat(model=model, messages=[{"role": "user", "content": "Count"}], stream=True):
        if part.message.content:
            arrivals.append(time.monotonic() - started)
        final = part
    assert final is not None and final.done and len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] > 1.0  # each line reached the client as it was sent
    world.receiver.wait_for(
        lambda: tokens(world, model, "input") == final.prompt_eval_count and tokens(world, model, "output") == 6
    )
    (span,) = spans_for(world, model)
    assert span.attributes["gen_ai.request.stream"] is True  # Ollama's default, the library sent it
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 12
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] < arrivals[0]
    body = json.dumps({"model": f"{model}-bytes", "messages": [{"role": "user", "content": "Count"}]}).encode()
    trusting_the_fake = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    with anthropic.DefaultHttpxClient(verify=trusting_the_fake, trust_env=False, timeout=30) as http:
        through = http.post(f"{ollama_proxy.url}/api/chat", content=body).content
        direct = http.post(f"https://127.0.0.1:{world.fake.port}/api/chat", content=body).content
    assert through == direct and through.count(b"\n") == 7


def test_ollama_errors_in_a_body_and_mid_stream(world: World, ollama_proxy: Mitmdump):
    model = "e2e-ollama-errors"
    with pytest.raises(ollama.ResponseError):
        ollama.Client(host=ollama_proxy.url, headers={"x-fake-error": "404"}).chat(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(ollama.ResponseError):
        broken = ollama.Client(host=ollama_proxy.url, headers={"x-fake-stream-error": "1"})
        list(broken.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
    spans = spans_for(world, model, count=2)
    assert sorted(span.attributes["error.type"] for span in spans) == ["404", "error"]


def test_ollamas_cloud_through_https_proxy_is_metered_unpriced(world: World, regular_mode: None):
    model = "e2e-gpt-oss:120b"
    client = ollama.Client(host="https://ollama.com", headers={"Authorization": f"Bearer {OLLAMA_KEY}"})
    parts = list(client.chat(model=model, messages=[{"role": "user", "content": "Count"}], stream=True))
    assert "ollama.com:443" in world.forwarder.tunnels
    world.receiver.wait_for(lambda: tokens(world, model, "output") == parts[-1].eval_count)
    (span,) = spans_for(world, model)
    assert span.attributes["gen_ai.provider.name"] == "ollama.cloud"  # its NDJSON labelled application/json
    assert span.attributes["gen_ai.usage.input_tokens"] == parts[-1].prompt_eval_count
    assert "gen_ai.usage.cost_usd" not in span.attributes  # no price data for Ollama's cloud models


def test_cohere_chat_stream_and_embed_count_tokens_and_price_the_billed_units(world: World, cohere_proxy: Mitmdump):
    model = "command-a-03-2025"
    client = cohere.ClientV2(api_key=COHERE_KEY, base_url=cohere_proxy.url)
    messages: list[cohere.ChatMessageV2] = [cohere.UserChatMessageV2(content="Tell me about Pickle Rick")]
    plain = client.chat(model=model, messages=messages)
    events = list(client.chat_stream(model=model, messages=messages))
    assert events[-1].type == "message-end"
    client.embed(
        model="e2e-embed-v4.0", texts=["one two three"], input_type="search_document", embedding_types=["float"]
    )
    billed = billed_input({"messages": [{"role": "user", "content": "Tell me about Pickle Rick"}]})
    usage = plain.usage
    assert usage and usage.billed_units and usage.tokens and usage.tokens.output_tokens is not None
    assert usage.billed_units.input_tokens == billed and usage.tokens.input_tokens == billed + PREAMBLE
    output = int(usage.tokens.output_tokens)
    world.receiver.wait_for(lambda: tokens(world, model, "input") == 2 * (billed + PREAMBLE))
    spans = spans_for(world, model, count=2)
    priced = calc_price(
        PricedUsage(input_tokens=billed, output_tokens=output),
        model_ref=model,
        provider_id="cohere",
        genai_request_timestamp=datetime.now(UTC),
    )
    for span in spans:
        assert span.attributes["gen_ai.usage.input_tokens"] == billed + PREAMBLE  # what the model processed
        assert span.attributes["cohere.usage.billed_units.input_tokens"] == billed  # what is billed
        assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(float(priced.total_price), rel=1e-9)
        assert span.attributes["gen_ai.response.finish_reasons"] == ["complete"]
        assert span.attributes["cohere.api_key.masked"] == f"...{COHERE_KEY[-4:]}"
    (embedding,) = spans_for(world, "e2e-embed-v4.0")
    assert embedding.attributes["gen_ai.usage.input_tokens"] == 3


def test_cohere_through_https_proxy(world: World, regular_mode: None):
    model = "e2e-command-r-regular"
    client = cohere.ClientV2(api_key=COHERE_KEY)  # the real https://api.cohere.com
    answer = client.chat(model=model, messages=[cohere.UserChatMessageV2(content="hi")])
    assert "api.cohere.com:443" in world.forwarder.tunnels
    (span,) = spans_for(world, model)
    assert span.attributes["gen_ai.provider.name"] == "cohere"
    assert answer.usage and answer.usage.tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == answer.usage.tokens.output_tokens


@pytest.mark.parametrize(
    ("host", "dialect", "cached"),
    [("api.mistral.ai", "mistral", 96), ("api.deepseek.com", "deepseek", 64), ("openrouter.ai", "openrouter", 0)],
)
def test_compatible_hosts_own_usage_fields_through_https_proxy(world: World, regular_mode: None, host, dialect, cached):
    model = f"e2e-{dialect}-model"
    base = "https://openrouter.ai/api/v1" if dialect == "openrouter" else f"https://{host}/v1"
    client = openai.OpenAI(base_url=base, api_key=OPENAI_STYLE_KEY, max_retries=0)
    headers = {"x-fake-dialect": dialect, "x-fake-cached-tokens": str(cached)}
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers=headers
    )
    assert completion.usage is not None
    (span,) = spans_for(world, model)
    assert span.attributes["server.address"] == host
    assert span.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    if cached:
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == cached
    if dialect == "openrouter":
        assert span.attributes["openai.usage.reported_cost_usd"] == (completion.usage.model_extra or {})["cost"]


def test_a_groq_stream_is_counted_from_x_groq(world: World, regular_mode: None):
    model = "e2e-groq-stream"
    client = openai.OpenAI(base_url="https://api.groq.com/openai/v1", api_key=OPENAI_STYLE_KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            extra_headers={"x-fake-dialect": "groq"},
        )
    )
    usage = (chunks[-1].model_extra or {})["x_groq"]["usage"]
    world.receiver.wait_for(
        lambda: (
            tokens(world, model, "input") == usage["prompt_tokens"]
            and tokens(world, model, "output") == usage["completion_tokens"]
        )
    )


def test_no_long_tail_key_anywhere(world: World, ollama_proxy: Mitmdump, cohere_proxy: Mitmdump):
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    logs = ollama_proxy.output + cohere_proxy.output + world.regular.output
    pieces = {key[i : i + 8] for key in (OLLAMA_KEY[3:], COHERE_KEY[3:], OPENAI_STYLE_KEY[3:]) for i in range(20)}
    for text in (exported, logs):
        assert not [piece for piece in pieces if piece in text]
    assert "Traceback" not in logs and "hook failed" not in logs


def test_a_local_ollama_through_a_regular_proxy_over_plain_http(world: World, tmp_path, monkeypatch):
    """`HTTP_PROXY` for a plain-HTTP Ollama on localhost:11434 (the default host entry): the client
    sends its requests to the proxy, which forwards them; a `NO_PROXY` that names localhost (many
    environments set one) sends them around it."""
    with FakeUpstream(None, None, port=11434) as local, Mitmdump([], world.env, tmp_path / "conf") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        client = ollama.Client(host="http://localhost:11434")
        answer = client.chat(model="e2e-local-regular", messages=[{"role": "user", "content": "hi"}])
        assert [r.path for r in local.received] == ["/api/chat"]
        (span,) = spans_for(world, "e2e-local-regular")
    assert (span.attributes["server.address"], span.attributes["server.port"]) == ("localhost", 11434)
    assert span.attributes["gen_ai.usage.output_tokens"] == answer.eval_count
    assert span.attributes["gen_ai.usage.cost_usd"] == 0.0


def test_langchains_chat_ollama_is_metered(world: World, ollama_proxy: Mitmdump):
    model = "e2e-langchain-llama"
    chat = ChatOllama(model=model, base_url=ollama_proxy.url)
    reply = chat.invoke("Say hi")
    streamed = list(chat.stream("Say hi"))
    assert reply.content == "Hello from a fake Ollama." and "".join(str(c.content) for c in streamed) == reply.content
    usage = reply.usage_metadata
    assert usage is not None
    world.receiver.wait_for(lambda: tokens(world, model, "output") == 2 * usage["output_tokens"])
    spans = spans_for(world, model, count=2)
    assert {span.attributes["gen_ai.usage.input_tokens"] for span in spans} == {usage["input_tokens"]}
