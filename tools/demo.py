"""`make demo`: see the addon work with no API key and no network.

Starts a local fake of api.openai.com and api.anthropic.com, an OTLP/gRPC receiver and
`mitmdump -s addon.py` in reverse mode, makes a few calls with the real openai and anthropic SDKs,
and prints what arrived as telemetry.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anthropic
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from harness.certs import make_pki
from harness.fake_openai import FakeUpstream
from harness.mitmdump import Mitmdump, reverse_args
from harness.otlp_receiver import OTLPReceiver

DEMO_KEY = "sk-proj-demo0000000000000000000000000000000000WXYZ"
DEMO_ANTHROPIC_KEY = "sk-ant-api03-demo00000000000000000000000000000000000000WXYZ"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="genai-demo-"))
    pki = make_pki(tmp / "pki")
    receiver = OTLPReceiver().start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SERVICE_NAME": "genai-demo",
    }
    with FakeUpstream(pki.server_cert, pki.server_key) as fake:
        args = reverse_args(fake.port, pki.ca_cert)
        claude_args = reverse_args(fake.port, pki.ca_cert, provider="anthropic")
        with (
            Mitmdump(args, env, tmp / "mitmproxy") as proxy,
            Mitmdump(claude_args, env, tmp / "claude") as claude_proxy,
        ):
            print(f"mitmdump -s addon.py is listening at {proxy.url} (reverse proxy to a local fake OpenAI)\n")
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=DEMO_KEY, max_retries=0)
            question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say this is a test"}]

            print("1. plain chat completion")
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=question)
            print(f"   → {reply.choices[0].message.content!r}, usage {reply.usage and reply.usage.total_tokens} tokens")

            print("2. streamed, without asking for usage (the addon asks upstream and hides the extra chunk)")
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=question,
                stream=True,
                extra_headers={"x-fake-chunks": "5", "x-fake-chunk-delay-ms": "120"},
            )
            started = time.monotonic()
            for chunk in stream:
                if isinstance(chunk, ChatCompletionChunk) and chunk.choices and chunk.choices[0].delta.content:
                    print(f"   +{time.monotonic() - started:.2f}s {chunk.choices[0].delta.content!r}")

            print("3. a rate-limited call")
            try:
                client.chat.completions.create(
                    model="gpt-4.1", messages=question, extra_headers={"x-fake-error": "429:rate_limit_exceeded"}
                )
            except openai.RateLimitError as error:
                print(f"   → {type(error).__name__}")

            print("4. Anthropic's Messages API, streamed, with cache reads and writes (a proxy of its own:")
            print("   the fake upstream is one host, and a host says who is billed)")
            claude = anthropic.Anthropic(base_url=claude_proxy.url, api_key=DEMO_ANTHROPIC_KEY, max_retries=0)
            cache = {"x-fake-cache-read": "1000", "x-fake-cache-write-5m": "200", "x-fake-chunk-delay-ms": "60"}
            with claude.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "Say this is a test"}],
                extra_headers=cache,
            ) as streamed:
                billed = streamed.get_final_message().usage
            print(
                f"   → {billed.input_tokens} uncached + {billed.cache_read_input_tokens} read + "
                f"{billed.cache_creation_input_tokens} written input tokens, {billed.output_tokens} out"
            )

            receiver.wait_for(lambda: len(receiver.spans()) >= 4)
            time.sleep(1.2)  # one more metric export
            client.close()  # no connection left open when the proxies stop
            claude.close()
        # Both proxies have exited (SIGINT, as Ctrl-C): their event logs, and the summary each prints at exit.
        for name, stopped in (("the OpenAI proxy", proxy), ("the Anthropic proxy", claude_proxy)):
            print(f"\n{name}'s event log:")
            for line in stopped.lines:
                if "genai:" in line:
                    print("  ", line)
            print(stopped.output.partition("LLM API usage through this proxy:")[2].strip("\n") or "   (no summary)")
    receiver.stop()

    print("\nMetrics received over OTLP/gRPC:")
    names = [
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
        "gen_ai.client.token.cache_read",
        "gen_ai.client.token.cache_write",
        "tokens_counter",
        "prompt_tokens",
        "completion_tokens",
    ]
    for name in names:
        for point in receiver.latest(name):
            labels = ", ".join(f"{k}={v}" for k, v in sorted(point.attributes.items()) if k != "server.port")
            stats = f"sum={point.value:g}" + (f" count={point.count}" if point.bucket_bounds else "")
            print(f"  {name} [{point.unit}] {stats}  {{{labels}}}")
    print("\nSpans received over OTLP/gRPC:")
    for span in receiver.spans():
        usage = span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")
        failure = span.attributes.get("error.type", "-")
        key = span.attributes.get("openai.api_key.masked") or span.attributes.get("anthropic.api_key.masked")
        print(f"  {span.name}: tokens in/out {usage}, error {failure}, key {key}")


if __name__ == "__main__":
    main()
