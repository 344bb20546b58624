"""The real Claude Code CLI (2.1.332, `claude -p`, headless; `make test` installs it with npm from
harness/claude-code, its native binary inside the platform's package) on AWS Bedrock
(`CLAUDE_CODE_USE_BEDROCK=1`, fake AWS credentials) through a real mitmdump, in reverse mode
(`ANTHROPIC_BEDROCK_BASE_URL`) and in regular mode (`HTTPS_PROXY`, the mitmproxy CA in
`NODE_EXTRA_CA_CERTS`), against the fake Bedrock upstream; and on Vertex AI
(`CLAUDE_CODE_USE_VERTEX=1`, `CLAUDE_CODE_SKIP_VERTEX_AUTH=1`, `ANTHROPIC_VERTEX_BASE_URL`), which
sends the turn as one `:streamRawPredict`.

What it sends: two one-token `POST /model/{model}/invoke` calls (a warm-up of its small and large
models, `max_tokens: 1`), then the turn itself as `POST /model/{model}/invoke-with-response-stream`
with Anthropic's Messages body (`anthropic_version` in it, `anthropic-beta: claude-code-…` as a
header), `X-Claude-Code-Session-Id`, and a SigV4 signature. Every one is metered once, exactly.
"""

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.e2e import World
from harness.fake_anthropic import prompt_tokens
from harness.mitmdump import ROOT, Mitmdump, reverse_args
from otel.sessions import session_trace

CLAUDE = ROOT / "harness" / "claude-code" / "node_modules" / ".bin" / "claude"
ACCESS_KEY = "AKIAQ2CLAUDEC0DE7XW5"
SECRET_KEY = "Zt8sLm3kQ9vT2wJalrXUtnFEMIK7MDENGbPxRfiC"
MODEL = "us.anthropic.e2e-claude-code-v1:0"
VERTEX_MODEL = "claude-e2e-code@20250929"
ON_BEDROCK = {
    "CLAUDE_CODE_USE_BEDROCK": "1",
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_REGION": "us-east-1",
    "ANTHROPIC_MODEL": MODEL,
}
ON_VERTEX = {
    "CLAUDE_CODE_USE_VERTEX": "1",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",  # no Google credentials here: no Authorization header at all
    "ANTHROPIC_VERTEX_PROJECT_ID": "e2e-project",
    "CLOUD_ML_REGION": "us-east5",
    "ANTHROPIC_MODEL": VERTEX_MODEL,
}


def run_claude(
    tmp_path: Path,
    proxy_env: dict[str, str],
    platform: dict[str, str] | None = None,
    prompt: str = "Say hi",
    *options: str,
) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        **(platform or ON_BEDROCK),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        **proxy_env,
    }
    finished = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", *options],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result: dict[str, Any] = json.loads(finished.stdout)
    return result


def claude_code_spans(world: World, server: str, count: int) -> list[Any]:
    return world.receiver.wait_for(
        lambda: (
            (
                found := [
                    s
                    for s in world.receiver.spans()
                    if s.attributes.get("user_agent.name") == "claude-cli" and s.attributes["server.address"] == server
                ]
            )
            and len(found) >= count
            and found
        )
    )


def assert_metered_exactly(world: World, received_before: int, server: str, result: dict[str, Any]) -> None:
    sent = [r for r in world.fake.received[received_before:] if r.path.startswith("/model/")]
    assert sent and sent[-1].path == f"/model/{MODEL}/invoke-with-response-stream"
    assert all(r.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/") for r in sent)
    spans = claude_code_spans(world, server, len(sent))
    time.sleep(0.5)
    spans = claude_code_spans(world, server, len(sent))
    assert len(spans) == len(sent)  # each call metered once
    # One session, named by the CLI's X-Claude-Code-Session-Id on every call: the agent's conversation.
    sessions = {r.headers.get("x-claude-code-session-id") for r in sent}
    assert len(sessions) == 1 and None not in sessions
    assert {s.attributes.get("gen_ai.conversation.id") for s in spans} == sessions
    assert {s.attributes.get("gen_ai.agent.name") for s in spans} == {"claude-cli"}
    (session,) = sessions
    assert session is not None
    assert {s.trace_id for s in spans} == {f"{session_trace(session)[0]:032x}"}  # one trace per session
    (turn,) = [s for s in spans if s.attributes["gen_ai.request.model"] == MODEL]
    body = json.loads(sent[-1].body)
    assert turn.attributes["gen_ai.usage.input_tokens"] == prompt_tokens(body) == result["usage"]["input_tokens"]
    assert turn.attributes["gen_ai.usage.output_tokens"] == result["usage"]["output_tokens"]
    assert turn.attributes["gen_ai.request.stream"] is True
    assert turn.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert turn.attributes["aws.bedrock.api.type"] == "invoke_model"
    assert turn.attributes["aws.bedrock.api_key.masked"] == f"AKIA...{ACCESS_KEY[-4:]}"
    assert turn.attributes["aws.bedrock.response.first_byte_latency_ms"] == 90  # the stream's invocation metrics


def assert_no_credential(world: World, proxy: Mitmdump, received_before: int) -> None:
    signatures = [
        r.headers["authorization"].rpartition("Signature=")[2]
        for r in world.fake.received[received_before:]
        if "authorization" in r.headers
    ]
    pieces = {s[i : i + 8] for s in (ACCESS_KEY[4:], SECRET_KEY, *signatures) for i in range(len(s) - 7)}
    exported = "".join(str(r) for r in world.receiver.trace_requests + world.receiver.metric_requests)
    for text in (exported, proxy.output):
        assert not [piece for piece in pieces if piece in text]


@pytest.fixture(scope="module")
def bedrock_proxy(world: World) -> Any:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="aws.bedrock")
    with Mitmdump(args, world.env, world.tmp / "conf-claude-code") as started:
        yield started


def test_claude_code_on_bedrock_in_reverse_mode_is_metered_exactly(world: World, bedrock_proxy: Mitmdump, tmp_path):
    before = len(world.fake.received)
    result = run_claude(tmp_path, {"ANTHROPIC_BEDROCK_BASE_URL": bedrock_proxy.url})
    assert result["result"] == "Hello from a fake Claude." and result["usage"]["output_tokens"] == 6
    assert_metered_exactly(world, before, "127.0.0.1", result)
    assert_no_credential(world, bedrock_proxy, before)


def test_claude_code_on_bedrock_in_regular_mode_is_metered_exactly(world: World, tmp_path):
    before = len(world.fake.received)
    result = run_claude(
        tmp_path,
        {
            "HTTPS_PROXY": world.regular.url,
            "NODE_EXTRA_CA_CERTS": str(world.regular.ca_cert),
            "SSL_CERT_FILE": str(world.regular.ca_cert),
        },
    )
    assert "bedrock-runtime.us-east-1.amazonaws.com:443" in world.forwarder.tunnels
    assert_metered_exactly(world, before, "bedrock-runtime.us-east-1.amazonaws.com", result)
    assert_no_credential(world, world.regular, before)


def test_claude_code_on_vertex_ai_is_metered_as_claude_on_vertex(world: World, tmp_path):
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="gcp.vertex_ai")
    with Mitmdump(args, world.env, world.tmp / "conf-claude-code-vertex") as proxy:
        before = len(world.fake.received)
        result = run_claude(tmp_path, {"ANTHROPIC_VERTEX_BASE_URL": f"{proxy.url}/v1"}, ON_VERTEX)
        sent = [r for r in world.fake.received[before:] if "/publishers/anthropic/" in r.path]
        assert [r.path for r in sent] == [
            f"/v1/projects/e2e-project/locations/us-east5/publishers/anthropic/models/{VERTEX_MODEL}:streamRawPredict"
        ]
        (span,) = world.receiver.wait_for(
            lambda: [s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == VERTEX_MODEL]
        )
    assert span.attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert span.attributes["gen_ai.usage.input_tokens"] == prompt_tokens(json.loads(sent[0].body))
    assert span.attributes["gen_ai.usage.output_tokens"] == result["usage"]["output_tokens"] == 6
    assert span.attributes["user_agent.name"] == "claude-cli"
    assert "claude-code-20250219" in span.attributes["anthropic.beta"]


def test_claude_code_running_a_tool_gives_its_session_one_execute_tool_span(
    world: World, bedrock_proxy: Mitmdump, tmp_path
):
    """The fake model asks for Claude Code's Glob tool (the prompt's `(fake: use Glob)`); the CLI
    runs it and sends the result back in its next call: the gap between is the tool's span."""
    before = len(world.fake.received)
    (tmp_path / "notes.txt").write_text("a file for Glob to find")
    result = run_claude(
        tmp_path,
        {"ANTHROPIC_BEDROCK_BASE_URL": bedrock_proxy.url},
        ON_BEDROCK,
        "List the text files here (fake: use Glob)",
        "--allowedTools",
        "Glob",
    )
    assert result["result"] == "Hello from a fake Claude."
    turns = [r for r in world.fake.received[before:] if r.path.endswith("/invoke-with-response-stream")]
    assert len(turns) == 2  # the turn that asked for the tool, and the one that brought its result
    answered = json.loads(turns[1].body)["messages"][-1]["content"]
    (tool_result,) = [block for block in answered if block.get("type") == "tool_result"]
    session = turns[1].headers["x-claude-code-session-id"]
    (tool,) = world.receiver.wait_for(
        lambda: [
            s for s in world.receiver.spans() if s.attributes.get("gen_ai.tool.call.id") == tool_result["tool_use_id"]
        ]
    )
    assert tool.name == "execute_tool Glob" and tool.attributes["gen_ai.tool.name"] == "Glob"
    assert tool.attributes["gen_ai.conversation.id"] == session and tool.attributes["gen_ai.agent.name"] == "claude-cli"
    assert tool.trace_id == f"{session_trace(session)[0]:032x}"  # in the session's trace
    assert 0 < tool.end_time_unix_nano - tool.start_time_unix_nano < 60 * 10**9
