"""One turn of the real Codex CLI (0.171, `codex exec`, headless; `make test` installs it with npm
from harness/codex) through a real mitmdump in regular mode (`HTTPS_PROXY`, the mitmproxy CA in
`SSL_CERT_FILE`). Codex first upgrades `GET /v1/responses` to a WebSocket (`openai-beta:
responses_websockets=…`); the CONNECT forwarder ends that tunnel at the fake WebSocket upstream,
which answers every `response.create` as the Responses API does. Each one must be metered once,
with the usage the fake sent, under one session span; no key anywhere."""

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.connect_forwarder import ConnectForwarder
from harness.e2e import World
from harness.fake_openai import ResponsesScript
from harness.fake_realtime import FakeSockets
from harness.mitmdump import ROOT, Mitmdump

CODEX = ROOT / "harness" / "codex" / "node_modules" / ".bin" / "codex"
KEY = "sk-proj-CodexE2eKey7Hq2Lp9Wm4Xn6Rt1Vb3Zc8"


@dataclass
class CodexRun:
    session: Any  # the fake's WebSocket session of `/v1/responses`
    asked: list[dict[str, Any]]  # the `response.create` frames Codex sent
    forwarder: ConnectForwarder
    logs: str  # mitmdump's output


def run_codex(
    world: World, tmp_path: Path, prompt: str, exported: Callable[[list[Any], list[dict[str, Any]]], bool]
) -> CodexRun:
    """`codex exec PROMPT` through a regular-mode mitmdump to the fake WebSocket upstream, until
    `exported(spans, asked)` holds for the spans exported so far and the requests Codex sent."""
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    with (
        FakeSockets(world.pki.server_cert, world.pki.server_key) as sockets,
        ConnectForwarder(sockets.port) as forwarder,
    ):
        args = ["--mode", f"upstream:http://127.0.0.1:{forwarder.port}"]
        args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
        with Mitmdump(args, world.env, world.tmp / f"conf-codex-{tmp_path.name}") as proxy:
            environment = {
                "PATH": os.environ["PATH"],
                "HOME": str(home),
                "CODEX_HOME": str(home / ".codex"),
                "OPENAI_API_KEY": KEY,
                "HTTPS_PROXY": proxy.url,
                "HTTP_PROXY": proxy.url,
                "SSL_CERT_FILE": str(proxy.ca_cert),
            }
            finished = subprocess.run(
                [str(CODEX), "exec", "--skip-git-repo-check", "-c", 'model="e2e-codex"', prompt],
                env=environment,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert finished.returncode == 0, finished.stderr[-3000:]
            (session,) = [s for s in sockets.sessions if s.path == "/v1/responses"]
            asked = [json.loads(text) for text in session.received if '"response.create"' in text[:40]]
            assert asked, "Codex sent no response.create"
            world.receiver.wait_for(lambda: exported(world.receiver.spans(), asked))
            time.sleep(0.5)
            return CodexRun(session, asked, forwarder, proxy.output)


def codex_calls(spans: list[Any]) -> list[Any]:
    return [
        s
        for s in spans
        if s.attributes.get("gen_ai.request.model") == "e2e-codex" and "gen_ai.response.id" in s.attributes
    ]


def test_a_codex_turn_over_the_responses_websocket_is_metered_exactly(world: World, tmp_path: Path):
    before = {s.span_id for s in world.receiver.spans()}

    def each_metered(spans: list[Any], asked: list[dict[str, Any]]) -> bool:
        return len([s for s in codex_calls(spans) if s.span_id not in before]) >= len(asked)

    run = run_codex(world, tmp_path, "Say hi", each_metered)
    asked, session, logs = run.asked, run.session, run.logs
    assert session.headers["openai-beta"].startswith("responses_websockets=")
    spans = [s for s in codex_calls(world.receiver.spans()) if s.span_id not in before]
    assert "api.openai.com:443" in run.forwarder.tunnels
    assert len(spans) == len(asked)  # each response.create metered once
    for span, request in zip(sorted(spans, key=lambda s: s.start_time_unix_nano), asked, strict=True):
        usage = ResponsesScript({k: v for k, v in request.items() if k != "type"}).response()["usage"]
        assert span.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
        assert span.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        assert span.attributes["openai.api.type"] == "responses"
        assert span.attributes["user_agent.name"] == "codex_exec"
        # Codex names its session in the upgrade request (`session-id`): each call's conversation.
        assert span.attributes["gen_ai.conversation.id"] == session.headers["session-id"]
        assert span.attributes["gen_ai.agent.name"] == "codex_exec"
    (session_span,) = [s for s in world.receiver.spans() if s.name == "responses e2e-codex" and s.span_id not in before]
    assert {s.parent_span_id for s in spans} == {session_span.span_id}
    exported = "".join(str(r) for r in world.receiver.trace_requests + world.receiver.metric_requests)
    assert KEY[8:20] not in exported and KEY[8:20] not in logs
    assert "hook failed" not in logs


def test_codex_running_a_tool_gives_its_session_one_execute_tool_span(world: World, tmp_path: Path):
    """The fake model asks for Codex's exec_command (the prompt's `(fake: use exec_command)`); Codex
    runs it and sends its output in the next `response.create` over the WebSocket."""

    def tool_span(spans: list[Any], asked: list[dict[str, Any]]) -> bool:
        return any(s.name == "execute_tool exec_command" for s in spans)

    run = run_codex(world, tmp_path, "Show where we are (fake: use exec_command)", tool_span)
    outputs = [
        item
        for request in run.asked
        for item in request.get("input") or []
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert outputs, "Codex sent no tool output"
    (tool,) = [s for s in world.receiver.spans() if s.attributes.get("gen_ai.tool.call.id") == outputs[0]["call_id"]]
    assert tool.name == "execute_tool exec_command" and tool.attributes["gen_ai.tool.type"] == "function"
    assert tool.attributes["gen_ai.conversation.id"] == run.session.headers["session-id"]
    assert tool.attributes["gen_ai.agent.name"] == "codex_exec"
    assert 0 < tool.end_time_unix_nano - tool.start_time_unix_nano < 60 * 10**9
